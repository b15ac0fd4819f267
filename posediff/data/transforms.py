"""Image + person transforms for one-stage pose training (ED-Pose / DETR style).

A :class:`PoseSample` holds an image and its persons in *pixel* coordinates, with the continuous
convention of COCO boxes: pixel column i covers [i, i + 1), so a horizontal flip maps x to W - x and
a resize by s maps x to s x. Unlabelled joints (v = 0) stay (0, 0, 0) through every transform.

Every transform is called as ``t(sample, rng)`` with a ``numpy.random.Generator``; datasets derive
that generator from (seed, epoch, index), so augmentation does not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

__all__ = [
    "PoseSample", "Compose", "RandomHorizontalFlip", "RandomResize", "RandomSizeCrop", "RandomSelect",
    "PixelNoise", "ToTensor", "train_transforms", "eval_transforms", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PoseSample:
    """One image and its persons, in pixels.

    Attributes:
        image: (H, W, 3) uint8.
        boxes: (M, 4) x0, y0, x1, y1.
        keypoints: (M, K, 3) x, y, v.
        areas: (M,) person areas (segment area), scaled with resizes.
        image_id: the annotation file's image id.
        orig_size: (H, W) of the image as read.
        completed: (M, K, 2) keypoints with invisible joints filled by a prior, or None.
    """

    image: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    areas: np.ndarray
    image_id: int
    orig_size: tuple[int, int]
    completed: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def select(self, keep: np.ndarray) -> PoseSample:
        return replace(self, boxes=self.boxes[keep], keypoints=self.keypoints[keep], areas=self.areas[keep],
                       completed=None if self.completed is None else self.completed[keep])


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, sample, rng: np.random.Generator):
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomHorizontalFlip:
    """Mirror the image; x -> W - x, left and right joints swapped by ``flip_index``."""

    def __init__(self, flip_index: Sequence[int], p: float = 0.5):
        self.flip_index = np.asarray(flip_index, dtype=np.int64)
        self.p = p

    def __call__(self, s: PoseSample, rng: np.random.Generator) -> PoseSample:
        if rng.random() >= self.p:
            return s
        return hflip(s, self.flip_index)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def hflip(s: PoseSample, flip_index: np.ndarray) -> PoseSample:
    w = s.image.shape[1]
    if s.keypoints.shape[1] != len(flip_index):
        raise ValueError(f"hflip: keypoints have {s.keypoints.shape[1]} joints, flip_index {len(flip_index)}")
    image = np.ascontiguousarray(s.image[:, ::-1])
    boxes = s.boxes.copy()
    boxes[:, [0, 2]] = w - s.boxes[:, [2, 0]]
    kp = s.keypoints[:, flip_index].copy()  # (M, K, 3): left <-> right
    lab = kp[..., 2] > 0
    kp[..., 0] = np.where(lab, w - kp[..., 0], 0.0)
    completed = None
    if s.completed is not None:
        completed = s.completed[:, flip_index].copy()
        completed[..., 0] = w - completed[..., 0]
    return replace(s, image=image, boxes=boxes, keypoints=kp, completed=completed)


def _resized_hw(h: int, w: int, short: int, max_size: int | None) -> tuple[int, int]:
    """(H, W) with the shorter side ``short`` and the longer at most ``max_size`` (DETR's get_size)."""
    if max_size is not None:
        lo, hi = min(h, w), max(h, w)
        if hi / lo * short > max_size:
            short = max(1, int(round(max_size * lo / hi)))  # at least a pixel, however thin the image
    if w < h:
        return int(round(short * h / w)), short
    return short, int(round(short * w / h))


def resize(s: PoseSample, out_hw: tuple[int, int]) -> PoseSample:
    h, w = s.size
    oh, ow = out_hw
    if (oh, ow) == (h, w):
        return s
    image = np.array(Image.fromarray(s.image).resize((ow, oh), Image.BILINEAR))
    sx, sy = ow / w, oh / h
    kp = s.keypoints.copy()
    kp[..., 0] *= sx
    kp[..., 1] *= sy
    completed = None if s.completed is None else s.completed * np.array([sx, sy])
    return replace(s, image=image, boxes=s.boxes * np.array([sx, sy, sx, sy]), keypoints=kp,
                   areas=s.areas * sx * sy, completed=completed)


class RandomResize:
    """Shorter side drawn from ``sizes``; the longer side at most ``max_size``."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, s: PoseSample, rng: np.random.Generator) -> PoseSample:
        short = self.sizes[int(rng.integers(len(self.sizes)))]
        return resize(s, _resized_hw(*s.size, short, self.max_size))

    def __repr__(self) -> str:
        return f"RandomResize({self.sizes}, max_size={self.max_size})"


def crop(s: PoseSample, top: int, left: int, height: int, width: int) -> PoseSample:
    """Crop to [left, left + width) x [top, top + height).

    Boxes are clipped to the crop and persons whose box vanishes are dropped; keypoints that leave the
    crop become unlabelled (0, 0, 0); completed keypoints move with the crop and are not clipped.
    """
    image = s.image[top:top + height, left:left + width]
    off = np.array([left, top, left, top], dtype=np.float64)
    boxes = s.boxes - off
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    kp = s.keypoints.copy()
    kp[..., 0] -= left
    kp[..., 1] -= top
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < width) & (kp[..., 1] >= 0) & (kp[..., 1] < height)
    kp[~(inside & (kp[..., 2] > 0))] = 0.0
    completed = None if s.completed is None else s.completed - off[:2]
    out = replace(s, image=np.ascontiguousarray(image), boxes=boxes, keypoints=kp, completed=completed)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return out.select(keep)


class RandomSizeCrop:
    """A crop whose width and height are drawn from [min_size, max_size] (clipped to the image)."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, s: PoseSample, rng: np.random.Generator) -> PoseSample:
        h, w = s.size
        ch = int(rng.integers(min(self.min_size, h), min(h, self.max_size) + 1))
        cw = int(rng.integers(min(self.min_size, w), min(w, self.max_size) + 1))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return crop(s, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomSizeCrop({self.min_size}, {self.max_size})"


class RandomSelect:
    """``first`` with probability p, else ``second``."""

    def __init__(self, first, second, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, s, rng: np.random.Generator):
        return self.first(s, rng) if rng.random() < self.p else self.second(s, rng)


class PixelNoise:
    """Add Gaussian pixel noise (std drawn from [0, max_std], 0-255 scale) with probability p."""

    def __init__(self, max_std: float = 8.0, p: float = 0.5):
        self.max_std, self.p = max_std, p

    def __call__(self, s: PoseSample, rng: np.random.Generator) -> PoseSample:
        if rng.random() >= self.p:
            return s
        noise = rng.normal(0.0, rng.uniform(0, self.max_std), s.image.shape).astype(np.float32)
        return replace(s, image=np.clip(s.image + noise, 0, 255).astype(np.uint8))

    def __repr__(self) -> str:
        return f"PixelNoise(max_std={self.max_std}, p={self.p})"


class ToTensor:
    """PoseSample -> (image (3, H, W) float, normalised; target dict of tensors, normalised coordinates)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, s: PoseSample, rng: np.random.Generator | None = None):
        h, w = s.size
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        image = (image - self.mean) / self.std
        b = s.boxes
        wh = np.array([w, h, w, h], dtype=np.float64)
        cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                          -1) / wh  # (M, 4)
        k = s.keypoints.shape[1]
        target = dict(
            boxes=torch.as_tensor(cxcywh, dtype=torch.float32).reshape(-1, 4),
            keypoints=torch.as_tensor(s.keypoints[..., :2] / np.array([w, h]), dtype=torch.float32).reshape(-1, k, 2),
            visibility=torch.as_tensor(s.keypoints[..., 2], dtype=torch.long).reshape(-1, k),
            areas=torch.as_tensor(s.areas, dtype=torch.float32).reshape(-1),
            image_id=int(s.image_id),
            size=torch.tensor([h, w]),
            orig_size=torch.tensor(s.orig_size),
        )
        if s.completed is not None:
            target["keypoints_completed"] = torch.as_tensor(s.completed / np.array([w, h]),
                                                            dtype=torch.float32).reshape(-1, k, 2)
        return image, target


def train_transforms(flip_index: Sequence[int], scales: Sequence[int] = (480, 512, 544, 576, 608, 640, 672, 704,
                     736, 768, 800), max_size: int = 1333, crop_scales: Sequence[int] = (400, 500, 600),
                     crop_size: tuple[int, int] = (384, 600)) -> Compose:
    """ED-Pose's training augmentation: flip, then either a resize or resize + random crop + resize."""
    return Compose([
        RandomHorizontalFlip(flip_index),
        RandomSelect(RandomResize(scales, max_size=max_size),
                     Compose([RandomResize(crop_scales), RandomSizeCrop(*crop_size),
                              RandomResize(scales, max_size=max_size)])),
    ])


def eval_transforms(size: int = 800, max_size: int = 1333) -> Compose:
    """Shorter side ``size``, longer at most ``max_size``."""
    return Compose([RandomResize([size], max_size=max_size)])
