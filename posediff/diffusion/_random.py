"""Seeded random draws that honour a generator's device (a CPU generator works for CUDA tensors)."""

from __future__ import annotations

import torch


def randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """``torch.randn`` drawn on the generator's device (so a CPU generator works for CUDA tensors)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def rand(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """``torch.rand`` drawn on the generator's device, returned on ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def randint(high: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """``torch.randint(high, shape)`` drawn on the generator's device, returned on ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, shape, generator=generator, device=gen_device).to(device)


def multinomial(weights: torch.Tensor, count: int, generator: torch.Generator | None,
                replacement: bool = False) -> torch.Tensor:
    """``torch.multinomial`` over rows of ``weights`` drawn on the generator's device, returned on theirs."""
    gen_device = generator.device if generator is not None else weights.device
    return torch.multinomial(weights.to(gen_device), count, replacement=replacement,
                             generator=generator).to(weights.device)
