"""Dense pretext task for backbones: keypoint heatmaps (CenterNet-style), trained on SynthCrowd.

The papers start their backbones from ImageNet weights, which cannot be downloaded on our machines, and
a DETR-style set-prediction model trained from scratch learns nothing useful in CPU-hours. A dense task
does: every pixel near a joint is a training signal. ``HeatmapPretrainer`` puts a light FPN and a
heatmap head on a :class:`~posediff.models.TimmBackbone` and trains it with the penalty-reduced focal loss
of CenterNet (Zhou et al. 2019) on Gaussian peaks at every labelled joint; the backbone's weights then
initialise the one-stage recipes (``posediff.engine.train(..., init=...)`` loads matching tensors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import TimmBackbone

__all__ = ["HeatmapPretrainer", "render_heatmaps", "heatmap_focal_loss", "heatmap_peaks"]


def render_heatmaps(keypoints: torch.Tensor, visibility: torch.Tensor, valid: torch.Tensor, areas: torch.Tensor,
                    size: tuple[int, int], image_size: tuple[int, int], min_sigma: float = 1.0) -> torch.Tensor:
    """Gaussian peaks (max over persons) at labelled joints.

    Args:
        keypoints: (B, M, K, 2) normalised; visibility: (B, M, K); valid: (B, M); areas: (B, M) in image
        pixels; size: (h, w) of the heatmap; image_size: (H, W) of the image.

    Returns:
        (B, K, h, w) in [0, 1], 1 at the cell holding each joint; sigma (in heatmap cells) grows with the
        person's size.
    """
    b, m, k, _ = keypoints.shape
    h, w = size
    ys = torch.arange(h, device=keypoints.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=keypoints.device, dtype=torch.float32) + 0.5
    cx = (keypoints[..., 0] * w).floor().clamp(0, w - 1) + 0.5  # (B, M, K): the centre of the joint's cell,
    cy = (keypoints[..., 1] * h).floor().clamp(0, h - 1) + 0.5  # so every joint has one exact peak (CenterNet)
    scale = (h / image_size[0] + w / image_size[1]) / 2
    sigma = (0.08 * areas.clamp_min(1).sqrt() * scale).clamp_min(min_sigma)[..., None]  # (B, M, 1)
    g = torch.exp(-((xs.view(1, 1, 1, 1, w) - cx[..., None, None]) ** 2 +
                    (ys.view(1, 1, 1, h, 1) - cy[..., None, None]) ** 2) / (2 * sigma[..., None, None] ** 2))
    on = ((visibility > 0) & valid[..., None]).float()[..., None, None]  # (B, M, K, 1, 1)
    return (g * on).amax(1)  # (B, K, h, w)


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
                       num_peaks: float | None = None):
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the number of peaks (``num_peaks``, or
    the peaks of ``target`` averaged over the processes of a torchrun job, as the set losses' normalisers are).
    Computed in float32 whatever the dtype of ``logits`` (in bfloat16, 1 - 1e-4 rounds to 1 and the loss would
    be infinite)."""
    from .losses import world_mean

    p = logits.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.ge(0.99).float()
    pos_loss = -((1 - p) ** alpha) * torch.log(p) * pos
    neg_loss = -((1 - target) ** beta) * (p ** alpha) * torch.log(1 - p) * (1 - pos)
    norm = world_mean(pos.sum()) if num_peaks is None else torch.as_tensor(num_peaks, dtype=p.dtype, device=p.device)
    return (pos_loss.sum() + neg_loss.sum()) / norm.clamp_min(1.0)


def heatmap_peaks(logits: torch.Tensor) -> torch.Tensor:
    """The arg-max of each heatmap, normalised (B, K, 2) (x, y at cell centres)."""
    b, k, h, w = logits.shape
    idx = logits.flatten(2).argmax(-1)  # (B, K)
    return torch.stack([(idx % w + 0.5) / w, (idx // w + 0.5) / h], -1)


class HeatmapPretrainer(nn.Module):
    """Backbone + light FPN + heatmap head (stride 4 or 8 output).

    Args:
        backbone: timm name or a :class:`TimmBackbone` (strides must include the output stride).
        num_keypoints: heatmaps. dim: FPN width. out_stride: stride of the heatmaps.

    Forward: images (B, 3, H, W) -> heatmap logits (B, K, H / s, W / s).
    """

    def __init__(self, backbone: str | TimmBackbone = "resnet18", num_keypoints: int = 17, dim: int = 128,
                 out_stride: int = 4):
        super().__init__()
        if isinstance(backbone, str):
            backbone = TimmBackbone(backbone, strides=tuple(s for s in (4, 8, 16, 32) if s >= out_stride),
                                    frozen_bn=False)
        self.backbone = backbone
        self.out_stride = out_stride
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in backbone.channels)
        self.smooth = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(8, dim), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, num_keypoints, 1))
        nn.init.constant_(self.head[-1].bias, -2.19)  # sigmoid = 0.1, CenterNet's prior

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(images)
        x = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = F.interpolate(x, size=f.shape[-2:], mode="nearest") + lat(f)  # top-down pathway
        return self.head(self.smooth(x))

    def backbone_state_dict(self) -> dict:
        """The backbone's tensors under the names a one-stage model uses (``backbone.body.*``)."""
        return {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
