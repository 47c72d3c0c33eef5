"""Small generated competitions for `medals demo`: melanoma-like, cells-like and chest-X-ray-like.

Each generator writes a folder shaped like the real Kaggle data (CSV names, columns, file layout)
whose images carry a strong, visible signal, so a tiny randomly initialised CNN learns it in a few
CPU epochs. Every image is drawn from its own random stream seeded by (seed, split, index): the output
is deterministic for a seed, and one image can be re-rendered on its own (the tests do so).

Only numpy and cv2 draw; images are built as float arrays in [0, 255] (or [0, 1]) and written once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.data.rle import encode
from medals.files import write_csv

TRAIN, TEST = 0, 1  # split codes mixed into the per-image seeds

MELANOMA_CLASSES = ("nevus", "melanoma", "BKL", "unknown")
CELL_CLASSES = ("nucleoplasm", "nuclear membrane", "cytosol", "plasma membrane", "mitochondria")
CELL_CHANNELS = ("red", "green", "blue", "yellow")


# ---- shared drawing helpers -------------------------------------------------------------------


def _image_rng(seed: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, split, index])


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float32 [size, size]."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(axis, axis, indexing="ij")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise with about ``cells`` blobs across, zero mean and unit std."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _blob(
    rng: np.random.Generator, size: int, cy: float, cx: float, radius: float, wobble: float, edge: float
) -> np.ndarray:
    """Soft star-shaped blob: radius(theta) = radius * (1 + sum of random harmonics), alpha in [0, 1]."""
    yy, xx = _grid(size)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    bound = np.ones_like(theta)
    for k in range(2, 9):
        bound += wobble * rng.normal() / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    bound = radius * np.clip(bound, 0.4, None)
    return np.clip((bound - np.hypot(dy, dx)) / edge + 0.5, 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _decimal_ids(rng: np.random.Generator, n: int, digits: int) -> list[str]:
    """n distinct random decimal ids of ``digits`` digits, in draw order."""
    chosen = rng.choice(10**digits, size=n, replace=False)
    return [f"{int(v):0{digits}d}" for v in chosen]


# ---- melanoma (SIIM-ISIC 2020 shape) ------------------------------------------------------------

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
    yy, xx = _grid(size)
    tone = rng.uniform(0.82, 1.05)
    skin = np.array([228.0, 180.0, 152.0]) * tone + rng.normal(0, 5, 3)
    image = np.broadcast_to(skin, (size, size, 3)).astype(np.float32).copy()
    image += 7 * _smooth_noise(rng, size, 6)[..., None]  # uneven skin colour
    image += rng.normal(0, 4, (size, size, 3)).astype(np.float32)  # grain

    if diagnosis == "melanoma" and rng.random() < 0.05:
        diagnosis = "unknown"  # an atypical melanoma that looks benign, so the AUC is not trivially 1
    (r_lo, r_hi), wobble, colour = LESIONS[diagnosis]
    radius = rng.uniform(r_lo, r_hi) * size
    cy, cx = size * (0.5 + rng.uniform(-0.08, 0.08, 2))
    alpha = _blob(rng, size, cy, cx, radius, wobble, edge=max(1.5, 0.03 * size))
    lesion = np.array(colour, dtype=np.float32) * rng.uniform(0.92, 1.08)
    lesion = lesion + (6 + 10 * (diagnosis != "nevus")) * _smooth_noise(rng, size, 8)[..., None]
    if diagnosis == "melanoma":
        # Blue-black and red patches inside the lesion, and a darker core.
        blue = np.clip(_smooth_noise(rng, size, 5) - 0.3, 0, 1)[..., None]
        red = np.clip(_smooth_noise(rng, size, 6) - 0.6, 0, 1)[..., None]
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
    return _to_uint8(image)


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
    names = [f"ISIC_{v}" for v in _decimal_ids(rng, n_train + n_test, 7)]
    patients = [f"IP_{v}" for v in _decimal_ids(rng, n_train + n_test, 7)]
    train = _melanoma_rows(rng, n_train, patients[: n_train // 2 + 1])
    test = _melanoma_rows(rng, n_test, patients[n_train // 2 + 1 :])
    for split, frame, folder, offset in ((TRAIN, train, "train", 0), (TEST, test, "test", n_train)):
        frame.insert(0, "image_name", names[offset : offset + len(frame)])
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for index, (name, diagnosis) in enumerate(zip(frame["image_name"], frame["diagnosis"], strict=True)):
            image = skin_image(_image_rng(seed, split, index), size, diagnosis)
            path = out_dir / folder / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    train["benign_malignant"] = np.where(train["diagnosis"] == "melanoma", "malignant", "benign")
    train["target"] = (train["diagnosis"] == "melanoma").astype(int)
    test = test.drop(columns="diagnosis")
    write_csv(out_dir / "train.csv", train.sort_values("image_name"))
    write_csv(out_dir / "test.csv", test.sort_values("image_name"))
    submission = pd.DataFrame({"image_name": sorted(test["image_name"]), "target": 0.0})
    write_csv(out_dir / "sample_submission.csv", submission)


# ---- cells (Human Protein Atlas shape) ----------------------------------------------------------


def _cell_layout(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres [N, 2] (y, x) and radii [N], kept apart so cells touch but rarely overlap."""
    n_cells = int(rng.integers(3, 6))
    radius = size * rng.uniform(0.17, 0.22)
    centres: list[np.ndarray] = []
    for _ in range(300):
        if len(centres) == n_cells:
            break
        candidate = rng.uniform(0.15 * size, 0.85 * size, 2)
        if all(np.hypot(*(candidate - c)) > 1.5 * radius for c in centres):
            centres.append(candidate)
    radii = radius * rng.uniform(0.85, 1.15, len(centres))
    return np.array(centres, np.float32), radii.astype(np.float32)


