"""Warps as coordinate maps, and runs of them sampled once.

A warp says, for every pixel of its output, where in its input that pixel comes from (`points`), after
drawing its per-sample parameters (`draw`). One op alone samples its input once. A run of consecutive
warps, with the Resize to the training size when it follows them, composes its maps from the output
backwards and samples the images once (`resample`). The melanoma list's Affine + Resize(768 -> 512) then
warps straight to 512 px instead of warping at 768 and resizing afterwards.

Coordinates are pixels with centres at integers (cv2.remap's convention), float32, kept as one
[n, H, W, 2] tensor. Flips, transpose, Affine and Resize are affine maps: consecutive ones multiply as
3x3 matrices (float64) and are evaluated once, with one batched matmul. Borders are resolved on the
coordinates, stage by stage, as OpenCV names them:
- reflect-101 (border_mode 4) and reflect (2) fold coordinates back into the image, exactly;
- replicate (1) clamps them;
- constant (0) clamps them and blends the stage's fill in with the weight the sample would give to
  pixels outside the image (bilinear: linearly over the last pixel, like cv2.warpAffine; nearest: all
  or nothing).
The innermost stage that can move pixels out of the image leaves its border to grid_sample's own
padding when that is exact (zeros for a zero fill, border for replicate, reflection for reflect);
flips and transposes never reach outside, so they compose through any border.

Against op-by-op warping, a fused run interpolates the images once instead of once per op (no
accumulated bilinear blur), samples bilinearly when any of its ops does, and samples masks nearest at
the image's own coordinates, so masks stay aligned with the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medals.augment.gpu.sampling import GpuOp, host_rand, to_device

COORD = torch.float32
_BORDERS = {0: "constant", 1: "replicate", 2: "reflect", 4: "reflect101"}
_INTERP = {0: "nearest", 1: "bilinear"}


def border_kind(border_mode: int) -> str:
    """cv2 border mode -> the rule `fold` applies."""
    if border_mode not in _BORDERS:
        raise NotImplementedError(
            f"border_mode {border_mode} (supported: 0 constant, 1 replicate, 2 reflect, 4 reflect-101)"
        )
    return _BORDERS[border_mode]


def interp_mode(flag: int, where: str) -> str:
    """cv2 interpolation flag -> grid_sample mode."""
    if flag not in _INTERP:
        raise NotImplementedError(f"{where} {flag} (supported: 0 nearest, 1 linear)")
    return _INTERP[flag]


def pixel_grid(n: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pixel coordinates, float32 [n, H, W] each (expanded views)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=COORD, device=device),
        torch.arange(w, dtype=COORD, device=device),
        indexing="ij",
    )
    return xs.expand(n, h, w), ys.expand(n, h, w)


def fold(q: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """Coordinates along one axis brought into [0, size - 1] by a border rule (cv2.borderInterpolate for
    whole pixels; constant and replicate clamp)."""
    if size == 1:
        return torch.zeros_like(q)
    if kind == "reflect101":  # gfedcb|abcdefgh|gfedcba: mirror about the edge pixels' centres
        t = torch.remainder(q, 2 * (size - 1))
        q = (size - 1) - (t - (size - 1)).abs()
    elif kind == "reflect":  # fedcba|abcdefgh|hgfedcba: mirror about the image's edges
        t = torch.remainder(q + 0.5, 2 * size)
        q = size - 0.5 - (t - size).abs()
    return q.clamp(0, size - 1)


def inside_weight(q: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """The share of a sample at q that comes from pixels inside [0, size - 1] (the rest is the fill)."""
    if mode == "nearest":
        return ((q >= -0.5) & (q < size - 0.5)).to(q.dtype)
    return torch.minimum(q + 1, size - q).clamp(0, 1)


class Warp(GpuOp):
    """A geometric op given by its coordinate map.

    Subclasses set mode / mask_mode ("bilinear" | "nearest"), border ("constant" | "replicate" |
    "reflect" | "reflect101"), fill / fill_mask (constant border), and implement `draw` and either
    `inverse_matrix` (affine maps) or `points`. `transparent` ops never take pixels from outside their
    input, so their border does not matter.
    """

    mode = "bilinear"
    mask_mode = "nearest"
    border = "constant"
    fill: Any = 0.0
    fill_mask: Any = 0.0
    transparent = False

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    def draw(self, n: int, h: int, w: int, g: torch.Generator, device) -> Any:
        """Per-sample parameters for n samples of input size (h, w)."""
        return None

    def inverse_matrix(self, params: Any, h: int, w: int, device) -> torch.Tensor | None:
        """For affine maps: output -> input pixel matrices [n or 1, 3, 3] (float64); else None."""
        return None

    def points(
        self, params: Any, x: torch.Tensor, y: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Source coordinates in the (h, w) input for output coordinates x, y [n, H', W']."""
        a = self.inverse_matrix(params, h, w, x.device)
        if a is None:
            raise NotImplementedError(f"{type(self).__name__} gives neither points nor an inverse_matrix")
        a = a.to(COORD)[:, :2, :, None, None]
        return a[:, 0, 0] * x + a[:, 0, 1] * y + a[:, 0, 2], a[:, 1, 0] * x + a[:, 1, 1] * y + a[:, 1, 2]

    def entries(self, n: int, h: int, w: int, g: torch.Generator, device) -> list[tuple]:
        """(op, sample indices or None for all, params) for a batch of n, drawn as `__call__` would."""
        idx = (host_rand(n, g) < self.p).nonzero().squeeze(1)  # on the host: nothing read back
        k = idx.numel()
        if k == 0:
            return []
        return [(self, None if k == n else to_device(idx, device), self.draw(k, h, w, g, device))]

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        stage = Stage(h, w, [(self, None, self.draw(n, h, w, g, x.device))])
        return resample(x, m, [stage], self.out_size(h, w))


