"""Small shared pieces: MLP, inverse sigmoid, sine embeddings, attributes set within a block."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

__all__ = ["MLP", "inverse_sigmoid", "sine_embed", "timestep_embedding", "attributes_set"]


@contextlib.contextmanager
def attributes_set(obj, **values):
    """``obj`` with its attributes set to ``values`` inside the block and restored after it (a model's inference
    settings for one evaluation: ``attributes_set(model.head, start="noise")``)."""
    kept = {k: getattr(obj, k) for k in values}  # an attribute ``obj`` lacks is refused here, before any is set
    try:
        for k, v in values.items():
            setattr(obj, k, v)
        yield obj
    finally:
        for k, v in kept.items():
            setattr(obj, k, v)


class MLP(nn.Module):
    """``layers`` linear layers with ReLU between them."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def sine_embed(coords: torch.Tensor, dim: int = 128, temperature: float = 10000.0) -> torch.Tensor:
    """Sine-cosine embedding of normalised coordinates (..., C) -> (..., C * dim)."""
    freqs = temperature ** (2 * (torch.arange(dim // 2, device=coords.device, dtype=torch.float32)) / dim)
    x = coords.float()[..., None] * (2 * math.pi) / freqs  # (..., C, dim/2)
    emb = torch.stack([x.sin(), x.cos()], -1).flatten(-2)  # (..., C, dim)
    return emb.flatten(-2).to(coords.dtype if coords.is_floating_point() else torch.float32)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], -1)