def cell_images(rng: np.random.Generator, size: int, labels: list[int]) -> dict[str, np.ndarray]:
    """The four uint8 channels of one field of cells; the green pattern shows the given labels."""
    yy, xx = _grid(size)
    centres, radii = _cell_layout(rng, size)
    n = len(centres)
    dy = yy[None] - centres[:, 0, None, None]
    dx = xx[None] - centres[:, 1, None, None]
    theta = np.arctan2(dy, dx)
    # Normalised distance to each cell's wobbly outline (1 on the plasma membrane).
    phase = rng.uniform(0, 2 * np.pi, (n, 2))[:, :, None, None]
    amp = rng.uniform(0.05, 0.15, (n, 2))[:, :, None, None]
    outline = 1 + amp[:, 0] * np.cos(2 * theta + phase[:, 0]) + amp[:, 1] * np.cos(3 * theta + phase[:, 1])
    q = np.hypot(dy, dx) / (radii[:, None, None] * outline)
    order = np.sort(q, axis=0)
    own = np.argmin(q, axis=0)
    q_own = order[0]
    cell = np.clip((1 - q_own) / 0.06, 0, 1)
    # Nuclei: smaller ellipses near each centre, oriented at random.
    shift = rng.uniform(-0.12, 0.12, (n, 2)) * radii[:, None]
    ny = dy - shift[:, 0, None, None]
    nx = dx - shift[:, 1, None, None]
    tilt = rng.uniform(0, np.pi, n)[:, None, None]
    a = radii[:, None, None] * rng.uniform(0.42, 0.5, n)[:, None, None]
    b = a * rng.uniform(0.7, 0.95, n)[:, None, None]
    u = nx * np.cos(tilt) + ny * np.sin(tilt)
    v = -nx * np.sin(tilt) + ny * np.cos(tilt)
    n_dist = np.take_along_axis(np.hypot(u / a, v / b), own[None], axis=0)[0]
    nucleus = np.clip((1 - n_dist) / 0.1, 0, 1) * (q_own < 1)
    cytoplasm = cell * (1 - nucleus)

    blue = nucleus * (0.65 + 0.08 * _smooth_noise(rng, size, 10))
    fibres = np.zeros((size, size), np.uint8)
    for centre, radius in zip(centres, radii, strict=True):
        for angle in rng.uniform(0, 2 * np.pi, 14):
            end = centre + 1.2 * radius * np.array([np.sin(angle), np.cos(angle)])
            mid = (centre + end) / 2 + rng.normal(0, 0.15 * radius, 2)
            points = np.array([centre, mid, end])[:, ::-1].round().astype(np.int32)
            cv2.polylines(fibres, [points], False, 255, thickness=1, lineType=cv2.LINE_AA)
    red = cell * (0.12 + 0.45 * fibres.astype(np.float32) / 255)
    yellow = cell * (0.15 + 0.35 * np.exp(-(q_own**2) / 0.25)) * (1 - 0.6 * nucleus)
    yellow = yellow * (1 + 0.25 * _smooth_noise(rng, size, 16))

    green = np.zeros((size, size), np.float32)
    if 0 in labels:  # nucleoplasm: the nucleus filled
        green += 0.55 * nucleus
    if 1 in labels:  # nuclear membrane: a thin bright ring on the nucleus outline
        green += 0.9 * np.exp(-(((n_dist - 1) / 0.12) ** 2)) * (q_own < 1)
    if 2 in labels:  # cytosol: an even haze in the cytoplasm
        green += 0.4 * cytoplasm
    if 3 in labels:  # plasma membrane: the cell outline, including where two cells touch
        touching = (order[1] - order[0] < 0.1) & (q_own < 1) if n > 1 else np.zeros_like(cell, bool)
        green += 0.9 * np.maximum(np.exp(-(((q_own - 0.96) / 0.06) ** 2)), touching)
    if 4 in labels:  # mitochondria: bright puncta scattered in the cytoplasm
        dots = np.zeros((size, size), np.float32)
        ys, xs = np.nonzero(cytoplasm > 0.5)
        if len(ys):
            pick = rng.choice(len(ys), size=min(len(ys), 18 * n), replace=False)
            dots[ys[pick], xs[pick]] = 1.0
        dots = cv2.GaussianBlur(dots, (0, 0), 0.8)
        green += np.clip(dots / (dots.max() + 1e-6) * 1.2, 0, 1)
    green *= rng.uniform(0.75, 1.0)

    channels = {"red": red, "green": green, "blue": blue, "yellow": yellow}
    out = {}
    for name, channel in channels.items():
        channel = channel + np.abs(rng.normal(0.02, 0.015, (size, size)))  # camera background
        out[name] = _to_uint8(255 * channel)
    return out