def fixed_matrix(rows: Sequence[Sequence[float]], device) -> torch.Tensor:
    """A fixed [1, 3, 3] float64 matrix from its top two rows."""
    # Made on the host and copied: a tensor built on the device from Python values waits for its stream.
    return to_device(torch.tensor([*rows, (0.0, 0.0, 1.0)], dtype=torch.float64)[None], device)


class Resize(Warp):
    """Resize to (size, size) like F.interpolate(bilinear, align_corners=False, no antialiasing), which is
    cv2.INTER_LINEAR; alone it is exactly that (masks nearest). It draws nothing, and images already at
    the size skip it."""

    border = "replicate"  # F.interpolate clamps the half pixel its edge samples reach past the input

    def __init__(self, size: int):
        super().__init__(1.0)
        self.size = int(size)

    def out_size(self, h, w):
        return self.size, self.size

    def inverse_matrix(self, params, h, w, device):
        sx, sy = w / self.size, h / self.size
        return fixed_matrix([(sx, 0.0, 0.5 * sx - 0.5), (0.0, sy, 0.5 * sy - 0.5)], device)

    def entries(self, n, h, w, g, device):
        return [] if (h, w) == self.out_size(h, w) else [(self, None, None)]

    def __call__(self, x, m, g):
        s = self.size
        if tuple(x.shape[-2:]) == (s, s):
            return x, m
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=False)
        if m is not None:
            m = F.interpolate(m.float(), size=(s, s), mode="nearest").to(m.dtype)
        return x, m


@dataclass
class Stage:
    """One op's place in a run: its input size and who it applies to with which parameters."""

    h: int
    w: int
    entries: list[tuple]  # (Warp, sample indices or None for all, params)

    def ops(self) -> list[Warp]:
        return [op for op, _, _ in self.entries]

    def transparent(self) -> bool:
        return all(op.transparent for op in self.ops())

    def rule(self) -> tuple | None:
        """The border rule every entry shares (kind, fill, fill_mask, mode, mask_mode), or None."""
        rules = {(op.border, _key(op.fill), _key(op.fill_mask), op.mode, op.mask_mode) for op in self.ops()}
        return rules.pop() if len(rules) == 1 else None

    def matrices(self, n: int, device) -> torch.Tensor | None:
        """Output -> input matrices [n, 3, 3] for the whole batch (identity where no entry applies), or
        None when an entry is not affine."""
        out = None
        for op, idx, params in self.entries:
            a = op.inverse_matrix(params, self.h, self.w, device)
            if a is None:
                return None
            if idx is None:
                out = a.expand(n, 3, 3)
                continue
            if out is None:
                out = torch.eye(3, dtype=torch.float64, device=device).expand(n, 3, 3)
            out = out.index_copy(0, idx, a.expand(idx.numel(), 3, 3))
        return out


