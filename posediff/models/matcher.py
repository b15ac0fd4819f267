"""Hungarian matching of predicted persons to ground truth (DETR's matcher, with keypoint costs)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher", "oks_matrix", "focal_cost"]


def focal_cost(logits: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Cost of calling each prediction a person, (N,) -> (N,), as in Deformable DETR's matcher."""
    p = logits.sigmoid()
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    neg = (1 - alpha) * p ** gamma * -(1 - p + 1e-8).log()
    return pos - neg


def oks_matrix(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, areas: torch.Tensor,
               sigmas: torch.Tensor) -> torch.Tensor:
    """Object keypoint similarity of every prediction with every ground truth.

    Args:
        pred: (N, K, 2) and gt: (M, K, 2) in pixels; visible: (M, K) bool; areas: (M,) pixels²; sigmas: (K,).

    Returns:
        (N, M); a ground truth with no labelled joint scores 0.
    """
    d2 = ((pred[:, None] - gt[None]) ** 2).sum(-1)  # (N, M, K)
    var = (2 * sigmas) ** 2  # (K,)
    e = d2 / (2 * areas.clamp_min(1.0)[None, :, None] * var[None, None])  # (N, M, K)
    vis = visible[None].float()
    return (torch.exp(-e) * vis).sum(-1) / vis.sum(-1).clamp_min(1.0)


class HungarianMatcher(nn.Module):
    """One-to-one assignment minimising a weighted cost (class focal, box L1, -GIoU, keypoint L1, 1 - OKS).

    Forward:
        logits (B, N), boxes (B, N, 4) cx, cy, w, h normalised, keypoints (B, N, K, 2) normalised or None,
        targets: :class:`~posediff.structures.PoseTargets`.
        Returns a list of B pairs (pred_idx, tgt_idx) of LongTensors.
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 cost_keypoints: float = 10.0, cost_oks: float = 4.0, sigmas=None):
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.cost_keypoints, self.cost_oks = cost_keypoints, cost_oks
        self.register_buffer("sigmas", torch.as_tensor(sigmas if sigmas is not None else [0.05] * 17,
                                                       dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def forward(self, logits, boxes, keypoints, targets):
        out = []
        for i in range(logits.shape[0]):
            valid = targets.valid[i]
            m = int(valid.sum())
            if m == 0:
                empty = torch.zeros(0, dtype=torch.long)
                out.append((empty, empty))
                continue
            tb = targets.boxes[i, valid]
            cost = self.cost_class * focal_cost(logits[i].float())[:, None].expand(-1, m)
            cost = cost + self.cost_bbox * torch.cdist(boxes[i].float(), tb.float(), p=1)
            cost = cost - self.cost_giou * generalized_box_iou(box_convert(boxes[i].float(), "cxcywh", "xyxy"),
                                                               box_convert(tb.float(), "cxcywh", "xyxy"))
            if keypoints is not None:
                h, w = targets.sizes[i].tolist()
                scale = torch.tensor([w, h], dtype=torch.float32, device=logits.device)
                tk, vis = targets.keypoints[i, valid].float(), targets.visibility[i, valid] > 0
                pk = keypoints[i].float()
                l1 = ((pk[:, None] - tk[None]).abs().sum(-1) * vis[None]).sum(-1) / vis.sum(-1).clamp_min(1)[None]
                oks = oks_matrix(pk * scale, tk * scale, vis, targets.areas[i, valid].float(), self.sigmas)
                cost = cost + self.cost_keypoints * l1 + self.cost_oks * (1 - oks)
            cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(np.asarray(cols), dtype=torch.long)))
        return out
