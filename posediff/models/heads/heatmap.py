"""SimpleBaseline's heatmap head (Xiao et al. ECCV 2018): deconvolutions up to stride 4, a 1x1 conv to K maps.

The deterministic baseline of the top-down family, and DiffusionPose's coarse head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HeatmapHead", "heatmap_mse"]


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mmpose's KeypointMSELoss with target weights: mean over (B, K, h, w) of ((pred - target) · w)², w (B, K)."""
    w = weights[..., None, None].to(pred.dtype)  # (B, K, 1, 1)
    return F.mse_loss(pred.float() * w, target.float() * w)


class HeatmapHead(nn.Module):
    """Deconvolution neck + final conv.

    Args:
        in_channels: channels of the backbone level read. in_stride: its stride. out_stride: the heatmaps'.
        channels: the deconvolutions' width (SimpleBaseline: 256). num_keypoints: K.

    ``features(x)``: (B, C_in, H / in_stride, W / in_stride) -> (B, channels, H / out_stride, W / out_stride)
    (one 4x4 stride-2 deconvolution + BN + ReLU per halving of the stride; none when the strides agree).
    ``forward(x)``: the heatmaps (B, K, H / out_stride, W / out_stride).
    """

    def __init__(self, in_channels: int, in_stride: int = 32, out_stride: int = 4, channels: int = 256,
                 num_keypoints: int = 17):
        super().__init__()
        ups = math.log2(in_stride / out_stride)
        if ups < 0 or ups != int(ups):
            raise ValueError(f"HeatmapHead: in_stride {in_stride} must be out_stride {out_stride} times a power of 2")
        layers, c = [], in_channels
        for _ in range(int(ups)):
            layers += [nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
            c = channels
        self.neck = nn.Sequential(*layers)
        self.channels = c
        self.final = nn.Conv2d(c, num_keypoints, 1)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)  # SimpleBaseline's initialisation
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.neck(x))

    def losses(self, x: torch.Tensor, targets: dict) -> dict:
        """``{"heatmap": L2}`` of the heatmaps against ``targets["heatmaps"]`` (B, K, h, w), ``["weights"]`` (B, K)."""
        return {"heatmap": heatmap_mse(self(x), targets["heatmaps"], targets["weights"])}

    def predict(self, x: torch.Tensor, steps: int | None = None, generator=None) -> torch.Tensor:
        """Heatmaps (B, K, h, w); ``steps`` and ``generator`` are for the diffusion head's signature."""
        return self(x)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The heatmaps (B, K, h, w), which every step count shares (the diffusion head's signature)."""
        return self(x)

    def start_noise(self, prepared: torch.Tensor, generator=None) -> None:
        """No random draws (the diffusion head's signature)."""
        return None

    def predict_prepared(self, prepared: torch.Tensor, steps: int | None = None, generator=None,
                         noise=None) -> torch.Tensor:
        return prepared
