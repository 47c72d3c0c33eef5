"""Training and inference throughput: the 2020 solutions' way vs medals' defaults, side by side in one run.

For each workload (a model, its image sizes and its recipe's augmentation list) it measures images/s of:

- seed e2e: what the solutions did. DataLoader workers decode each JPEG with cv2, run the albumentations
  list at the file's size (albumentations' own ops, as built by plain_albumentations), resize and
  normalise; the model trains in fp16 autocast with a GradScaler, NCHW, eager (train.precision fp16,
  channels_last false, compile false, data_path cpu).
- medals e2e: medals' per-device defaults (medals.runtime.settings.resolve_runtime): on CUDA bf16,
  channels_last and the GPU data path when every op of the list has a GPU version (else
  the CPU path: the table says which path each row used).
- medals e2e (cache): the same from the prepare stage's uint8 cache (npy files at the training size).
- seed / medals ceiling: the same model, runtime and step on random tensors already on the device.
- medals TTA-8: 8-view TTA inference with medals' eval path (medals.infer.predict.predict_with_cls).

A training step is loop.py's: forward under autocast, loss, scaler.scale(loss).backward(), scaler.step,
scaler.update, zero_grad. Warm-up steps are not timed (torch.compile runs in the ceiling rows' warm-up;
each kind of model is then reused by the loader rows). A loader row waits for one full round of its
workers before the clock starts and times a whole number of rounds, since in-order delivery hands the
batches over in bursts of one per worker. Images/s = images trained in the timed steps / seconds.

A CPU data-path comparison (no model, one process, one thread) gives images/s per core of the seed's
path (JPEG decode + the melanoma list at 768 + resize to 512 + normalise) and medals' CPU path from the
cache (npy at 512 + the same list at 512, as medals builds it, + normalise).

    python benchmarks/throughput.py [--device auto|cpu|cuda] [--quick] [--workloads b3,resnet34,unet,datapath]
        [--workers N] [--steps N] [--warmup N] [--json PATH] [--data-dir DIR]

JPEGs are drawn by medals.demo.generate (the demo's skin and chest images: smooth colour fields, blobs,
noise; about 130-180 KB at 768 px) once per data folder, and reused when --data-dir already holds them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
MELANOMA_RECIPE = REPO / "recipes/melanoma_1st/9c_meta_b3_768_512_ext_18ep.yaml"
PNEUMOTHORAX_RECIPE = REPO / "recipes/pneumothorax_2nd/seg_unet_se50_1024.yaml"
WORKLOADS = ("b3", "resnet34", "unet")
DATAPATH = "datapath"
ROW_ORDER = (
    "seed_e2e",
    "medals_e2e",
    "medals_cache_e2e",
    "seed_synthetic",
    "medals_synthetic",
    "medals_tta8",
)
ROW_LABELS = {
    "seed_e2e": "seed e2e",
    "medals_e2e": "medals e2e",
    "medals_cache_e2e": "medals e2e (cache)",
    "seed_synthetic": "seed ceiling",
    "medals_synthetic": "medals ceiling",
    "medals_tta8": "medals TTA-8",
}
# (name, numerator row, denominator row, scale): every ratio the table and the JSON report.
RATIOS = (
    ("medals_vs_seed", "medals_e2e", "seed_e2e", 1.0),
    ("medals_cache_vs_seed", "medals_cache_e2e", "seed_e2e", 1.0),
    ("seed_pct_of_ceiling", "seed_e2e", "seed_synthetic", 100.0),
    ("medals_pct_of_ceiling", "medals_e2e", "medals_synthetic", 100.0),
    ("medals_cache_pct_of_ceiling", "medals_cache_e2e", "medals_synthetic", 100.0),
)
DATAPATH_RATIOS = (("cache_vs_jpeg", "medals_cache", "seed_jpeg", 1.0),)


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    arch: str
    backbone: str
    num_classes: int
    source: int  # side of the JPEG files
    size: int  # training side (and cache side)
    batch: int
    augment: str  # "melanoma" or "pneumothorax": which recipe's train.augment list
    files: int  # distinct JPEG files; the training table loops over them
    tta_images: int


FULL = {
    "b3": Workload(
        "b3", "multiclass", "classifier", "tf_efficientnet_b3", 9, 768, 512, 32, "melanoma", 512, 512
    ),
    "resnet34": Workload(
        "resnet34", "multiclass", "classifier", "resnet34", 9, 768, 512, 64, "melanoma", 512, 512
    ),
    "unet": Workload("unet", "segmentation", "unet", "resnet34", 1, 1024, 1024, 8, "pneumothorax", 256, 256),
}
# CPU-sized stand-ins for CI: the same code paths, small models and images.
QUICK = {
    "b3": Workload("b3", "multiclass", "classifier", "efficientnet_b0", 9, 96, 64, 8, "melanoma", 16, 8),
    "resnet34": Workload("resnet34", "multiclass", "classifier", "resnet18", 9, 96, 64, 8, "melanoma", 16, 8),
    "unet": Workload("unet", "segmentation", "unet", "resnet18", 1, 128, 128, 2, "pneumothorax", 8, 4),
}
# CPU data-path comparison: (JPEG side, training side, images timed per path).
DATAPATH_FULL = (768, 512, 128)
DATAPATH_QUICK = (96, 64, 16)


def say(text: str) -> None:
    print(text, flush=True)


# ---- machine ---------------------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    try:
        import albumentations
        import segmentation_models_pytorch
        import timm

        info.update(
            timm=timm.__version__,
            smp=segmentation_models_pytorch.__version__,
            albumentations=albumentations.__version__,
        )
    except ImportError:  # pragma: no cover - every one of them is a medals dependency
        pass
    return info


# ---- data ------------------------------------------------------------------------------------------


def augment_list(which: str) -> list[dict]:
    path = MELANOMA_RECIPE if which == "melanoma" else PNEUMOTHORAX_RECIPE
    return yaml.safe_load(path.read_text())["train"]["augment"]


def _draw(kind: str, index: int, side: int, path: str) -> str:
    """Write one generated JPEG; returns its mask as an RLE string (chest) or ""."""
    from medals.data.rle import encode
    from medals.demo.chest import chest_case
    from medals.demo.melanoma import LESIONS, skin_image

    if kind == "skin":
        rng = np.random.default_rng([7, index])
        diagnosis = sorted(LESIONS)[index % len(LESIONS)]
        image = skin_image(rng, side, diagnosis)[:, :, ::-1]  # RGB -> BGR for OpenCV
        rle = ""
    else:
        image, _, regions = chest_case(7, 0, index, side, 1 + index % 2)
        rle = encode(np.logical_or.reduce(regions), "siim")
    cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return rle


def _draw_args(args: tuple[str, int, int, str]) -> str:
    return _draw(*args)


def plain_albumentations(spec: list[dict]) -> list:
    """The spec's ops as albumentations itself builds them: what the 2020 solutions ran, without the
    substitutions medals makes (its coarse-grid ElasticTransform)."""
    import albumentations as A

    ops = []
    for item in spec:
        kwargs = dict(item)
        name = kwargs.pop("name")
        if "transforms" in kwargs:
            kwargs["transforms"] = plain_albumentations(kwargs["transforms"])
        ops.append(getattr(A, name)(**kwargs))
    return ops


def seed_transform(spec: list[dict], size: int):
    """The seed-style per-image pipeline: the list at the file's size, resize, ImageNet normalisation."""
    import albumentations as A

    resize = A.Resize(size, size, interpolation=cv2.INTER_LINEAR)
    return A.Compose([*plain_albumentations(spec), resize, A.Normalize()])


