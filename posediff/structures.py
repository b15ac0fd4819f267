"""Batched targets: per-image person annotations padded to a common count, with masks.

Coordinates follow DETR / ED-Pose: boxes are (cx, cy, w, h) and keypoints (x, y), both normalised by the
image size (after transforms) to [0, 1]; visibility keeps COCO's flags (0 unlabelled, 1 occluded but
labelled, 2 visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

__all__ = ["PoseTargets"]


@dataclass
class PoseTargets:
    """Targets of a batch of B images with up to M persons each.

    Attributes:
        boxes: (B, M, 4) normalised cx, cy, w, h.
        keypoints: (B, M, K, 2) normalised x, y (unlabelled joints are 0).
        visibility: (B, M, K) long, COCO flags.
        valid: (B, M) bool, True for real persons (False for padding).
        image_ids: (B,) long.
        sizes: (B, 2) long, (H, W) of the network input (after transforms).
        orig_sizes: (B, 2) long, (H, W) of the original image.
        areas: (B, M) person areas in input pixels.
        keypoints_completed: (B, M, K, 2) normalised, invisible joints filled by the prior, or None.
    """

    boxes: torch.Tensor
    keypoints: torch.Tensor
    visibility: torch.Tensor
    valid: torch.Tensor
    image_ids: torch.Tensor
    sizes: torch.Tensor
    orig_sizes: torch.Tensor
    areas: torch.Tensor
    keypoints_completed: torch.Tensor | None = None

    @classmethod
    def from_list(cls, targets: Sequence[dict]) -> PoseTargets:
        """Pad a list of per-image target dicts (as the datasets return them) into one batch."""
        if not targets:
            raise ValueError("PoseTargets.from_list: empty batch")
        b = len(targets)
        m = max(len(t["boxes"]) for t in targets)
        k = targets[0]["keypoints"].shape[1]  # (M_i, K, 2), also when M_i = 0
        with_completed = all("keypoints_completed" in t for t in targets)
        boxes = torch.zeros(b, m, 4)
        kps = torch.zeros(b, m, k, 2)
        vis = torch.zeros(b, m, k, dtype=torch.long)
        valid = torch.zeros(b, m, dtype=torch.bool)
        areas = torch.zeros(b, m)
        completed = torch.zeros(b, m, k, 2) if with_completed else None
        for i, t in enumerate(targets):
            n = len(t["boxes"])
            if n == 0:
                continue
            boxes[i, :n] = t["boxes"]
            kps[i, :n] = t["keypoints"]
            vis[i, :n] = t["visibility"]
            valid[i, :n] = True
            areas[i, :n] = t["areas"]
            if completed is not None:
                completed[i, :n] = t["keypoints_completed"]
        return cls(boxes=boxes, keypoints=kps, visibility=vis, valid=valid,
                   image_ids=torch.as_tensor([int(t["image_id"]) for t in targets], dtype=torch.long),
                   sizes=torch.stack([torch.as_tensor(t["size"], dtype=torch.long) for t in targets]),
                   orig_sizes=torch.stack([torch.as_tensor(t["orig_size"], dtype=torch.long) for t in targets]),
                   areas=areas, keypoints_completed=completed)

    @property
    def scale_to_original(self) -> torch.Tensor:
        """(B, 2) factors (sx, sy) from input pixels back to original pixels."""
        ratio = self.orig_sizes.double() / self.sizes.double()  # (B, 2) as (H, W)
        return ratio.flip(-1)

    def to(self, device) -> PoseTargets:
        return PoseTargets(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                              for f in fields(self)})

    def __len__(self) -> int:
        return self.boxes.shape[0]