def _key(fill: Any) -> Any:
    return tuple(fill) if isinstance(fill, Sequence) and not isinstance(fill, str) else fill


def _is_zero(fill: Any) -> bool:
    return fill is None or bool((torch.as_tensor(fill, dtype=torch.float64) == 0).all())


_NATIVE = {"replicate": "border", "reflect": "reflection"}


def _native_padding(stage: Stage, with_masks: bool) -> str | None:
    """grid_sample's padding that resolves this stage's border exactly, if there is one."""
    rule = stage.rule()
    if rule is None:
        return None
    if rule[0] == "constant":
        fills_zero = _is_zero(rule[1]) and (not with_masks or _is_zero(rule[2]))
        return "zeros" if fills_zero else None
    return _NATIVE.get(rule[0])


class _Blend:
    """Constant-border fills met along the way: out = keep * sampled + extra."""

    def __init__(self, n: int, channels: int, h: int, w: int, device):
        self.shape = (n, channels, h, w)
        self.device = device
        self.keep: torch.Tensor | None = None
        self.extra: torch.Tensor | None = None

    def add(self, idx: torch.Tensor | None, a: torch.Tensor, fill: Any) -> None:
        n, c, h, w = self.shape
        if self.keep is None:
            self.keep = torch.ones((n, 1, h, w), dtype=COORD, device=self.device)
        a = a[:, None]
        keep = self.keep if idx is None else self.keep[idx]
        if not _is_zero(fill):
            fills = to_device(torch.as_tensor(fill, dtype=COORD), self.device).reshape(1, -1, 1, 1)
            if self.extra is None:
                self.extra = torch.zeros(self.shape, dtype=COORD, device=self.device)
            extra = self.extra if idx is None else self.extra[idx]
            extra = extra + keep * (1 - a) * fills
            self.extra = extra if idx is None else self.extra.index_copy(0, idx, extra)
        keep = keep * a
        self.keep = keep if idx is None else self.keep.index_copy(0, idx, keep)

    def finish(self, sampled: torch.Tensor) -> torch.Tensor:
        if self.keep is not None:
            sampled = sampled * self.keep
        if self.extra is not None:
            sampled = sampled + self.extra
        return sampled


def _apply_matrices(
    points: torch.Tensor | None, mats: torch.Tensor, out_size: tuple[int, int]
) -> torch.Tensor:
    """mats [n, 3, 3] (or [n, 2, 3]) applied to points [n, H, W, 2] (None: the output pixel grid)."""
    n = mats.shape[0]
    a = mats[:, :2].to(COORD)
    if points is None:
        oh, ow = out_size
        xs, ys = (grid[0] for grid in pixel_grid(1, oh, ow, a.device))
        base = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, oh * ow, 3)
        return torch.matmul(base, a.transpose(1, 2)).reshape(n, oh, ow, 2)
    flat = points.reshape(n, -1, 2)
    return torch.baddbmm(a[:, None, :, 2], flat, a[:, :, :2].transpose(1, 2)).reshape(points.shape)


def _points(stage: Stage, points: torch.Tensor) -> torch.Tensor:
    """Each entry's `points` on its samples."""
    for op, idx, params in stage.entries:
        sub = points if idx is None else points[idx]
        qx, qy = op.points(params, sub[..., 0], sub[..., 1], stage.h, stage.w)
        new = torch.stack([qx, qy], -1)
        points = new if idx is None else points.index_copy(0, idx, new)
    return points


def _border(stage: Stage, points: torch.Tensor, image: _Blend, mask: _Blend | None) -> torch.Tensor:
    """The stage's borders on coordinates: fills blended in, coordinates folded into its input."""
    # Coordinates that no entry moved are inside already, and every rule leaves those alone, so one
    # shared rule is applied to the whole batch.
    groups = [(stage.ops()[0], None)] if stage.rule() else [(op, idx) for op, idx, _ in stage.entries]
    for op, idx in groups:
        sub = points if idx is None else points[idx]
        qx, qy = sub[..., 0], sub[..., 1]
        if op.border == "constant":
            image.add(idx, inside_weight(qx, stage.w, op.mode) * inside_weight(qy, stage.h, op.mode), op.fill)
            if mask is not None:
                a = inside_weight(qx, stage.w, op.mask_mode) * inside_weight(qy, stage.h, op.mask_mode)
                mask.add(idx, a, op.fill_mask)
        new = torch.stack([fold(qx, stage.w, op.border), fold(qy, stage.h, op.border)], -1)
        points = new if idx is None else points.index_copy(0, idx, new)
    return points


