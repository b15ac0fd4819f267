"""Seeded Gaussian draws that honour a generator's device."""

from __future__ import annotations

import torch


def randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """``torch.randn`` drawn on the generator's device (so a CPU generator works for CUDA tensors)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
