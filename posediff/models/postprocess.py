"""From normalised predictions to per-image results in pixels; pose NMS."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert

from .matcher import oks_matrix

__all__ = ["pose_nms", "to_predictions"]


def pose_nms(keypoints: torch.Tensor, scores: torch.Tensor, areas: torch.Tensor, sigmas: torch.Tensor,
             threshold: float = 0.9, max_det: int = 100) -> torch.Tensor:
    """Greedy NMS on OKS: keep the best pose, drop those with OKS > threshold to it, repeat.

    Memory is linear in the number of poses: each kept pose is compared with all of them in turn (an (M, M)
    all-pairs tensor of (M, M, K, 2) floats took 13.6 GB at the 10,000 candidates of 1,000 pooled sampling steps).

    Args: keypoints (M, K, 2) pixels, scores (M,), areas (M,) pixels², sigmas (K,). Returns kept indices.
    """
    order = scores.argsort(descending=True)
    kp, ar = keypoints[order], areas[order]  # (M, K, 2), (M,)
    vis = torch.ones(1, kp.shape[1], dtype=torch.bool, device=kp.device)  # (1, K)
    keep, removed = [], torch.zeros(len(order), dtype=torch.bool, device=kp.device)
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        if len(keep) == max_det:
            break
        removed |= oks_matrix(kp, kp[i:i + 1], vis, ar[i:i + 1], sigmas)[:, 0] > threshold  # (M,): with pose i's area
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def image_sizes(pixel_mask: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    """(B, 2) unpadded (H, W) of each image."""
    if pixel_mask is None:
        return torch.tensor([images.shape[-2:]] * images.shape[0], device=images.device)
    return torch.stack([pixel_mask[:, :, 0].sum(1), pixel_mask[:, 0, :].sum(1)], -1)


def to_predictions(logits, boxes, keypoints, sizes, max_det: int = 100) -> list[dict]:
    """Final-layer outputs -> one dict per image (the output contract).

    Args: logits (B, N), boxes (B, N, 4) cx, cy, w, h normalised, keypoints (B, N, K, 2) normalised,
        sizes (B, 2) unpadded (H, W).

    Returns per image: ``keypoints`` (N', K, 3) x, y, score in input pixels, ``scores`` (N',),
    ``boxes`` (N', 4) x0, y0, x1, y1 in pixels; sorted by score.
    """
    out = []
    for i in range(logits.shape[0]):
        h, w = sizes[i].tolist()
        scale = torch.tensor([w, h], dtype=keypoints.dtype, device=keypoints.device)
        scores = logits[i].sigmoid()
        order = scores.argsort(descending=True)[:max_det]
        kp = keypoints[i, order] * scale  # (N', K, 2)
        sc = scores[order]
        bx = box_convert(boxes[i, order], "cxcywh", "xyxy") * torch.cat([scale, scale])
        out.append(dict(keypoints=torch.cat([kp, sc[:, None, None].expand(-1, kp.shape[1], 1)], -1), scores=sc,
                        boxes=bx))
    return out
