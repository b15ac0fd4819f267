"""What both pose heads share: picking the top persons and expanding them into keypoint tokens."""

from __future__ import annotations

from torch import nn

from ..keypoint_decoder import expand_human_tokens
from ..utils import MLP, sine_embed

__all__ = ["HumanToKeypoint"]


class HumanToKeypoint(nn.Module):
    """Top-N human tokens and their boxes, and their human-to-keypoint tokens (ED-Pose's expansion).

    The tokens carry where their person is: an embedding of the person's box is added, so that attention
    to them (K-CA) can tell which person is where.

    Forward: human decoder output, N -> human tokens (B, N, D), boxes (B, N, 4), tokens (B, N, 1 + K, D).
    """

    def __init__(self, dim: int, num_keypoints: int):
        super().__init__()
        self.dim = dim
        self.joint_embed = nn.Embedding(num_keypoints, dim)
        self.box_embed = MLP(4 * (dim // 2), dim, dim, 2)

    def forward(self, humans, num: int):
        logits = humans.logits[-1]  # (B, Q)
        top = logits.topk(min(num, logits.shape[1]), dim=1).indices  # (B, N)
        hidden = humans.hidden.gather(1, top[..., None].expand(-1, -1, humans.hidden.shape[-1]))
        boxes = humans.boxes[-1].gather(1, top[..., None].expand(-1, -1, 4)).detach()
        located = hidden + self.box_embed(sine_embed(boxes, self.dim // 2))  # (B, N, D)
        return hidden, boxes, expand_human_tokens(located, self.joint_embed.weight)