def make_images(data_dir: Path, kind: str, n: int, side: int, num_classes: int) -> pd.DataFrame:
    """n distinct JPEGs of `side` px (kind "skin" RGB, "chest" grayscale with a mask) and their table.

    Made in parallel once; a folder that already holds at least n of them is reused.
    """
    folder = data_dir / f"{kind}_{side}"
    index_file = folder / "index.csv"
    if index_file.is_file():
        table = pd.read_csv(index_file, keep_default_na=False)
        if len(table) >= n and all(Path(p).is_file() for p in table["path"][:n]):
            return table.iloc[:n].reset_index(drop=True)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = [str(folder / f"{kind}{i:05d}.jpg") for i in range(n)]
    jobs = [(kind, i, side, path) for i, path in enumerate(paths)]
    workers = min(os.cpu_count() or 1, max(1, n // 8))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rles = list(pool.map(_draw_args, jobs, chunksize=4))
    else:
        rles = [_draw(*job) for job in jobs]
    table = pd.DataFrame(
        {
            "id": [Path(p).stem for p in paths],
            "split": "train",
            "path": paths,
            "height": side,
            "width": side,
        }
    )
    if kind == "chest":
        table["rle"] = rles
    else:
        table["label"] = np.arange(n, dtype=np.int64) % num_classes
    table.to_csv(index_file, index=False)
    kilobytes = sum(Path(p).stat().st_size for p in paths) / n / 1024
    say(
        f"generated {n} {kind} JPEGs at {side} px ({kilobytes:.0f} KB each) in {time.perf_counter() - started:.1f} s"
    )
    return table


_CACHES: dict[tuple[str, int, int], tuple[pd.DataFrame, float]] = {}


def cached_table(table: pd.DataFrame, size: int, cache_dir: Path) -> tuple[pd.DataFrame, float]:
    """The table pointing at prepare's npy cache at `size` (built once per run) and its build seconds.

    cache_dir is the run's own temporary folder, so the build is timed even when --data-dir is reused.
    """
    from medals.data.cache import build_cache

    key = (str(Path(table["path"].iloc[0]).parent), size, len(table))
    if key not in _CACHES:
        started = time.perf_counter()
        cached = build_cache(table, size, cache_dir / f"{Path(key[0]).name}_{len(table)}")
        seconds = time.perf_counter() - started
        say(f"built the {size} px npy cache of {len(table)} images in {seconds:.1f} s")
        _CACHES[key] = (cached, seconds)
    return _CACHES[key]


def looped(table: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`rows` rows cycling over the table's files (ids kept distinct), for as many steps as are timed."""
    out = table.iloc[np.arange(rows) % len(table)].reset_index(drop=True)
    out["id"] = [f"{ident}_{i}" for i, ident in enumerate(out["id"])]
    return out


# ---- recipes and runtimes --------------------------------------------------------------------------


def make_recipe(w: Workload, augment: list[dict], workers: int, **train: Any):
    from medals.config import recipe_from_dict

    tree: dict[str, Any] = {
        "name": f"throughput_{w.name}",
        "task": w.task,
        "seed": 0,
        "model": {"arch": w.arch, "backbone": w.backbone, "pretrained": False},
        "train": {
            "batch_size": w.batch,
            "image_size": w.size,
            "optimizer": "adam",
            "lr": 1e-4,
            "augment": augment,
            "num_workers": workers,
            "progress": False,
            **train,
        },
    }
    if w.task != "segmentation":
        tree["data"] = {"num_classes": w.num_classes}
    return recipe_from_dict(tree, "benchmarks/throughput.py")


SEED_TRAIN = {"precision": "fp16", "channels_last": False, "compile": False, "data_path": "cpu"}


def runtime_fields(runtime) -> dict[str, Any]:
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[runtime.amp_dtype]
    return {
        "precision": dtype + ("+scaler" if runtime.use_scaler else ""),
        "layout": "channels_last" if runtime.channels_last else "NCHW",
        "compile": bool(runtime.compile),
        "data_path": runtime.data_path,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One model with its optimizer, scaler, loss and (compiled) forward; step() is loop.py's step."""

    def __init__(self, recipe, runtime, num_classes: int, device: torch.device):
        from medals.models.factory import create_model
        from medals.train.losses import build_loss
        from medals.train.optim import build_optimizer

        self.device = device
        self.runtime = runtime
        self.model = create_model(recipe, num_classes).to(device)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, recipe.train)
        self.scaler = torch.amp.GradScaler(device.type, enabled=runtime.use_scaler)
        self.loss_fn = build_loss(recipe.loss, recipe.task)
        self.forward = torch.compile(self.model) if runtime.compile else self.model

    def step(self, batch: dict) -> None:
        with self.runtime.autocast(self.device):
            logits = self.forward(batch["image"], batch.get("meta"))
            loss = self.loss_fn(logits, batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


def timed_steps(
    trainer: Trainer, batches: Iterator[dict], warmup: int, steps: int, batch_size: int, label: str
) -> dict[str, Any]:
    """Run warmup + steps training steps on `batches`; images/s over the timed steps only."""
    trainer.model.train()
    device = trainer.device
    every = max(1, (warmup + steps) // 5)
    started = time.perf_counter()
    start = started
    warm_seconds = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
            warm_seconds = start - started
        trainer.step(next(batches))
        if (i + 1) % every == 0 or i + 1 == warmup + steps:
            sync(device)
            say(f"  {label}: step {i + 1}/{warmup + steps} ({time.perf_counter() - started:.1f} s)")
    sync(device)
    seconds = time.perf_counter() - start
    images = steps * batch_size
    return {
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "warmup_steps": warmup,
        "steps": steps,
        "warmup_seconds": warm_seconds,
    }


def synthetic_batch(w: Workload, runtime, device: torch.device) -> dict:
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    shape = (w.batch, 3, w.size, w.size)
    image = torch.randn(shape, device=device, generator=generator)
    if runtime.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    batch: dict[str, Any] = {"image": image, "index": torch.arange(w.batch)}
    if w.task == "segmentation":
        mask = (torch.rand((w.batch, 1, w.size, w.size), device=device, generator=generator) > 0.9).float()
        batch["mask"] = mask
        batch["target"] = mask.flatten(1).any(dim=1).float()
    else:
        batch["target"] = torch.randint(0, w.num_classes, (w.batch,), device=device, generator=generator)
    return batch


def repeat(batch: dict) -> Iterator[dict]:
    while True:
        yield batch


def loader_batches(loader, prepare: Callable, generator, device: torch.device, ahead: bool) -> Iterator[dict]:
    """Batches on the device. ahead: prepared the way medals' training loop prepares them (on CUDA, a side
    stream in a background thread, medals.data.prefetch); else inline, as the seeds' loops did."""
    from medals.data.prefetch import prefetched

    return prefetched(loader, prepare, generator, device, background=None if ahead else False)


# ---- one workload ----------------------------------------------------------------------------------


def run_workload(w: Workload, args, device: torch.device, data_dir: Path) -> dict[str, Any]:
    from medals.infer.batches import batch_source
    from medals.runtime.settings import resolve_runtime
    from medals.train.setup import fold_loader

    say(f"\n== {w.name}: {w.arch} {w.backbone}, {w.task}, {w.source} px JPEG -> {w.size}, batch {w.batch}")
    augment = augment_list(w.augment)
    kind = "chest" if w.task == "segmentation" else "skin"
    files = make_images(data_dir, kind, w.files, w.source, w.num_classes)
    cache, cache_seconds = cached_table(files, w.size, args.cache_dir)

    seed_recipe = make_recipe(w, augment, args.workers, **SEED_TRAIN)
    medals_recipe = make_recipe(w, augment, args.workers, data_path=args.medals_data_path)
    seed_rt = resolve_runtime(seed_recipe, device)
    medals_rt = resolve_runtime(medals_recipe, device)
    medals_workers = args.gpu_workers if medals_rt.data_path == "gpu" else args.workers
    medals_recipe = make_recipe(w, augment, medals_workers, data_path=medals_rt.data_path)
    runtimes = {
        "seed": (seed_recipe, seed_rt, args.workers),
        "medals": (medals_recipe, medals_rt, medals_workers),
    }
    for who, (_, rt, workers) in runtimes.items():
        fields = runtime_fields(rt)
        say(
            f"{who} runtime: {fields['precision']}, {fields['layout']}, "
            f"{'compile' if fields['compile'] else 'eager'}, data path {fields['data_path']}, {workers} workers"
        )

    torch.manual_seed(0)
    trainers = {who: Trainer(recipe, rt, w.num_classes, device) for who, (recipe, rt, _) in runtimes.items()}
    rows: dict[str, dict[str, Any]] = {}

    # Ceilings first: their warm-up compiles (medals) and tunes cuDNN for the shapes the loader rows reuse.
    for who, trainer in trainers.items():
        rt = runtimes[who][1]
        label = f"{w.name} {who} ceiling"
        result = timed_steps(
            trainer, repeat(synthetic_batch(w, rt, device)), args.warmup, args.steps, w.batch, label
        )
        rows[f"{who}_synthetic"] = {**runtime_fields(rt), "data_path": "synthetic", "workers": 0, **result}
        say(f"{label}: {result['images_per_s']:.1f} images/s (warm-up {result['warmup_seconds']:.1f} s)")

    # End to end: the loader rows. Warm-up is one round of the workers; the timed steps whole rounds.
    sources = [("seed_e2e", "seed", files, "JPEG"), ("medals_e2e", "medals", files, "JPEG")]
    sources.append(("medals_cache_e2e", "medals", cache, "cache"))
    for key, who, table, origin in sources:
        recipe, rt, workers = runtimes[who]
        rounds = max(1, workers)
        warmup = max(args.warmup, rounds)
        steps = math.ceil(args.steps / rounds) * rounds
        rows_needed = (warmup + steps + 1) * w.batch
        dataset, prepare = batch_source(recipe, rt, looped(table, rows_needed), w.num_classes, True, device)
        if who == "seed":
            dataset.transform = seed_transform(augment, w.size)
        loader = fold_loader(recipe, dataset, shuffle=True, seed=0)
        generator = torch.Generator()  # on the host, as training's train.setup.device_generator
        generator.manual_seed(0)
        label = f"{w.name} {ROW_LABELS[key]}"
        batches = loader_batches(loader, prepare, generator, device, ahead=who == "medals")
        result = timed_steps(trainers[who], batches, warmup, steps, w.batch, label)
        batches.close()  # stops a prefetch thread before the next row is timed
        rows[key] = {**runtime_fields(rt), "source": origin, "workers": workers, **result}
        say(f"{label} ({rt.data_path} data path, {origin}): {result['images_per_s']:.1f} images/s")
        del loader

    # 8-view TTA inference, medals' eval path and runtime, from the JPEG files.
    recipe, rt, workers = runtimes["medals"]
    eval_rows = files.iloc[: w.tta_images].reset_index(drop=True)
    rows["medals_tta8"] = measure_tta(w, recipe, rt, workers, trainers["medals"].model, eval_rows, device)

    del trainers
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "config": asdict(w),
        "cache_build": {"images": len(cache), "seconds": cache_seconds},
        "rows": rows,
        "ratios": ratios(rows, RATIOS),
    }


def measure_tta(w: Workload, recipe, rt, workers: int, model, eval_rows: pd.DataFrame, device) -> dict:
    """Images/s of medals.infer.predict.predict_with_cls with tta=8 over eval_rows (after a warm-up batch)."""
    from medals.infer.batches import batch_source
    from medals.infer.predict import predict_with_cls
    from medals.train.setup import fold_loader

    dataset, prepare = batch_source(recipe, rt, eval_rows, w.num_classes, False, device)

    def predict(rows: int) -> float:
        data = dataset if rows >= len(dataset) else torch.utils.data.Subset(dataset, range(rows))
        # A Subset hides the dataset's collate_fn from _loader: pass it on.
        if data is not dataset and hasattr(dataset, "collate_fn"):
            data.collate_fn = dataset.collate_fn
        loader = fold_loader(recipe, data, shuffle=False, seed=0)
        sync(device)
        started = time.perf_counter()
        predict_with_cls(
            model,
            loader,
            w.task,
            tta=8,
            device=device,
            precision=recipe.train.precision,  # resolved on the device as rt's was
            channels_last=rt.channels_last,
            prepare=lambda batch: prepare(batch, None),
        )
        sync(device)
        return time.perf_counter() - started

    label = f"{w.name} medals TTA-8"
    warm = predict(min(len(dataset), w.batch))
    say(f"  {label}: warm-up batch {warm:.1f} s")
    seconds = predict(len(dataset))
    say(f"{label}: {len(dataset) / seconds:.1f} images/s ({len(dataset)} images x 8 views)")
    return {
        **runtime_fields(rt),
        "compile": False,  # predict_with_cls runs the eager model
        "source": "JPEG",
        "workers": workers,
        "images": len(dataset),
        "seconds": seconds,
        "images_per_s": len(dataset) / seconds,
        "warmup_steps": 1,
        "steps": math.ceil(len(dataset) / w.batch),
        "warmup_seconds": warm,
    }


def ratios(rows: dict[str, dict], which) -> dict[str, dict[str, Any]]:
    out = {}
    for name, num, den, scale in which:
        value = scale * rows[num]["images_per_s"] / rows[den]["images_per_s"]
        out[name] = {"value": value, "numerator": num, "denominator": den, "scale": scale}
    return out


# ---- CPU data-path comparison ----------------------------------------------------------------------


def items_per_second(dataset, n: int) -> float:
    dataset[0]  # warm up (imports, first allocations)
    # The same seed for both paths: they draw the same ops (ElasticTransform alone costs half the time).
    dataset.transform.set_random_seed(0)
    started = time.perf_counter()
    for index in range(n):
        dataset[index % len(dataset)]
    return n / (time.perf_counter() - started)


def run_datapath(args, data_dir: Path) -> dict[str, Any]:
    from medals.data.dataset import recipe_dataset

    source, size, n = DATAPATH_QUICK if args.quick else DATAPATH_FULL
    say(
        f"\n== CPU data path: {source} px JPEG vs {size} px cache, melanoma list, 1 process, 1 thread, no model"
    )
    w = replace(FULL["b3"], source=source, size=size)
    files = make_images(data_dir, "skin", n, source, w.num_classes)
    cache, cache_seconds = cached_table(files, size, args.cache_dir)
    recipe = make_recipe(w, augment_list("melanoma"), 0, data_path="cpu")
    threads = torch.get_num_threads()
    cv2_threads = cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        seed_set = recipe_dataset(recipe, files, w.num_classes, train=True)
        seed_set.transform = seed_transform(augment_list("melanoma"), size)
        seed = items_per_second(seed_set, n)
        say(f"seed: JPEG {source} + list at {source} + resize {size} + normalise: {seed:.1f} images/s")
        medals = items_per_second(recipe_dataset(recipe, cache, w.num_classes, train=True), n)
        say(f"medals: npy {size} + list at {size} + normalise: {medals:.1f} images/s")
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv2_threads)
    rows = {
        "seed_jpeg": {"source": f"JPEG {source}", "size": size, "images": n, "images_per_s": seed},
        "medals_cache": {"source": f"npy {size}", "size": size, "images": n, "images_per_s": medals},
    }
    return {
        "config": {"source": source, "size": size, "images": n, "augment": "melanoma"},
        "cache_build": {"images": len(cache), "seconds": cache_seconds},
        "rows": rows,
        "ratios": ratios(rows, DATAPATH_RATIOS),
    }


# ---- report ----------------------------------------------------------------------------------------


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def report(results: dict[str, Any]) -> str:
    parts = []
    workloads = results["workloads"]
    if workloads:
        detail = []
        for name, res in workloads.items():
            for key in ROW_ORDER:
                row = res["rows"][key]
                detail.append(
                    [
                        name,
                        ROW_LABELS[key],
                        row["data_path"] + (f" ({row['source']})" if "source" in row else ""),
                        row["precision"],
                        row["layout"],
                        "compile" if row["compile"] else "eager",
                        str(row["workers"]),
                        str(row["images"]),
                        f"{row['seconds']:.2f}",
                        f"{row['images_per_s']:.1f}",
                    ]
                )
        header = ["workload", "measurement", "data path", "precision", "layout", "mode", "workers"]
        parts.append(_table([*header, "images", "seconds", "images/s"], detail))

        summary = []
        for name, res in workloads.items():
            cfg, rows, rat = res["config"], res["rows"], res["ratios"]
            summary.append(
                [
                    f"{name} ({cfg['backbone']}, {cfg['source']}->{cfg['size']}, batch {cfg['batch']})",
                    *(f"{rows[key]['images_per_s']:.1f}" for key in ROW_ORDER),
                    f"{rat['medals_vs_seed']['value']:.2f}x",
                    f"{rat['medals_cache_vs_seed']['value']:.2f}x",
                    f"{rat['seed_pct_of_ceiling']['value']:.0f}%",
                    f"{rat['medals_pct_of_ceiling']['value']:.0f}%",
                    f"{rat['medals_cache_pct_of_ceiling']['value']:.0f}%",
                    f"{res['cache_build']['seconds']:.2f} s / {res['cache_build']['images']}",
                ]
            )
        header = ["workload", *(f"{ROW_LABELS[key]} img/s" for key in ROW_ORDER)]
        header += ["medals / seed", "cache / seed", "seed % of ceiling", "medals % of ceiling"]
        header += ["cache % of ceiling", "cache build (once)"]
        parts.append(_table(header, summary))
    datapath = results.get("datapath")
    if datapath:
        cfg, rows = datapath["config"], datapath["rows"]
        src, size = cfg["source"], cfg["size"]
        lines = [
            [
                f"seed: JPEG {src} decode + list at {src} + resize {size} + normalise",
                f"{rows['seed_jpeg']['images_per_s']:.1f}",
            ],
            [
                f"medals CPU path: npy {size} cache + list at {size} + normalise",
                f"{rows['medals_cache']['images_per_s']:.1f}",
            ],
            ["medals / seed", f"{datapath['ratios']['cache_vs_jpeg']['value']:.2f}x"],
        ]
        parts.append(_table(["CPU data path, melanoma list, 1 core, no model", "images/s per core"], lines))
    return "\n\n".join(parts)


# ---- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="CPU-sized models, images and step counts (CI)")
    parser.add_argument(
        "--workloads",
        default=",".join((*WORKLOADS, DATAPATH)),
        help=f"comma-separated subset of {', '.join((*WORKLOADS, DATAPATH))} (default: all)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="CPU data path workers (default: CPU count; 1 with --quick)"
    )
    parser.add_argument(
        "--gpu-workers",
        type=int,
        default=None,
        help="GPU data path workers, which only read bytes (default: min(4, workers))",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps (default 40, 2 with --quick; loader rows round up to whole rounds of workers)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps first (default 3, 1 with --quick; loader rows at least one per worker)",
    )
    parser.add_argument(
        "--medals-data-path",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="medals rows' train.data_path (default auto: the per-device default)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the JPEGs and caches go (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    args.workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in args.workloads if name not in (*WORKLOADS, DATAPATH)]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join((*WORKLOADS, DATAPATH))}"
        )
    if args.workers is None:
        args.workers = 1 if args.quick else os.cpu_count() or 1
    if args.gpu_workers is None:
        args.gpu_workers = max(1, min(4, args.workers))
    if args.steps is None:
        args.steps = 2 if args.quick else 40
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.steps < 1 or args.warmup < 0 or args.workers < 0:
        parser.error("--steps must be at least 1, --warmup and --workers at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    # Like a training run with train.deterministic false (medals.train.loop._seed_everything).
    torch.backends.cudnn.benchmark = True
    machine = machine_info(device)
    date = datetime.now().astimezone().isoformat(timespec="seconds")
    say(f"throughput benchmark, {date}")
    say(
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, GPU {machine['gpu'] or 'none'}, "
        f"torch {machine['torch']}, timm {machine.get('timm')}, smp {machine.get('smp')}, "
        f"albumentations {machine.get('albumentations')}, Python {machine['python']}"
    )
    say(
        f"device {device}, {'quick' if args.quick else 'full'} sizes, workloads {','.join(args.workloads)}, "
        f"{args.workers} workers (GPU data path {args.gpu_workers}), {args.steps} steps after {args.warmup} warm-up"
    )
    results: dict[str, Any] = {
        "date": date,
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workloads": {},
        "datapath": None,
    }
    specs = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="medals_throughput_") as tmp:
        data_dir = args.data_dir or Path(tmp)
        args.cache_dir = Path(tmp) / "cache"
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in args.workloads:
            if name == DATAPATH:
                results["datapath"] = run_datapath(args, data_dir)
            else:
                results["workloads"][name] = run_workload(specs[name], args, device, data_dir)
    table = report(results)
    say(
        f"\n## {date[:10]}: {machine['gpu'] or machine['cpu']}, {machine['cpu_count']} CPUs, torch {machine['torch']}\n"
    )
    say(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        say(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
