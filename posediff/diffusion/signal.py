"""Coordinates <-> diffusion signal (the signal scale ζ of DiffusionRegPose Eq. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SignalCodec"]


@dataclass(frozen=True)
class SignalCodec:
    """Maps normalised coordinates in [0, 1] to a signal in [-scale, scale] and back.

    The signal scale ζ sets the signal-to-noise ratio of the forward process: the noise has unit
    variance, so a larger ζ keeps more of the pose at a given t (DiffusionRegPose uses ζ = 5; the
    official code ships 6).

    ``encode``: y = (2x - 1) ζ.  ``decode``: x = clamp((y / ζ + 1) / 2, 0, 1).
    """

    scale: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise ValueError(f"SignalCodec: scale must be a positive number, got {self.scale!r}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] coordinates (any shape) -> signal in [-scale, scale] (same shape)."""
        return (x * 2.0 - 1.0) * self.scale  # Eq. 4: signal scaling by ζ

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Signal (any shape) -> [0, 1] coordinates, clamped (same shape)."""
        return ((y / self.scale + 1.0) / 2.0).clamp(0.0, 1.0)
