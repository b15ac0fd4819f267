"""The video context encoder: spatial and temporal attention alternating over a 2D pose sequence (MixSTE-style).

DiffPose's video recipe takes its context f_ST from MixSTE (Zhang et al., CVPR 2022), pretrained to lift
T = 243 frames and frozen. :class:`TemporalLifter` is that kind of network at any T: each joint of each frame
is embedded, then ``depth`` pairs of [attention across the J joints of a frame, attention across the T frames
of a joint] follow; the centre frame's features are f_ST and a linear layer lifts them to 3D.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TemporalLifter"]


class TemporalLifter(nn.Module):
    """(B, T, J, 2) → features of the centre frame (B, J, dim) and its 3D pose (B, J, 3)."""

    def __init__(self, frames: int, num_joints: int = 17, dim: int = 128, depth: int = 4, heads: int = 4,
                 in_dim: int = 2, dropout: float = 0.0):
        super().__init__()
        self.frames, self.dim = int(frames), dim
        self.embed = nn.Linear(in_dim, dim)
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, num_joints, dim))
        self.time_pos = nn.Parameter(torch.zeros(1, self.frames, 1, dim))
        nn.init.trunc_normal_(self.joint_pos, std=0.02)
        nn.init.trunc_normal_(self.time_pos, std=0.02)

        def layer():
            return nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, activation="gelu", batch_first=True,
                                              norm_first=True)

        self.spatial = nn.ModuleList(layer() for _ in range(depth))
        self.temporal = nn.ModuleList(layer() for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 3)

    def forward(self, keypoints_2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if keypoints_2d.dim() != 4 or keypoints_2d.shape[1] != self.frames:
            raise ValueError(f"TemporalLifter: expected (B, {self.frames}, J, 2) 2D poses, got "
                             f"{tuple(keypoints_2d.shape)}")
        b, t, j, _ = keypoints_2d.shape
        x = self.embed(keypoints_2d) + self.joint_pos + self.time_pos            # (B, T, J, C)
        for spatial, temporal in zip(self.spatial, self.temporal):
            x = spatial(x.reshape(b * t, j, -1)).reshape(b, t, j, -1)             # joints of a frame
            x = temporal(x.transpose(1, 2).reshape(b * j, t, -1))                # frames of a joint
            x = x.reshape(b, j, t, -1).transpose(1, 2)                           # (B, T, J, C)
        features = self.norm(x[:, t // 2])                                       # (B, J, C) f_ST
        return features, self.out(features)                                      # (B, J, 3)
