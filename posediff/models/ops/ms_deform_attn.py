"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021).

Each query looks at a few sampled points per head and per feature level, around its reference point,
and mixes them with learned weights. The sampling core runs in pure PyTorch (``grid_sample``) on every
device; ``impl="compile"`` wraps that same core in ``torch.compile``, which gives equal results
(``tests/unit/test_ms_deform_attn.py``) and is faster where a compiler toolchain is present.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDeformAttn", "ms_deform_attn_core"]


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The sampling core.

    Args:
        value: (B, S, H, Dh) per-head values of all levels' tokens (S = Σ_l H_l W_l).
        spatial_shapes: (L, 2) long, (H_l, W_l) per level.
        sampling_locations: (B, Q, H, L, P, 2) in [0, 1] (x, y) of the padded image.
        attention_weights: (B, Q, H, L, P), softmax-normalised over (L, P).

    Returns:
        (B, Q, H * Dh).
    """
    b, _, heads, dh = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    values = value.split(sizes, dim=1)
    grids = 2.0 * sampling_locations - 1.0  # grid_sample wants [-1, 1]
    sampled = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(b * heads, dh, int(h), int(w))  # (B*H, Dh, H_l, W_l)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (B*H, Q, P, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)  # (B*H, Dh, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(b * heads, 1, q, levels * points)  # (B*H, 1, Q, L*P)
    out = (stacked * weights).sum(-1).view(b, heads * dh, q)  # (B, H*Dh, Q)
    return out.transpose(1, 2).contiguous()


_compiled_core = None


def _core(impl: str):
    global _compiled_core
    if impl == "pytorch":
        return ms_deform_attn_core
    if impl == "compile":
        if _compiled_core is None:
            _compiled_core = torch.compile(ms_deform_attn_core, dynamic=True)
        return _compiled_core
    raise ValueError(f"MSDeformAttn: impl must be 'pytorch' or 'compile', got {impl!r}")


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        dim: model width. heads: attention heads. levels: feature levels. points: samples per head and level.
        impl: ``"pytorch"`` (default, any device) or ``"compile"`` (``torch.compile`` of the same core).

    Forward:
        query: (B, Q, D). reference_points: (B, Q, L, 2) normalised points, or (B, Q, L, 4) boxes
        (cx, cy, w, h) whose size scales the offsets. value: (B, S, D). spatial_shapes: (L, 2).
        padding_mask: (B, S) bool, True on padding tokens (their values are zeroed).
        Returns (B, Q, D).
    """

    def __init__(self, dim: int = 256, heads: int = 8, levels: int = 4, points: int = 4, impl: str = "pytorch"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"MSDeformAttn: dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.levels, self.points, self.impl = dim, heads, levels, points, impl
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True).values).view(self.heads, 1, 1, 2)
        grid = grid.repeat(1, self.levels, self.points, 1)
        for i in range(self.points):
            grid[:, :, i, :] *= i + 1  # initial offsets: rings of points around the reference, one direction per head
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query, reference_points, value, spatial_shapes, padding_mask=None):
        b, q, _ = query.shape
        s = value.shape[1]
        h, lv, p = self.heads, self.levels, self.points
        if spatial_shapes.shape[0] != lv:
            raise ValueError(f"MSDeformAttn: built for {lv} levels, got {spatial_shapes.shape[0]}")
        v = self.value_proj(value)  # (B, S, D)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.view(b, s, h, self.dim // h)  # (B, S, H, Dh)
        offsets = self.sampling_offsets(query).view(b, q, h, lv, p, 2)  # (B, Q, H, L, P, 2)
        weights = self.attention_weights(query).view(b, q, h, lv * p).softmax(-1).view(b, q, h, lv, p)
        if reference_points.shape[-1] == 2:
            norm = torch.stack([spatial_shapes[:, 1], spatial_shapes[:, 0]], -1).to(offsets)  # (L, 2): W, H
            loc = reference_points[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            loc = (reference_points[:, :, None, :, None, :2]
                   + offsets / p * reference_points[:, :, None, :, None, 2:] * 0.5)  # offsets scaled by the box
        else:
            raise ValueError(f"MSDeformAttn: reference_points must end in 2 or 4, got {reference_points.shape[-1]}")
        out = _core(self.impl)(v, spatial_shapes, loc, weights)  # (B, Q, D)
        return self.output_proj(out)
