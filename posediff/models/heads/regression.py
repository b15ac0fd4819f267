"""The deterministic ED-Pose keypoint head."""

from __future__ import annotations

import torch
from torch import nn

from ..keypoint_decoder import KeypointDecoder, PoseOutput
from .common import HumanToKeypoint, InitialKeypoints

__all__ = ["RegressionKeypointHead"]


class RegressionKeypointHead(nn.Module):
    """ED-Pose: the top ``num_group`` persons of the human decoder, expanded into human-to-keypoint
    tokens, initial keypoints regressed from each human token, refined by the keypoint decoder.

    Forward: human decoder output and the encoder state -> :class:`PoseOutput`: the initial regression
    (supervised like a layer, so that it learns) followed by one entry per decoder layer.
    """

    nms = False

    def __init__(self, decoder: KeypointDecoder, num_group: int = 100):
        super().__init__()
        self.decoder = decoder
        self.num_group = num_group
        dim, k = decoder.dim, decoder.num_keypoints
        self.expand = HumanToKeypoint(dim, k)
        self.init_keypoints = InitialKeypoints(dim, k)

    def forward(self, humans, enc, targets=None) -> PoseOutput:
        hidden, boxes, tokens, logits0 = self.expand(humans, self.num_group)
        kp0 = self.init_keypoints(hidden, boxes)  # (B, N, K, 2)
        out, _ = self.decoder(tokens, kp0, boxes, hidden, enc)
        return out.after(logits0, boxes, kp0)

    @torch.no_grad()
    def predict(self, humans, enc, steps=None, generator=None):
        """Final-layer logits (B, N), boxes (B, N, 4), keypoints (B, N, K, 2)."""
        out = self.forward(humans, enc)
        return out.logits[-1], out.boxes[-1], out.keypoints[-1]
