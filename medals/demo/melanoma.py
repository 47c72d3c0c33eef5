"""The generated melanoma-like competition (SIIM-ISIC 2020 shape): skin images with lesions, patient metadata."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.demo.draw import TEST, TRAIN, blob, clip_uint8, decimal_ids, grid, image_rng, smooth_noise
from medals.files import write_csv

MELANOMA_CLASSES = ("nevus", "melanoma", "BKL", "unknown")


SITES = ("torso", "lower extremity", "upper extremity", "head/neck", "palms/soles", "oral/genital")


SITE_P = (0.5, 0.25, 0.15, 0.06, 0.02, 0.02)


MELANOMA_SHARE = 0.25


# Lesion look per diagnosis: radius range (fraction of the side), outline wobble, RGB colour.
# Melanoma is large, irregular, dark and multi-coloured; nevi small, round, uniform brown.
LESIONS = {
    "nevus": ((0.08, 0.14), 0.05, (150, 95, 65)),
    "melanoma": ((0.20, 0.30), 0.4, (85, 52, 40)),
    "BKL": ((0.12, 0.20), 0.15, (175, 125, 90)),
    "unknown": ((0.10, 0.18), 0.10, (160, 108, 75)),
}


def skin_image(rng: np.random.Generator, size: int, diagnosis: str) -> np.ndarray:
    """One dermoscopy-like RGB uint8 image: textured skin, a lesion, maybe hairs and a vignette."""
    yy, xx = grid(size)
    tone = rng.uniform(0.82, 1.05)
    skin = np.array([228.0, 180.0, 152.0]) * tone + rng.normal(0, 5, 3)
    image = np.broadcast_to(skin, (size, size, 3)).astype(np.float32).copy()
    image += 7 * smooth_noise(rng, size, 6)[..., None]  # uneven skin colour
    image += rng.normal(0, 4, (size, size, 3)).astype(np.float32)  # grain

    if diagnosis == "melanoma" and rng.random() < 0.05:
        diagnosis = "unknown"  # an atypical melanoma that looks benign, so the AUC is not trivially 1
    (r_lo, r_hi), wobble, colour = LESIONS[diagnosis]
    radius = rng.uniform(r_lo, r_hi) * size
    cy, cx = size * (0.5 + rng.uniform(-0.08, 0.08, 2))
    alpha = blob(rng, size, cy, cx, radius, wobble, edge=max(1.5, 0.03 * size))
    lesion = np.array(colour, dtype=np.float32) * rng.uniform(0.92, 1.08)
    lesion = lesion + (6 + 10 * (diagnosis != "nevus")) * smooth_noise(rng, size, 8)[..., None]
    if diagnosis == "melanoma":
        # Blue-black and red patches inside the lesion, and a darker core.
        blue = np.clip(smooth_noise(rng, size, 5) - 0.3, 0, 1)[..., None]
        red = np.clip(smooth_noise(rng, size, 6) - 0.6, 0, 1)[..., None]
        lesion = lesion * (1 - 0.8 * blue) + np.array([40, 45, 80], np.float32) * 0.8 * blue
        lesion = lesion * (1 - 0.7 * red) + np.array([165, 55, 60], np.float32) * 0.7 * red
        core = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.5 * radius) ** 2))[..., None]
        lesion *= 1 - 0.35 * core
    elif diagnosis == "BKL":
        lesion += rng.normal(0, 12, (size, size, 3)).astype(np.float32)  # waxy, crumbly surface
    image = image * (1 - alpha[..., None]) + lesion * alpha[..., None]

    hairs = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.choice([0, 0, 1, 2, 3, 5]))):
        start = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.4, 1.0) * size
        t = np.linspace(0, 1, 24)
        bend = rng.normal(0, 0.08 * size) * np.sin(np.pi * t)
        px = start[0] + np.cos(angle) * length * t - np.sin(angle) * bend
        py = start[1] + np.sin(angle) * length * t + np.cos(angle) * bend
        points = np.stack([px, py], 1).round().astype(np.int32)
        cv2.polylines(hairs, [points], False, 255, thickness=1, lineType=cv2.LINE_AA)
    hair = (hairs.astype(np.float32) / 255 * 0.8)[..., None]
    image = image * (1 - hair) + np.array([55, 38, 30], np.float32) * hair

    if rng.random() < 0.2:  # the dark round rim of a dermoscope
        rim = np.hypot(yy - size / 2, xx - size / 2) / (size * rng.uniform(0.5, 0.62))
        image *= np.clip((1 - rim) / 0.1 + 0.5, 0.08, 1.0)[..., None]
    return clip_uint8(image)


def _melanoma_rows(rng: np.random.Generator, n: int, patient_ids: list[str]) -> pd.DataFrame:
    """Metadata and diagnoses: MELANOMA_SHARE of the images are melanoma, more often in older
    patients (a weak meta signal); several images per patient."""
    rows = []
    ages = []
    patient = 0
    while len(rows) < n:
        pid = patient_ids[patient]
        patient += 1
        sex = rng.choice(["male", "female"]) if rng.random() > 0.02 else None
        age = float(rng.integers(4, 18) * 5)  # 20 .. 85, like age_approx
        for _ in range(min(1 + int(rng.poisson(3)), n - len(rows))):
            site = str(rng.choice(SITES, p=SITE_P)) if rng.random() > 0.08 else None
            rows.append((pid, sex, age if rng.random() > 0.01 else None, site))
            ages.append(age)
    frame = pd.DataFrame(rows, columns=["patient_id", "sex", "age_approx", "anatom_site_general_challenge"])
    frame["age_approx"] = frame["age_approx"].astype("float64")
    # The images with the highest age-plus-noise score are the melanomas: an exact share, age-linked.
    score = 0.045 * (np.array(ages) - 50) + rng.logistic(size=n)
    melanoma = np.zeros(n, bool)
    melanoma[np.argsort(-score, kind="stable")[: round(MELANOMA_SHARE * n)]] = True
    others = rng.choice(["nevus", "unknown", "BKL"], size=n, p=[0.5, 0.3, 0.2])
    frame["diagnosis"] = np.where(melanoma, "melanoma", others)
    return frame


def generate_melanoma(
    out_dir: Path, n_train: int = 360, n_test: int = 90, size: int = 96, seed: int = 0
) -> None:
    """SIIM-ISIC-like folder: train.csv, test.csv, sample_submission.csv, train/*.jpg, test/*.jpg.

    train.csv: image_name, patient_id, sex, age_approx, anatom_site_general_challenge, diagnosis,
    benign_malignant, target. test.csv: the same without the last three.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 1001])
    names = [f"ISIC_{v}" for v in decimal_ids(rng, n_train + n_test, 7)]
    patients = [f"IP_{v}" for v in decimal_ids(rng, n_train + n_test, 7)]
    train = _melanoma_rows(rng, n_train, patients[: n_train // 2 + 1])
    test = _melanoma_rows(rng, n_test, patients[n_train // 2 + 1 :])
    for split, frame, folder, offset in ((TRAIN, train, "train", 0), (TEST, test, "test", n_train)):
        frame.insert(0, "image_name", names[offset : offset + len(frame)])
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for index, (name, diagnosis) in enumerate(zip(frame["image_name"], frame["diagnosis"], strict=True)):
            image = skin_image(image_rng(seed, split, index), size, diagnosis)
            path = out_dir / folder / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    train["benign_malignant"] = np.where(train["diagnosis"] == "melanoma", "malignant", "benign")
    train["target"] = (train["diagnosis"] == "melanoma").astype(int)
    test = test.drop(columns="diagnosis")
    write_csv(out_dir / "train.csv", train.sort_values("image_name"))
    write_csv(out_dir / "test.csv", test.sort_values("image_name"))
    submission = pd.DataFrame({"image_name": sorted(test["image_name"]), "target": 0.0})
    write_csv(out_dir / "sample_submission.csv", submission)
