"""What both pose heads share: picking the top persons and expanding them into keypoint tokens."""

from __future__ import annotations

import torch
from torch import nn

from ..keypoint_decoder import expand_human_tokens
from ..utils import MLP, sine_embed

__all__ = ["HumanToKeypoint", "InitialKeypoints"]


class HumanToKeypoint(nn.Module):
    """Top-N human tokens and their boxes, and their human-to-keypoint tokens (ED-Pose's expansion).

    The tokens carry where their person is: an embedding of the person's box is added, so that attention
    to them (K-CA) can tell which person is where.

    Forward: human decoder output, N -> human tokens (B, N, D), boxes (B, N, 4), tokens (B, N, 1 + K, D) and
    the picked persons' last-layer logits (B, N).
    """

    def __init__(self, dim: int, num_keypoints: int):
        super().__init__()
        self.dim = dim
        self.joint_embed = nn.Embedding(num_keypoints, dim)
        self.box_embed = MLP(4 * (dim // 2), dim, dim, 2)

    def forward(self, humans, num: int):
        logits = humans.logits[-1]  # (B, Q)
        top_logits, top = logits.topk(min(num, logits.shape[1]), dim=1)  # (B, N) each
        hidden = humans.hidden.gather(1, top[..., None].expand(-1, -1, humans.hidden.shape[-1]))
        boxes = humans.boxes[-1].gather(1, top[..., None].expand(-1, -1, 4)).detach()
        located = hidden + self.box_embed(sine_embed(boxes, self.dim // 2))  # (B, N, D)
        return hidden, boxes, expand_human_tokens(located, self.joint_embed.weight), top_logits


class InitialKeypoints(MLP):
    """ED-Pose's initial keypoints, regressed from each human token as offsets from its box centre in half box
    sizes (tanh-bounded); its weights are named as the 3-layer MLP they are (``init_keypoints.layers.*``).

    Forward: human tokens (B, N, D), boxes (B, N, 4) cx, cy, w, h normalised -> keypoints (B, N, K, 2).
    """

    def __init__(self, dim: int, num_keypoints: int):
        super().__init__(dim, dim, 2 * num_keypoints, 3)

    def forward(self, hidden: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        b, n, _ = hidden.shape
        offsets = torch.tanh(super().forward(hidden)).view(b, n, -1, 2)  # (B, N, K, 2)
        return (boxes[:, :, None, :2] + offsets * boxes[:, :, None, 2:] / 2).clamp(1e-3, 1 - 1e-3)
