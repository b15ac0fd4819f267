"""Deformable transformer encoder (Deformable DETR / ED-Pose)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .ops import MSDeformAttn

__all__ = ["DeformableEncoder", "DeformableEncoderLayer", "EncoderState", "flatten_levels"]


@dataclass
class EncoderState:
    """What the decoders read from the image, computed once per image.

    memory (B, S, D), padding_mask (B, S), spatial_shapes (L, 2), valid_ratios (B, L, 2): the encoded levels.
    fine: an optional high-resolution level (another ``EncoderState`` with L = 1) that skips the encoder and
    that only the keypoint decoder's fine layers sample (``OneStageConfig.fine_stride``).
    """

    memory: torch.Tensor
    padding_mask: torch.Tensor
    spatial_shapes: torch.Tensor
    valid_ratios: torch.Tensor
    fine: EncoderState | None = None


def flatten_levels(feats: list[torch.Tensor], masks: list[torch.Tensor], pos: list[torch.Tensor] | None = None,
                   level_embed: torch.Tensor | None = None):
    """Multi-level maps -> tokens.

    Args:
        feats: per level (B, D, H_l, W_l). masks: per level (B, H_l, W_l) bool, True on padding.
        pos: per level (B, D, H_l, W_l) position embeddings, or None. level_embed: (L, D), with pos.

    Returns:
        tokens (B, S, D), padding mask (B, S), pos (B, S, D) or None, spatial_shapes (L, 2) long,
        level_start (L,) long, valid_ratios (B, L, 2) (share of each axis that is not padding, x then y).
    """
    tokens, pad, poses, shapes = [], [], [], []
    for lvl, (f, m) in enumerate(zip(feats, masks)):
        shapes.append(f.shape[-2:])
        tokens.append(f.flatten(2).transpose(1, 2))  # (B, H_l W_l, D)
        pad.append(m.flatten(1))
        if pos is not None:
            poses.append(pos[lvl].flatten(2).transpose(1, 2) + level_embed[lvl][None, None])
    spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=feats[0].device)  # (L, 2)
    sizes = spatial_shapes.prod(1)
    level_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    valid = torch.stack([torch.stack([(~m[:, 0, :]).sum(1) / m.shape[2], (~m[:, :, 0]).sum(1) / m.shape[1]], -1)
                         for m in masks], 1).float()  # (B, L, 2)
    pos_t = torch.cat(poses, 1) if poses else None
    return torch.cat(tokens, 1), torch.cat(pad, 1), pos_t, spatial_shapes, level_start, valid


class DeformableEncoderLayer(nn.Module):
    def __init__(self, dim: int = 256, heads: int = 8, levels: int = 4, points: int = 4, ffn_dim: int = 1024,
                 dropout: float = 0.0, impl: str = "pytorch"):
        super().__init__()
        self.attn = MSDeformAttn(dim, heads, levels, points, impl=impl)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, padding_mask):
        src = self.norm1(src + self.dropout(self.attn(src + pos, reference_points, src, spatial_shapes, padding_mask)))
        return self.norm2(src + self.dropout(self.ffn(src)))


class DeformableEncoder(nn.Module):
    """``layers`` deformable self-attention layers over the tokens of all levels.

    Forward: tokens (B, S, D), pos (B, S, D), spatial_shapes (L, 2), valid_ratios (B, L, 2),
    padding_mask (B, S) -> memory (B, S, D).
    """

    def __init__(self, dim: int = 256, layers: int = 6, levels: int = 4, heads: int = 8, points: int = 4,
                 ffn_dim: int = 1024, dropout: float = 0.0, impl: str = "pytorch"):
        super().__init__()
        self.dim, self.levels = dim, levels
        self.layers = nn.ModuleList(DeformableEncoderLayer(dim, heads, levels, points, ffn_dim, dropout, impl)
                                    for _ in range(layers))

    @staticmethod
    def reference_points(spatial_shapes: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Token centres as (B, S, L, 2) normalised points, adjusted for each level's padding."""
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=valid_ratios.device),
                                    torch.linspace(0.5, w - 0.5, w, device=valid_ratios.device), indexing="ij")
            ref_y = ys.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = xs.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack([ref_x, ref_y], -1))  # (B, H_l W_l, 2)
        ref = torch.cat(refs, 1)  # (B, S, 2)
        return ref[:, :, None] * valid_ratios[:, None]  # (B, S, L, 2)

    def forward(self, tokens, pos, spatial_shapes, valid_ratios, padding_mask):
        refs = self.reference_points(spatial_shapes, valid_ratios)
        out = tokens
        for layer in self.layers:
            out = layer(out, pos, refs, spatial_shapes, padding_mask)
        return out