def _sample(t: torch.Tensor, grid: torch.Tensor, mode: str, padding: str, blend: _Blend) -> torch.Tensor:
    out = F.grid_sample(t.to(COORD), grid, mode=mode, padding_mode=padding, align_corners=False)
    out = blend.finish(out)
    if t.dtype.is_floating_point:
        return out.to(t.dtype)
    return out.round().to(t.dtype)


def resample(
    x: torch.Tensor, m: torch.Tensor | None, stages: Sequence[Stage], out_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images (and masks) through a run of warp stages, sampled once at the composed coordinates."""
    n, _, h, w = x.shape
    oh, ow = out_size
    image = _Blend(n, x.shape[1], oh, ow, x.device)
    mask = _Blend(n, m.shape[1], oh, ow, x.device) if m is not None else None  # C mask channels
    # the innermost stage that can reach outside its input; grid_sample may resolve its border
    inner = next((k for k, stage in enumerate(stages) if not stage.transparent()), None)
    padding = _native_padding(stages[inner], m is not None) if inner is not None else None
    points: torch.Tensor | None = None
    pending: torch.Tensor | None = None  # affine stages not yet applied to `points`
    for k in reversed(range(len(stages))):  # from the output back to the source
        stage = stages[k]
        mats = stage.matrices(n, x.device)
        if mats is not None:
            pending = mats if pending is None else mats @ pending
            if stage.transparent() or (k == inner and padding is not None):
                continue
            points, pending = _apply_matrices(points, pending, out_size), None
        else:
            if pending is not None:
                points, pending = _apply_matrices(points, pending, out_size), None
            if points is None:
                points = torch.stack(pixel_grid(n, oh, ow, x.device), -1)
            points = _points(stage, points)
            if k == inner and padding is not None:
                continue
        points = _border(stage, points, image, mask)
    # pixel coordinates of the source -> grid_sample's [-1, 1] (align_corners=False), folded into the
    # last matrix when the run ends in affine maps
    to_grid = fixed_matrix([(2 / w, 0.0, 1 / w - 1), (0.0, 2 / h, 1 / h - 1)], x.device)
    grid = _apply_matrices(
        points, to_grid @ pending if pending is not None else to_grid.expand(n, 3, 3), out_size
    )
    ops = [op for stage in stages for op in stage.ops()]
    mode = "bilinear" if any(op.mode == "bilinear" for op in ops) else "nearest"
    padding = padding or "border"
    out = _sample(x, grid, mode, padding, image)
    if m is not None:
        mask_mode = "bilinear" if any(op.mask_mode == "bilinear" for op in ops) else "nearest"
        m = _sample(m, grid, mask_mode, padding, mask)
    return out, m


class FusedWarps:
    """Consecutive warps (ops and OneOfs of warps, and a final Resize): parameters drawn in order exactly
    as op by op (the same generator gives the same draws), then one `resample`."""

    def __init__(self, ops: Sequence[GpuOp]):
        self.ops = list(ops)

    def __call__(self, x, m, g):
        n, _, h, w = x.shape
        stages = []
        for op in self.ops:
            entries = op.entries(n, h, w, g, x.device)
            if not entries:
                continue
            out = {e[0].out_size(h, w) for e in entries}
            if len(out) > 1 or (out != {(h, w)} and any(e[1] is not None for e in entries)):
                raise ValueError(f"Transpose on a batch needs square images, got {(h, w)}")
            stages.append(Stage(h, w, entries))
            h, w = out.pop()
        if not stages:
            return x, m
        return resample(x, m, stages, (h, w))

    def __repr__(self) -> str:
        return f"FusedWarps({', '.join(type(op).__name__ for op in self.ops)})"