def _cell_labels(rng: np.random.Generator) -> list[int]:
    count = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    return [int(v) for v in rng.choice(len(CELL_CLASSES), size=count, replace=False)]


def _hpa_id(rng: np.random.Generator) -> str:
    h = rng.integers(0, 256, 16, dtype=np.uint8).tobytes().hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_cells(
    out_dir: Path, n_train: int = 360, n_test: int = 90, size: int = 96, seed: int = 0
) -> None:
    """HPA-like folder: train.csv (Id, Target), sample_submission.csv (Id, Predicted),
    train/{Id}_{red,green,blue,yellow}.png and test/ likewise (single-channel 8-bit PNGs).

    Target holds 1-3 space-separated label ids in random order, as in the HPA data.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 1002])
    frames = {}
    for split, folder, n in ((TRAIN, "train", n_train), (TEST, "test", n_test)):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        ids, targets = [], []
        for index in range(n):
            image_id = _hpa_id(rng)
            labels = _cell_labels(rng)
            for name, channel in cell_images(_image_rng(seed, split, index), size, labels).items():
                cv2.imwrite(str(out_dir / folder / f"{image_id}_{name}.png"), channel)
            ids.append(image_id)
            targets.append(" ".join(map(str, labels)))
        frames[folder] = pd.DataFrame({"Id": ids, "Target": targets})
    write_csv(out_dir / "train.csv", frames["train"])
    write_csv(out_dir / "sample_submission.csv", pd.DataFrame({"Id": frames["test"]["Id"], "Predicted": "0"}))


# ---- chest (SIIM-ACR pneumothorax shape) --------------------------------------------------------


def _lung_distance(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ay: float, ax: float, lateral: int
) -> np.ndarray:
    """Normalised distance to an egg-shaped lung outline (1 on it): wider at the base, and
    flattened on the mediastinal side (``lateral`` is -1 for the image-left lung, +1 for the right)."""
    t = np.clip((yy - cy) / ay, -1, 1)
    width = ax * (0.72 + 0.28 * t)
    medial = (xx - cx) * lateral < 0
    width = np.where(medial, width * 0.8, width)
    return np.hypot((xx - cx) / width, (yy - cy) / ay)


def chest_case(
    seed: int, split: int, index: int, size: int, n_regions: int
) -> tuple[np.ndarray, np.ndarray, list]:
    """Render one chest film: (uint8 image, bool lung fields, list of bool pneumothorax regions).

    ``n_regions`` 0: no pneumothorax; 1: one crescent; 2: one in each lung (two RLE rows).
    """
    rng = _image_rng(seed, split, index)
    yy, xx = _grid(size)
    s = float(size)
    image = np.full((size, size), 18.0, np.float32)
    # Soft tissue: a rounded box (superellipse) with broad shoulders.
    body = (np.abs(xx - s / 2) / (0.47 * s)) ** 3 + (np.abs(yy - 0.62 * s) / (0.64 * s)) ** 3
    body_alpha = np.clip((1 - body) / 0.12, 0, 1)
    image += body_alpha * (140 + 10 * _smooth_noise(rng, size, 4))
    # Spine and mediastinum, then the heart: brighter than the soft tissue.
    image += 25 * np.exp(-(((xx - s / 2) / (0.05 * s)) ** 2)) * body_alpha
    heart = np.hypot((xx - 0.55 * s) / (0.17 * s), (yy - 0.68 * s) / (0.15 * s))
    heart_alpha = np.clip((1 - heart) / 0.3, 0, 1)

    lungs = []
    cy = s * rng.uniform(0.46, 0.5)
    ay = s * rng.uniform(0.32, 0.36)
    for lateral in (-1, 1):
        cx = s * (0.5 + lateral * rng.uniform(0.21, 0.24))
        ax = s * rng.uniform(0.18, 0.2)
        lungs.append((cy + rng.normal(0, 0.01 * s), cx, ay, ax, lateral))

    # Vessels: thin lines fanning out from each hilum; drawn once, removed where the lung collapsed.
    vessels = np.zeros((size, size), np.uint8)
    for ly, lx, lay, lax, lateral in lungs:
        hilum = np.array([lx - lateral * 0.5 * lax, ly + 0.1 * lay])
        for _ in range(24):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.3, 1.0) * lay
            end = hilum + length * np.array([np.cos(angle), np.sin(angle)])
            mid = (hilum + end) / 2 + rng.normal(0, 0.04 * s, 2)
            points = np.array([hilum, mid, end]).round().astype(np.int32)
            cv2.polylines(vessels, [points], False, 255, thickness=1, lineType=cv2.LINE_AA)
    texture = cv2.GaussianBlur(vessels.astype(np.float32) / 255, (0, 0), 0.6)
    texture += 0.15 * _smooth_noise(rng, size, 24)

    lung_field = np.zeros((size, size), bool)
    air = np.zeros((size, size), np.float32)
    free_air = np.zeros((size, size), np.float32)
    compressed = np.zeros((size, size), np.float32)
    pleura = np.zeros((size, size), np.float32)
    regions = []
    sides = rng.permutation(2)[:n_regions]
    for side, (ly, lx, lay, lax, lateral) in enumerate(lungs):
        dist = _lung_distance(yy, xx, ly, lx, lay, lax, lateral)
        lung_field |= dist < 1
        air = np.maximum(air, np.clip((1 - dist) / 0.08, 0, 1))
        if side in sides:
            # The collapsed lung: a smaller lung pulled towards the hilum and the base, leaving a
            # crescent of free air along the lateral wall and the apex.
            f = rng.uniform(0.45, 0.65)
            cy_c = ly + (1 - f) * lay * 0.8
            cx_c = lx - lateral * (1 - f) * lax * 0.8
            inner = _lung_distance(yy, xx, cy_c, cx_c, f * lay, f * lax, lateral)
            region = (dist < 1) & (inner >= 1)
            regions.append(region)
            free_air = np.maximum(free_air, region.astype(np.float32))
            compressed = np.maximum(compressed, (inner < 1).astype(np.float32))
            pleura += np.exp(-(((inner - 1) / 0.04) ** 2)) * (dist < 1)
    air *= 1 - 0.7 * heart_alpha
    # Aerated lung is dark with vessel markings; free air (pneumothorax) is darker still and has
    # none, bounded by the bright visceral pleural line; the collapsed lung is denser.
    soft = cv2.GaussianBlur(free_air, (0, 0), 0.7)
    image -= air * (75 + 45 * texture * (1 - soft))
    image -= 60 * soft * air
    image += air * (15 * compressed + 45 * np.clip(pleura, 0, 1))
    image += 30 * heart_alpha * body_alpha

    # Ribs: curved bright bands over each side.
    ribs = np.zeros((size, size), np.float32)
    thickness = max(1, round(s / 40))
    for lateral in (-1, 1):
        for k in range(8):
            centre = (round(s / 2 + lateral * 0.02 * s), round(s * (0.12 + 0.085 * k)))
            axes = (round(0.38 * s), round(0.12 * s))
            start, end = (180, 270) if lateral < 0 else (270, 360)
            cv2.ellipse(ribs, centre, axes, rng.uniform(-4, 4) + 12 * lateral, start, end, 1.0, thickness)
    ribs = cv2.GaussianBlur(ribs, (0, 0), 0.8)
    image += 28 * ribs * body_alpha

    image += rng.normal(0, 5, (size, size)).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 0.5)
    gain, gamma = rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)
    image = 255 * (np.clip(image * gain, 0, 255) / 255) ** gamma
    return _to_uint8(image), lung_field, regions


def _chest_id(rng: np.random.Generator, split: int, index: int) -> str:
    return f"1.2.276.0.7230010.3.1.4.8323329.{10000 * (split + 1) + index}.{rng.integers(1517874000, 1517876000)}.{rng.integers(100000, 999999)}"


def generate_chest(
    out_dir: Path, n_train: int = 300, n_test: int = 80, size: int = 96, seed: int = 0
) -> None:
    """SIIM-ACR-like folder: train-rle.csv (ImageId, EncodedPixels; "-1" when empty, one row per
    region, images in index order), test.csv (ImageId), sample_submission.csv (ImageId,
    EncodedPixels "-1"), train/{ImageId}.png and test/{ImageId}.png (8-bit grayscale).

    Half the images have a pneumothorax; a third of those have one in each lung, written as two rows.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 1003])
    rows = []
    test_ids = []
    for split, folder, n in ((TRAIN, "train", n_train), (TEST, "test", n_test)):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        positive = rng.permutation(n) < (n + 1) // 2
        bilateral = rng.random(n) < 1 / 3
        for index in range(n):
            image_id = _chest_id(rng, split, index)
            n_regions = int(positive[index]) * (1 + int(bilateral[index]))
            image, _, regions = chest_case(seed, split, index, size, n_regions)
            cv2.imwrite(str(out_dir / folder / f"{image_id}.png"), image)
            if split == TEST:
                test_ids.append(image_id)
            elif regions:
                rows.extend((image_id, encode(region, fmt="siim")) for region in regions)
            else:
                rows.append((image_id, "-1"))
    write_csv(out_dir / "train-rle.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]))
    write_csv(out_dir / "test.csv", pd.DataFrame({"ImageId": test_ids}))
    write_csv(out_dir / "sample_submission.csv", pd.DataFrame({"ImageId": test_ids, "EncodedPixels": "-1"}))


GENERATORS: dict[str, Callable[..., None]] = {
    "melanoma": generate_melanoma,
    "cells": generate_cells,
    "chest": generate_chest,
}
