"""Set criterion: focal classification, box L1 + GIoU, keypoint L1 on labelled joints, OKS loss.

Every decoder layer is matched and supervised (auxiliary losses); so are the two-stage encoder proposals
and the human decoder's layers (class and box only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou

from .matcher import HungarianMatcher, oks_matrix

__all__ = ["SetCriterion", "sigmoid_focal_loss", "world_mean"]


def world_mean(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the processes of a torchrun job (as they are without one).

    Loss normalisers (persons, joints, peaks of the whole batch) go through it, so that DDP's gradient
    average equals the gradient of one process on the global batch.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        values = values.clone()
        torch.distributed.all_reduce(values)
        values = values / torch.distributed.get_world_size()
    return values


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Summed focal loss (RetinaNet) of logits (...,) against 0/1 targets (...,)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


class SetCriterion(nn.Module):
    """Losses of one-stage pose models.

    Args:
        matcher: :class:`HungarianMatcher` (its keypoint costs are used for the pose layers).
        weights: loss weights by name (class, bbox, giou, keypoints, oks).
        sigmas: OKS sigmas (K,).
    """

    def __init__(self, matcher: HungarianMatcher, weights: dict | None = None, sigmas=None):
        super().__init__()
        self.matcher = matcher
        self.weights = dict(dict(class_=2.0, bbox=5.0, giou=2.0, keypoints=10.0, oks=4.0), **(weights or {}))
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32), persistent=False)

    def _layer(self, logits, boxes, keypoints, targets, num_persons: float, num_joints: float, prefix: str) -> dict:
        """Losses of one layer. logits (B, N), boxes (B, N, 4), keypoints (B, N, K, 2) or None."""
        match = self.matcher(logits, boxes, keypoints, targets)
        b_idx = torch.cat([torch.full_like(p, i) for i, (p, _) in enumerate(match)]).to(logits.device)
        p_idx = torch.cat([p for p, _ in match]).to(logits.device)
        t_idx = torch.cat([t for _, t in match]).to(logits.device)
        cls_target = torch.zeros_like(logits)
        cls_target[b_idx, p_idx] = 1.0
        out = {f"{prefix}class": sigmoid_focal_loss(logits, cls_target) / num_persons}
        pb, tb = boxes[b_idx, p_idx], targets.boxes[b_idx, t_idx]
        out[f"{prefix}bbox"] = F.l1_loss(pb, tb, reduction="sum") / num_persons
        giou = torch.diag(generalized_box_iou(box_convert(pb, "cxcywh", "xyxy"), box_convert(tb, "cxcywh", "xyxy")))
        out[f"{prefix}giou"] = (1 - giou).sum() / num_persons
        if keypoints is not None:
            pk, tk = keypoints[b_idx, p_idx], targets.keypoints[b_idx, t_idx]  # (P, K, 2)
            vis = targets.visibility[b_idx, t_idx] > 0  # (P, K)
            out[f"{prefix}keypoints"] = ((pk - tk).abs().sum(-1) * vis).sum() / num_joints
            sizes = targets.sizes[b_idx].flip(-1).to(pk)  # (P, 2) as (W, H)
            areas = targets.areas[b_idx, t_idx]
            oks = torch.stack([oks_matrix(pk[j:j + 1] * sizes[j], tk[j:j + 1] * sizes[j], vis[j:j + 1],
                                          areas[j:j + 1], self.sigmas)[0, 0] for j in range(len(pk))]) \
                if len(pk) else pk.new_zeros(0)
            out[f"{prefix}oks"] = (1 - oks).sum() / num_persons
        return out

    def forward(self, pose, humans, targets) -> dict:
        """pose: :class:`~posediff.models.keypoint_decoder.PoseOutput`; humans: the human decoder's output."""
        # normalisers: persons and labelled joints of the whole (global) batch
        counts = world_mean(torch.tensor([float(targets.valid.sum()),
                                          float((targets.visibility[targets.valid] > 0).sum())],
                                         device=targets.valid.device))
        num_persons, num_joints = max(float(counts[0]), 1.0), max(float(counts[1]), 1.0)
        losses = {}
        layers = pose.logits.shape[0]
        for layer in range(layers):
            prefix = "" if layer == layers - 1 else f"pose{layer}_"
            losses.update(self._layer(pose.logits[layer], pose.boxes[layer], pose.keypoints[layer], targets,
                                      num_persons, num_joints, prefix))
        if humans is not None:
            for layer in range(humans.logits.shape[0]):
                losses.update(self._layer(humans.logits[layer], humans.boxes[layer], None, targets, num_persons,
                                          num_joints, f"human{layer}_"))
            losses.update(self._layer(humans.enc_logits, humans.enc_boxes, None, targets, num_persons, num_joints,
                                      "enc_"))
            if humans.dn_logits is not None:
                losses.update(self._denoising(humans.dn_logits, humans.dn_boxes, targets, num_persons))
        total = sum(self.weights[self._kind(name)] * value for name, value in losses.items())
        losses["loss"] = total
        return losses

    def _denoising(self, logits, boxes, targets, num_persons: float) -> dict:
        """Box-denoising losses: query j of every group reconstructs ground truth j (no matching needed).

        logits (L, B, G, M), boxes (L, B, G, M, 4).
        """
        out = {}
        layers, _, groups, _ = logits.shape
        valid = targets.valid[:, None].expand(-1, groups, -1)  # (B, G, M)
        tb = targets.boxes[:, None].expand(-1, groups, -1, -1)[valid]  # (P, 4)
        for layer in range(layers):
            pb = boxes[layer][valid]
            cls = sigmoid_focal_loss(logits[layer][valid], torch.ones(len(pb), device=pb.device))
            giou = torch.diag(generalized_box_iou(box_convert(pb, "cxcywh", "xyxy"), box_convert(tb, "cxcywh", "xyxy")))
            norm = num_persons * groups
            out[f"dn{layer}_class"] = cls / norm
            out[f"dn{layer}_bbox"] = F.l1_loss(pb, tb, reduction="sum") / norm
            out[f"dn{layer}_giou"] = (1 - giou).sum() / norm
        return out

    @staticmethod
    def _kind(name: str) -> str:
        kind = name.rsplit("_", 1)[-1] if "_" in name else name
        return "class_" if kind == "class" else kind
