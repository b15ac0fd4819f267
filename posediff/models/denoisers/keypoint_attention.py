"""DiffusionRegPose's denoiser: keypoint self-attention (K-SA, Eq. 5) and keypoint cross-attention (K-CA, Eq. 7)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..utils import MLP, sine_embed, timestep_embedding

__all__ = ["KeypointAttentionDenoiser", "Selection", "TIME_SPLITS", "CROSS_ATTENTIONS"]

TIME_SPLITS = ("channels", "official")
CROSS_ATTENTIONS = ("select", "own")


class Selection(NamedTuple):
    """What K-CA selects for C candidates among N detected persons (``cross="select"``)."""

    tokens: torch.Tensor  # (B, C, 1 + K, D) the candidate's human and keypoint tokens: its own + the selected content
    keypoints: torch.Tensor  # (B, C, K, 2) cKpts: the persons' initial keypoints, joint by joint, weighted
    boxes: torch.Tensor  # (B, C, 4) cBox: the persons' boxes, weighted
    logits: torch.Tensor  # (B, C) the persons' scores, weighted (as a logit)


class KeypointAttentionDenoiser(nn.Module):
    """Noisy poses -> keypoint tokens conditioned on the timestep and the detected persons.

    1. Each noisy joint becomes a token: an embedding of its position plus a joint embedding.
    2. Timestep conditioning: t -> sinusoidal -> MLP -> (scale, shift), split along the channels; the
       tokens become tokens * (1 + scale) + shift. ``time_split="official"`` reproduces the official code,
       which splits along the token axis so that scale and shift are one and the same vector.
    3. K-SA (Eq. 5): self-attention among the K joints of each pose.
    4. K-CA (Eq. 7), queries from the noisy poses, keys and values from the human-to-keypoint tokens F_H2K:

       * ``cross="select"`` (the paper's form, :meth:`select`): joint k of every candidate attends to the
         joint-k tokens of all N persons, keyed by where ED-Pose's initial regression put that joint; the
         candidate's pose token attends to the persons' human tokens. The attention weights (mean over heads)
         select the coarse keypoints cKpts, box cBox and score from the persons', and the selected content is
         added to the candidate's tokens.
       * ``cross="own"`` (:meth:`forward`, the regression-anchored head): proposal i attends to the 1 + K tokens
         of its own person i.

    Forward (``cross="own"``):
        coords: (B, N, K, 2) noisy poses mapped to [0, 1] (``SignalCodec.decode``); t: (B,) long;
        context: (B, N, 1 + K, D) human-to-keypoint tokens.
        Returns keypoint tokens (B, N, K, D), pose tokens (B, N, D), and the (scale, shift) pair, each
        (B, 1, 1, D), for the keypoint decoder's feed-forward blocks (Eq. 8).
    """

    def __init__(self, dim: int = 256, num_keypoints: int = 17, heads: int = 8, time_split: str = "channels",
                 dropout: float = 0.0, cross: str = "select", home_bias: float | None = None):
        super().__init__()
        if time_split not in TIME_SPLITS:
            raise ValueError(f"KeypointAttentionDenoiser: time_split must be one of {TIME_SPLITS}, got {time_split!r}")
        if cross not in CROSS_ATTENTIONS:
            raise ValueError(f"KeypointAttentionDenoiser: cross must be one of {CROSS_ATTENTIONS}, got {cross!r}")
        self.dim, self.num_keypoints, self.time_split, self.cross = dim, num_keypoints, time_split, cross
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
        self.home_bias = None
        if cross == "select":
            self.kca_pose = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
            self.norm3 = nn.LayerNorm(dim)
            if home_bias is not None:  # candidate i leans to person i until its noisy pose points elsewhere
                self.home_bias = nn.Parameter(torch.tensor(float(home_bias)))

    def time_condition(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.block_time(self.time_mlp(timestep_embedding(t, self.dim)))  # (B, 2D) or (B, D)
        if self.time_split == "channels":
            scale, shift = emb.chunk(2, dim=-1)  # split along channels
        else:  # official: chunk along the (repeated) token axis -> both halves are the same vector
            scale = shift = emb
        return scale[:, None, None], shift[:, None, None]  # (B, 1, 1, D) each

    def _where(self, coords: torch.Tensor) -> torch.Tensor:
        """Joint positions (..., 2) in [0, 1] -> position embeddings (..., D)."""
        return self.coord_embed(sine_embed(coords, self.dim // 2))

    def self_attend(self, coords: torch.Tensor, t: torch.Tensor):
        """Eq. 5. coords (B, C, K, 2) in [0, 1], t (B,) -> Q_CK (B, C, K, D) and the (scale, shift) condition."""
        b, c, k, _ = coords.shape
        if k != self.num_keypoints:
            raise ValueError(f"KeypointAttentionDenoiser: built for K={self.num_keypoints} joints, got {k}")
        tokens = self._where(coords) + self.joint_embed.weight[None, None]  # (B, C, K, D)
        scale, shift = self.time_condition(t)
        x = (tokens * (1.0 + scale) + shift).reshape(b * c, k, self.dim)
        x = self.norm1(x + self.ksa(x, x, x, need_weights=False)[0])  # K-SA within each pose
        return x.view(b, c, k, self.dim), (scale, shift)

    def _home_bias(self, c: int, n: int, device, dtype) -> torch.Tensor | None:
        """(C, N): ``home_bias`` on candidate i's own person i (i < N), 0 elsewhere; None without a home."""
        if self.home_bias is None:
            return None
        eye = torch.eye(c, n, device=device, dtype=dtype)
        return eye * self.home_bias.to(dtype)

    def select(self, q: torch.Tensor, coords: torch.Tensor, h2k: torch.Tensor, kp0: torch.Tensor,
               boxes: torch.Tensor, logits: torch.Tensor) -> Selection:
        """Eq. 7 (``cross="select"``): C candidates select among N persons.

        Args: q (B, C, K, D) Q_CK; coords (B, C, K, 2) the noisy joints in [0, 1]; h2k (B, N, 1 + K, D) F_H2K;
            kp0 (B, N, K, 2) ED-Pose's initial keypoints; boxes (B, N, 4); logits (B, N) the persons' scores.
        """
        b, c, k, d = q.shape
        n = h2k.shape[1]
        home = self._home_bias(c, n, q.device, q.dtype)  # (C, N) added to the attention logits, or None
        queries = (q + self._where(coords)).transpose(1, 2).reshape(b * k, c, d)  # (B K, C, D) joint k's queries
        keys = (h2k[:, :, 1:] + self._where(kp0)).transpose(1, 2).reshape(b * k, n, d)  # (B K, N, D)
        values = h2k[:, :, 1:].transpose(1, 2).reshape(b * k, n, d)  # (B K, N, D)
        content, w = self.kca(queries, keys, values, attn_mask=home, need_weights=True)  # (B K, C, D), (B K, C, N)
        c_kpts = (w @ kp0.transpose(1, 2).reshape(b * k, n, 2)).view(b, k, c, 2).transpose(1, 2)  # (B, C, K, 2)
        joints = self.norm2(q + content.view(b, k, c, d).transpose(1, 2))  # (B, C, K, D)
        pose = self.pose_proj(joints.mean(2))  # (B, C, D)
        person, pw = self.kca_pose(pose, h2k[:, :, 0], h2k[:, :, 0], attn_mask=home,
                                   need_weights=True)  # (B, C, D), (B, C, N)
        human = self.norm3(pose + person)  # (B, C, D)
        c_box = pw @ boxes  # (B, C, 4)
        # the persons' scores weighted, in float32 (in bf16 1 - 1e-6 rounds to 1 and the logit to inf) and detached:
        # several candidates may select one person, and the unmatched ones must not teach its detector that it is
        # no one (the human decoder has its own one-to-one loss)
        with torch.autocast(device_type=pw.device.type, enabled=False):
            w32 = pw.float() / pw.float().sum(-1, keepdim=True)  # (B, C, N); bf16 weights sum to 1 only roughly
            prob = (w32 @ logits.detach().float().sigmoid()[..., None])[..., 0]  # (B, C)
            c_logit = torch.logit(prob.clamp(1e-6, 1 - 1e-6))  # (B, C) float32
        return Selection(torch.cat([human[:, :, None], joints], 2), c_kpts.clamp(1e-3, 1 - 1e-3), c_box, c_logit)

    def forward(self, coords: torch.Tensor, t: torch.Tensor, context: torch.Tensor):
        """K-SA, then K-CA to each proposal's own person (``cross="own"``); see the class docstring."""
        if self.cross != "own":
            raise ValueError("KeypointAttentionDenoiser: forward is the cross='own' form; a 'select' denoiser is "
                             "called through self_attend and select")
        b, n, k, _ = coords.shape
        if context.dim() != 4 or context.shape[:2] != (b, n):
            raise ValueError(f"KeypointAttentionDenoiser: context must be (B, N, 1 + K, D) = ({b}, {n}, ...), got "
                             f"{tuple(context.shape)}")
        q, cond = self.self_attend(coords, t)
        x = q.reshape(b * n, k, self.dim)
        ctx = context.reshape(b * n, context.shape[2], self.dim)
        x = self.norm2(x + self.kca(x, ctx, ctx, need_weights=False)[0])  # K-CA to the own person's tokens
        tokens = x.view(b, n, k, self.dim)
        pose = self.pose_proj(tokens.mean(2))  # (B, N, D)
        return tokens, pose, cond
