"""Pad a variable number of ground-truth poses to a fixed number of proposals (DiffusionRegPose Table 4).

Poses are padded in *signal space* (after :class:`~posediff.diffusion.signal.SignalCodec.encode`),
where 0 is the image centre and the forward process ends in N(0, I):

=========  ====================================================================================
strategy   padded rows
=========  ====================================================================================
repeat     the ground-truth poses replicated in order (GT 0, 1, ..., M-1, 0, 1, ...)
empty      zeros: every joint at the image centre, a "no pose" signal
noise      standard Gaussian per coordinate, what the forward process converges to
mean       a mean pose (``mean_pose``, or the mean shape of the given GT) placed at a centre drawn
           from N(0, I)
=========  ====================================================================================

The official DiffusionRegPose code only implements a Gaussian padding drawn in [0, 1] space before
scaling (N(-ζ, (2ζ)²) in signal space, mostly clamped to the image border); :func:`pad_poses` pads in
signal space, where "noise" means the forward process' own N(0, I).
"""

from __future__ import annotations

import torch

from ._random import randn

__all__ = ["pad_poses", "PADDING_STRATEGIES"]

PADDING_STRATEGIES = ("repeat", "empty", "noise", "mean")


def pad_poses(
    poses: torch.Tensor,
    num: int,
    strategy: str = "empty",
    generator: torch.Generator | None = None,
    mean_pose: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (or subsample) M poses to exactly ``num`` rows.

    Args:
        poses: (M, K, 2) ground-truth poses in signal space; M may be 0.
        num: number of proposals N.
        strategy: one of ``"repeat"``, ``"empty"``, ``"noise"``, ``"mean"``.
        generator: random source for subsampling, "noise" and the "mean" centres.
        mean_pose: (K, 2) centred mean pose used by ``"mean"`` (its centroid is removed); by default the
            mean of the centred GT poses.

    Returns:
        padded: (N, K, 2); rows ``is_real`` are GT poses, unchanged, in their original order.
        is_real: (N,) bool, True for the first min(M, N) rows.

    More than N ground-truth poses are subsampled uniformly without replacement (order kept).
    """
    if strategy not in PADDING_STRATEGIES:
        raise ValueError(f"pad_poses: strategy must be one of {PADDING_STRATEGIES}, got {strategy!r}")
    if poses.dim() != 3 or poses.shape[-1] != 2:
        raise ValueError(f"pad_poses: poses must have shape (M, K, 2), got {tuple(poses.shape)}")
    if int(num) < 1:
        raise ValueError(f"pad_poses: num must be >= 1, got {num}")
    m, k, _ = poses.shape
    device, dtype = poses.device, poses.dtype

    if m > num:
        gen_device = generator.device if generator is not None else "cpu"
        keep = torch.randperm(m, generator=generator, device=gen_device)[:num].sort().values
        poses = poses[keep.to(device)]
        m = num
    is_real = torch.zeros(num, dtype=torch.bool, device=device)
    is_real[:m] = True
    n_pad = num - m
    if n_pad == 0:
        return poses.clone(), is_real

    if strategy == "repeat":
        if m == 0:
            raise ValueError("pad_poses: strategy 'repeat' needs at least one ground-truth pose")
        fill = poses[torch.arange(n_pad, device=device) % m]  # (n_pad, K, 2)
    elif strategy == "empty":
        fill = torch.zeros(n_pad, k, 2, device=device, dtype=dtype)
    elif strategy == "noise":
        fill = randn((n_pad, k, 2), generator, device, dtype)
    else:  # "mean"
        if mean_pose is None:
            if m == 0:
                raise ValueError("pad_poses: strategy 'mean' needs mean_pose when there is no ground truth")
            mean_pose = (poses - poses.mean(dim=1, keepdim=True)).mean(dim=0)  # (K, 2)
        mean_pose = torch.as_tensor(mean_pose, device=device, dtype=dtype)
        if mean_pose.shape != (k, 2):
            raise ValueError(f"pad_poses: mean_pose must have shape ({k}, 2), got {tuple(mean_pose.shape)}")
        shape = mean_pose - mean_pose.mean(dim=0, keepdim=True)  # (K, 2), centroid at 0
        centres = randn((n_pad, 1, 2), generator, device, dtype)  # (n_pad, 1, 2)
        fill = centres + shape[None]  # (n_pad, K, 2)
    return torch.cat([poses, fill], dim=0), is_real
