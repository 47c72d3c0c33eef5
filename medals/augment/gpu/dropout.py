"""CoarseDropout: rectangular holes filled with a constant."""

from __future__ import annotations

import torch

from medals.augment.gpu.sampling import GpuOp, randint, randint_between, to_device, uniform


class CoarseDropout(GpuOp):
    """Hole counts, sizes and positions as albumentations (fractions of the side or pixels).

    Numeric fills only. Masks are filled only when fill_mask is set (albumentations 2 default None:
    masks untouched).
    """

    def __init__(self, p, op):
        super().__init__(p)
        for key in ("fill", "fill_mask"):
            if isinstance(getattr(op, key), str):
                raise NotImplementedError(f"CoarseDropout {key}={getattr(op, key)!r}: only numeric fills")
        self.num_holes = tuple(op.num_holes_range)
        self.h_range = tuple(op.hole_height_range)
        self.w_range = tuple(op.hole_width_range)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    @property
    def size_free(self) -> bool:
        """Holes sized in fractions of the side mean the same before or after a resize."""
        return self.h_range[1] < 1 and self.w_range[1] < 1

    def holes(self, n: int, h: int, w: int, g: torch.Generator, device) -> tuple[torch.Tensor, ...]:
        """(x0, y0, x1, y1, valid) each [n, max_holes]."""
        k = self.num_holes[1]
        count = randint(n, *self.num_holes, g, device)
        if self.h_range[1] >= 1:
            lo_h = torch.full((n, k), int(self.h_range[0]), device=device)
            lo_w = torch.full((n, k), int(self.w_range[0]), device=device)
            hh = randint_between(lo_h, torch.full_like(lo_h, int(min(self.h_range[1], h))), g)
            ww = randint_between(lo_w, torch.full_like(lo_w, int(min(self.w_range[1], w))), g)
        else:
            hh = (h * uniform(n * k, *self.h_range, g, device)).long().reshape(n, k)
            ww = (w * uniform(n * k, *self.w_range, g, device)).long().reshape(n, k)
        y0 = randint_between(torch.zeros_like(hh), h - hh, g)
        x0 = randint_between(torch.zeros_like(ww), w - ww, g)
        valid = torch.arange(k, device=device)[None] < count[:, None]
        return x0, y0, x0 + ww, y0 + hh, valid

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        x0, y0, x1, y1, valid = self.holes(n, h, w, g, x.device)
        ys = torch.arange(h, device=x.device).reshape(1, 1, h, 1)
        xs = torch.arange(w, device=x.device).reshape(1, 1, 1, w)
        e = (..., None, None)
        inside = (ys >= y0[e]) & (ys < y1[e]) & (xs >= x0[e]) & (xs < x1[e]) & valid[e]
        hole = inside.any(1, keepdim=True)  # [n, 1, H, W]
        fill = to_device(torch.as_tensor(self.fill, dtype=x.dtype), x.device).reshape(1, -1, 1, 1)
        x = torch.where(hole, fill, x)
        if m is not None and self.fill_mask is not None:
            fm = to_device(torch.as_tensor(self.fill_mask).to(m.dtype), m.device).reshape(1, -1, 1, 1)
            m = torch.where(hole, fm, m)
        return x, m
