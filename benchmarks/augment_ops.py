"""Where the GPU data path spends its time: JPEG decode, each augmentation op alone, whole lists, loader.

Each op of a recipe's list runs alone at p=1 on one batch (synchronised timing, best of --repeat runs
after a warm-up; a warp op samples once together with the Resize, as the pipeline runs it), then the
whole list as the recipe gives it, with its warps fused (the default) and op by op, side by side, then
the DataLoader alone (workers reading bytes, no model) at a few worker counts. Figures are images/s.

    python benchmarks/augment_ops.py [--device cuda] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import FULL, QUICK, augment_list, looped, make_images, make_recipe, sync  # noqa: E402


def say(name: str, rate: float) -> None:
    print(f"{name:48s} {rate:10.1f} images/s", flush=True)


def best_seconds(fn, device: torch.device, repeat: int) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def op_table(
    spec: list[dict], x: torch.Tensor, m: torch.Tensor | None, size: int, device, repeat: int
) -> dict:
    from medals.augment.gpu import build_gpu_transform, kernels

    out = {}
    channels = x.shape[1]
    mean, std = (0.5,) * channels, (0.25,) * channels

    def generator() -> torch.Generator:  # the same draws on every call, so variants compare like for like
        return torch.Generator().manual_seed(0)  # on the host, as training's train.setup.device_generator

    fused = kernels.available(x.float().contiguous())  # CUDA with Triton: time the eager lines beside

    def rate(aug) -> float:
        return x.shape[0] / best_seconds(lambda: aug(x, m, generator()), device, repeat)

    def timed(key: str, aug) -> None:
        out[key] = rate(aug)
        say(key, out[key])
        if fused:
            kernels.ENABLED = False
            try:
                out[f"{key}, eager"] = rate(aug)
            finally:
                kernels.ENABLED = True
            say("  eager ops (no Triton kernels)", out[f"{key}, eager"])

    for i, item in enumerate(spec):
        forced = dict(item, p=1.0)
        name = (
            item["name"]
            if item["name"] != "OneOf"
            else "OneOf(" + "|".join(t["name"] for t in item["transforms"]) + ")"
        )
        timed(f"{i:02d} {name}", build_gpu_transform([forced], size, mean, std))
        if item["name"] == "OneOf":
            for child in item["transforms"]:
                timed(
                    f"{i:02d}   {child['name']}", build_gpu_transform([dict(child, p=1.0)], size, mean, std)
                )
    from medals.augment.gpu import GpuAugment
    from medals.augment.gpu.warp import FusedWarps, Resize

    for step in build_gpu_transform(spec, size, mean, std).steps:
        if not isinstance(step, FusedWarps):
            continue
        ops = [op for op in step.ops if not isinstance(op, Resize)]
        rates = []
        for fuse in (True, False):
            aug = GpuAugment(ops, size, mean, std, fuse=fuse)
            rates.append(x.shape[0] / best_seconds(lambda aug=aug: aug(x, m, generator()), device, repeat))
        name = f"{step!r}"
        out[name], out[f"{name}, op by op"] = rates
        say(name, rates[0])
        say("  the same ops one by one, then Resize", rates[1])
    timed("whole list", build_gpu_transform(spec, size, mean, std))
    out["whole list, warps op by op"] = rate(build_gpu_transform(spec, size, mean, std, fuse=False))
    say("whole list, warps op by op", out["whole list, warps op by op"])
    print(
        f"{'fused / op by op':48s} {out['whole list'] / out['whole list, warps op by op']:10.2f}x", flush=True
    )
    if fused:
        ratio = out["whole list"] / out["whole list, eager"]
        print(f"{'Triton kernels / eager ops (whole list)':48s} {ratio:10.2f}x", flush=True)
    timed("resize + normalise only", build_gpu_transform([], size, mean, std))
    return out


def decode_rate(paths: list[str], device, repeat: int) -> float:
    from torchvision.io import decode_jpeg

    data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths]
    return len(data) / best_seconds(lambda: decode_jpeg(data, device=device), device, repeat)


def loader_rate(w, table, workers: int, device, batches: int) -> float:
    from medals.data.prefetch import prefetched
    from medals.infer.batches import batch_source
    from medals.runtime.settings import resolve_runtime
    from medals.train.setup import fold_loader

    recipe = make_recipe(w, augment_list(w.augment), workers, data_path="gpu")
    runtime = resolve_runtime(recipe, device)
    rows = looped(table, (max(workers, 1) + batches + 2) * w.batch)
    dataset, prepare = batch_source(recipe, runtime, rows, w.num_classes, True, device)
    loader = fold_loader(recipe, dataset, shuffle=True, seed=0)
    generator = torch.Generator().manual_seed(0)  # on the host, as in training
    seen, start = 0, None
    # prepared as the training loop prepares them: on CUDA ahead, on a side stream in a background thread
    ready = prefetched(loader, prepare, generator, device)
    for i, out in enumerate(ready):
        if i == max(workers, 1):
            sync(device)
            start, seen = time.perf_counter(), 0
        seen += out["image"].shape[0]
        if i >= max(workers, 1) + batches:
            break
    ready.close()
    sync(device)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default: the workload's)")
    parser.add_argument("--lists", default="b3,unet", help="which workloads' lists: b3 (melanoma), unet")
    parser.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",") if v], default=[4, 8])
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.backends.cudnn.benchmark = True  # as training runs it
        for name in args.lists.split(","):
            w = sizes[name]
            if args.batch:
                w = dataclasses.replace(w, batch=args.batch)
            kind = "chest" if w.task == "segmentation" else "skin"
            files = make_images(Path(tmp), kind, w.files, w.source, w.num_classes)
            paths = files["path"].tolist()[: w.batch * 4]
            from medals.data.io import read_image

            images = [torch.from_numpy(read_image(p)).permute(2, 0, 1) for p in paths[: w.batch]]
            x = torch.stack([im.expand(3, -1, -1) for im in images]).to(
                device
            )  # uint8, as nvjpeg hands them over
            m = (x[:, :1] > 128).to(torch.uint8) if w.task == "segmentation" else None
            print(f"\n== {w.augment} list, batch {w.batch} at {w.source} px -> {w.size}", flush=True)
            table = op_table(augment_list(w.augment), x, m, w.size, device, args.repeat)
            table["JPEG decode (batched)"] = decode_rate(paths, device, args.repeat)
            say("JPEG decode (batched)", table["JPEG decode (batched)"])
            for workers in args.workers:
                key = f"loader + prepare, {workers} workers"
                table[key] = loader_rate(w, files, workers, device, 12)
                say(key, table[key])
            results[w.augment] = table
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
