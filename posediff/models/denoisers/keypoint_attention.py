"""DiffusionRegPose's denoiser: keypoint self-attention (K-SA) and keypoint cross-attention (K-CA)."""

from __future__ import annotations

import torch
from torch import nn

from ..utils import MLP, sine_embed, timestep_embedding

__all__ = ["KeypointAttentionDenoiser", "TIME_SPLITS"]

TIME_SPLITS = ("channels", "official")


class KeypointAttentionDenoiser(nn.Module):
    """Noisy poses -> keypoint tokens conditioned on the timestep and the detected humans.

    1. Each noisy joint becomes a token: an embedding of its position plus a joint embedding.
    2. Timestep conditioning: t -> sinusoidal -> MLP -> (scale, shift), split along the channels; the
       tokens become tokens * (1 + scale) + shift. ``time_split="official"`` reproduces the official code,
       which splits along the token axis so that scale and shift are one and the same vector.
    3. K-SA (Eq. 5): self-attention among the K joints of each pose.
    4. K-CA (Eq. 7): cross-attention from every joint token to human-to-keypoint tokens of the detected
       persons: with ``context`` (B, N, 1 + K, D), proposal i attends to the 1 + K tokens of its own
       person i (proposals anchored to persons); with (B, C, D), every proposal attends to all C tokens.

    Forward:
        coords: (B, N, K, 2) noisy poses mapped to [0, 1] (``SignalCodec.decode``); t: (B,) long;
        context: (B, N, 1 + K, D) or (B, C, D) human-to-keypoint tokens.
        Returns keypoint tokens (B, N, K, D), pose tokens (B, N, D), and the (scale, shift) pair, each
        (B, 1, 1, D), for the keypoint decoder's feed-forward blocks (Eq. 8).
    """

    def __init__(self, dim: int = 256, num_keypoints: int = 17, heads: int = 8, time_split: str = "channels",
                 dropout: float = 0.0):
        super().__init__()
        if time_split not in TIME_SPLITS:
            raise ValueError(f"KeypointAttentionDenoiser: time_split must be one of {TIME_SPLITS}, got {time_split!r}")
        self.dim, self.num_keypoints, self.time_split = dim, num_keypoints, time_split
        self.coord_embed = MLP(2 * (dim // 2), dim, dim, 2)
        self.joint_embed = nn.Embedding(num_keypoints, dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, 4 * dim))
        out = 2 * dim if time_split == "channels" else dim
        self.block_time = nn.Sequential(nn.SiLU(), nn.Linear(4 * dim, out))
        nn.init.zeros_(self.block_time[1].weight)
        nn.init.zeros_(self.block_time[1].bias)
        self.ksa = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.kca = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.pose_proj = nn.Linear(dim, dim)

    def time_condition(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.block_time(self.time_mlp(timestep_embedding(t, self.dim)))  # (B, 2D) or (B, D)
        if self.time_split == "channels":
            scale, shift = emb.chunk(2, dim=-1)  # split along channels
        else:  # official: chunk along the (repeated) token axis -> both halves are the same vector
            scale = shift = emb
        return scale[:, None, None], shift[:, None, None]  # (B, 1, 1, D) each

    def forward(self, coords: torch.Tensor, t: torch.Tensor, context: torch.Tensor):
        b, n, k, _ = coords.shape
        if k != self.num_keypoints:
            raise ValueError(f"KeypointAttentionDenoiser: built for K={self.num_keypoints} joints, got {k}")
        tokens = self.coord_embed(sine_embed(coords, self.dim // 2)) + self.joint_embed.weight[None, None]
        scale, shift = self.time_condition(t)
        tokens = tokens * (1.0 + scale) + shift  # (B, N, K, D)
        x = tokens.reshape(b * n, k, self.dim)
        x = self.norm1(x + self.ksa(x, x, x, need_weights=False)[0])  # Eq. 5: K-SA within each pose
        if context.dim() == 4:  # own person's tokens: (B N, K) queries, (B N, 1 + K) keys
            ctx = context.reshape(b * n, context.shape[2], self.dim)
            x = self.norm2(x + self.kca(x, ctx, ctx, need_weights=False)[0])  # Eq. 7: K-CA
        else:
            x = x.view(b, n * k, self.dim)
            x = self.norm2(x + self.kca(x, context, context, need_weights=False)[0])  # Eq. 7: K-CA
        tokens = x.view(b, n, k, self.dim)
        pose = self.pose_proj(tokens.mean(2))  # (B, N, D)
        return tokens, pose, (scale, shift)
