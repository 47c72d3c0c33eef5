"""Batched torch augmentation on the device, from the same `train.augment` spec as medals.augment.cpu.

`build_gpu_transform(spec, image_size, mean, std, normalize="fixed")` returns a GpuAugment that applies the
spec's ops to [B, C, H, W] batches with a per-sample Bernoulli(p) and per-sample parameters, then
Resize(image_size) and normalisation ("fixed" mean/std, or "image": per-image standardisation).
Sampling follows albumentations 2.0.8; each op's module says where it is exact and where it approximates.

Modules, one op family each: sampling (random draws, GpuOp), warp (geometric ops as coordinate maps,
OpenCV's borders on coordinates, runs of warps and the Resize sampled once), flips, color, noise, blur,
geometry (Affine), distortion (optical/grid/elastic), dropout, clahe (with lab, OpenCV's 8-bit
RGB <-> Lab), compose (OneOf, conversion, the fusion plan, GpuAugment).
Ops not in SUPPORTED raise NotImplementedError.
"""

from medals.augment.gpu.compose import SUPPORTED, GpuAugment, build_gpu_transform

__all__ = ["SUPPORTED", "GpuAugment", "build_gpu_transform"]
