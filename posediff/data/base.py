"""What every pose dataset shares: seeded per-item augmentation, tensor conversion, batching."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from .transforms import ToTensor

__all__ = ["PoseDataset", "ImageError", "collate", "pad_images", "read_image"]

log = logging.getLogger(__name__)


class ImageError(OSError):
    """An image that is missing or cannot be decoded; the message names the file and the field."""


def read_image(path, named_by: str = "", header_only: bool = False) -> np.ndarray | tuple[int, int]:
    """An image file as a writable (H, W, 3) uint8 RGB array (grayscale and RGBA converted), or with
    ``header_only`` just its (width, height) from the header, a quick check before long work. A missing or
    undecodable file raises :class:`ImageError` naming it and, if given, where it was named (``named_by``)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    where = f" (named by {named_by})" if named_by else ""
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, expected an image file{where}")
    if not path.is_file():
        raise ImageError(f"{path}: image file not found{where}")
    try:
        with Image.open(path) as im:
            return im.size if header_only else to_rgb8(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read the image ({err}){where}") from err


def to_rgb8(im) -> np.ndarray:
    """A PIL image as a writable (H, W, 3) uint8 RGB array. 8-bit modes (L, P, RGBA, CMYK, ...) go through PIL's
    own conversion; wider grayscale is scaled to 0-255, not clipped: integer modes (``I;16*`` and ``I``: 16-bit
    PNGs, integer TIFFs) from 0-65535 (values beyond 16 bits: from 0 to their maximum), float images (``F``) from
    [0, 1] when they lie there, else like integers."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)  # (H, W)
        top = float(np.nanmax(a)) if a.size else 0.0
        full = 1.0 if (im.mode == "F" and top <= 1.0) else max(65535.0, top)
        gray = np.clip(np.nan_to_num(a * (255.0 / full)), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))


class PoseDataset(torch.utils.data.Dataset, ABC):
    """Base class: subclasses implement ``__len__`` and ``load_sample(index) -> PoseSample``.

    Items are ``(image (3, H, W) float, target dict)`` (see :class:`~posediff.data.transforms.ToTensor`).
    The augmentation generator of item i in epoch e is ``numpy.random.default_rng([seed, e, i])``, so
    the same item looks the same whatever the number of workers or processes.
    """

    def __init__(self, transforms=None, seed: int = 0, skip_invalid: bool = False):
        self.transforms = transforms
        self.to_tensor = ToTensor()
        self.seed = int(seed)
        self.epoch = 0
        self.skip_invalid = skip_invalid
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load_sample(self, index: int):
        """The untransformed :class:`~posediff.data.transforms.PoseSample` of item ``index``."""

    def __getitem__(self, index: int):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index %= n
        for attempt in range(n):
            i = (index + attempt) % n
            if i in self._bad:
                continue
            try:
                sample = self.load_sample(i)
            except ImageError as err:
                if not self.skip_invalid:
                    raise
                log.warning("%s; skipped", err)
                self._bad.add(i)
                continue
            if self.transforms is not None:
                sample = self.transforms(sample, np.random.default_rng([self.seed, self.epoch, i]))
            return self.to_tensor(sample)
        raise ImageError("no readable image left in the dataset")


def collate(batch):
    """List of (image, target) -> (images (B, 3, H, W) zero-padded, pixel_mask (B, H, W) bool, PoseTargets).

    Images of different sizes are padded at the bottom and right; ``pixel_mask`` is True on real pixels.
    Normalised coordinates stay relative to each image's own (unpadded) size.
    """
    from ..structures import PoseTargets

    return (*pad_images([b[0] for b in batch]), PoseTargets.from_list([b[1] for b in batch]))


def pad_images(images) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H_i, W_i) images -> (images (B, 3, H, W) zero-padded at the bottom and right, pixel_mask (B, H, W)
    True on real pixels), H and W the largest of each."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    out = images[0].new_zeros(len(images), 3, h, w)  # (B, 3, H, W)
    mask = torch.zeros(len(images), h, w, dtype=torch.bool)  # (B, H, W)
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
        mask[i, : im.shape[1], : im.shape[2]] = True
    return out, mask
