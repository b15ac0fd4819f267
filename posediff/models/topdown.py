"""The top-down model: a backbone and a heatmap head over one person crop (SimpleBaseline, DiffusionPose)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..data.topdown import (
    HeatmapCodec,
    box_to_region,
    crop_matrix,
    flip_heatmaps,
    invert_matrix,
    overlaps_image,
    warp_image,
)
from ..skeletons import get_skeleton

__all__ = ["TopDownModel", "to_image"]


class TopDownModel(nn.Module):
    """Backbone + heatmap head.

    Args:
        backbone: a :class:`~posediff.models.TimmBackbone`; its last level feeds the head.
        head: :class:`~posediff.models.heads.HeatmapHead` or :class:`~posediff.models.heads.DiffusionHeatmapHead`.
        codec: the :class:`~posediff.data.topdown.HeatmapCodec` (input size, stride, sigma).
        skeleton: the joints (flip pairs for the flip test).
        flip_test: average the heatmaps of the crop and of its mirror image at inference.
        padding: a box's padding into its crop region.

    ``forward(crops, targets)``: the training losses (``"loss"`` their sum). ``heatmaps(crops, steps)``:
    (B, K, h, w). ``predict(crops, steps)``: (B, K, 3) x, y input pixels and score. ``predict_persons(image,
    boxes)``: (N, K, 3) in the image's pixels.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, codec: HeatmapCodec, skeleton="coco17",
                 flip_test: bool = False, padding: float = 1.25):
        super().__init__()
        self.backbone, self.head, self.codec = backbone, head, codec
        self.skeleton = get_skeleton(skeleton)
        self.num_keypoints = self.skeleton.num_joints
        self.flip_test, self.padding = flip_test, padding

    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    @contextlib.contextmanager
    def coarse_head_only(self):
        """Within the ``with`` block the model predicts with its diffusion head's coarse head alone (the
        SimpleBaseline head trained beside the denoiser); the diffusion head is back after it."""
        head = self.head
        if not hasattr(head, "coarse"):
            raise ValueError(f"TopDownModel: its head ({type(head).__name__}) has no coarse head")
        self.head = head.coarse
        try:
            yield self
        finally:
            self.head = head

    def forward(self, crops: torch.Tensor, targets: dict) -> dict:
        losses = self.head.losses(self.backbone(crops)[-1], targets)
        losses["loss"] = sum(losses.values())
        return losses

    def heatmaps(self, crops: torch.Tensor, steps: int | None = None, generator=None) -> torch.Tensor:
        """Heatmaps (B, K, h, w) of crops (B, 3, H, W), flip-averaged when ``flip_test``."""
        return self.heatmaps_at_steps(crops, (steps,), [generator])[0]

    def heatmaps_at_steps(self, crops: torch.Tensor, steps, generators=None) -> list[torch.Tensor]:
        """The heatmaps at each sampling-step count of ``steps`` (None: the head's own), the backbone and what the
        head's sampling starts from computed once; ``generators``: one per count (or None)."""
        generators = generators or [None] * len(steps)
        x = self.head.prepare(self.backbone(crops)[-1])
        xf = self.head.prepare(self.backbone(crops.flip(-1))[-1]) if self.flip_test else None
        out = []
        for s, g in zip(steps, generators):
            noise = self.head.start_noise(x, g)
            hm = self.head.predict_prepared(x, s, g, noise)
            if xf is not None:  # the mirrored crop from the same noise: flip-averaging commutes with mirroring
                hm = (hm + flip_heatmaps(self.head.predict_prepared(xf, s, g, noise), self.skeleton.flip_index)) / 2
            out.append(hm)
        return out

    @torch.no_grad()
    def predict(self, crops: torch.Tensor, steps: int | None = None, generator=None) -> torch.Tensor:
        """(B, K, 3): x, y in input pixels (DARK-refined) and the heatmap maximum."""
        return self.codec.decode(self.heatmaps(crops, steps, generator))

    @torch.no_grad()
    def predict_persons(self, image: np.ndarray, boxes, steps: int | None = None, generator=None) -> np.ndarray:
        """Keypoints of the persons in boxes of an image.

        Args:
            image: (H, W, 3) uint8 RGB. boxes: (N, 4) x, y, w, h pixels, each with some area inside the image (a
                box of no area, or wholly outside, is a named error).

        Returns:
            (N, K, 3) float64: x, y in the image's pixels and a score, the heatmap's maximum (about 1 where the
            model is sure; a regressed heatmap is not bounded).
        """
        from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"predict_persons: image must be an (H, W, 3) uint8 array, got {image.dtype} "
                             f"{image.shape}")
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"predict_persons: boxes must be (N, 4) finite x, y, w, h, got {boxes.shape}")
        if len(boxes) and (boxes[:, 2:] <= 0).any():
            bad = int(np.flatnonzero((boxes[:, 2:] <= 0).any(1))[0])
            raise ValueError(f"predict_persons: box {bad} {boxes[bad].tolist()} has no area (w and h must be > 0)")
        inside = overlaps_image(boxes, (image.shape[1], image.shape[0]))
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise ValueError(f"predict_persons: box {bad} {boxes[bad].tolist()} lies wholly outside the "
                             f"{image.shape[1]}x{image.shape[0]} image")
        k = self.num_keypoints
        if not len(boxes):
            return np.zeros((0, k, 3))
        was = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            aspect = self.input_size[0] / self.input_size[1]
            centres, sizes = box_to_region(boxes, aspect, self.padding)
            mats = [crop_matrix(c, s, 0.0, self.input_size) for c, s in zip(centres, sizes)]
            mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
            crops = torch.stack([(warp_image(image, m, self.input_size) - mean) / std for m in mats]).to(device)
            kp = self.predict(crops, steps, generator).cpu().double().numpy()  # (N, K, 3) input px
        finally:
            self.train(was)
        return to_image(kp, np.stack(mats))

    def check_steps(self, steps: int | None) -> None:
        """Refuse sampling steps the head cannot take (a one-pass head takes none), before any work."""
        if steps is None:
            return
        if not hasattr(self.head, "check_steps"):
            raise ValueError(f"steps={steps}: this top-down model has a one-pass head; steps are for a diffusion head")
        self.head.check_steps(steps)


def to_image(keypoints: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Keypoints (N, K, 3) in input pixels -> image pixels through the inverse of each crop's map (N, 2, 3)."""
    inv = invert_matrix(matrices)  # (N, 2, 3)
    out = keypoints.copy()
    out[..., :2] = np.einsum("nij,nkj->nki", inv[..., :2], keypoints[..., :2]) + inv[:, None, :, 2]
    return out

