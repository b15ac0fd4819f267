"""Top-down data: one person crop per box, its augmentation, and the heatmap codec.

A person box (x, y, w, h, image pixels) becomes a crop region by mmpose's convention: the box's centre, its
size padded by ``padding`` (1.25) and widened or heightened to the input's aspect ratio. An affine warp maps
that region (rotated by r degrees about its centre) onto the model's input of ``(width, height)`` pixels.
Coordinates are continuous throughout, as in :mod:`posediff.data.transforms`: pixel column i covers [i, i + 1),
so a point x of the input is at x / stride on a heatmap of that stride, whose cell j has its centre at j + 0.5,
and a horizontal flip maps x to W - x on the input and u to w - u on the heatmap (no half-cell shift).

:class:`HeatmapCodec` encodes keypoints as Gaussian heatmaps centred at their exact sub-pixel position (the
unbiased encoding of DARK, Zhang et al. CVPR 2020) and decodes them by the arg-max refined with DARK's
second-order Taylor expansion of the log-heatmap, exact for a Gaussian. :class:`PersonCrops` turns persons (from
ground truth or a detection results file, :func:`load_detections`) into items ``(crop (3, h, w), target)``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CropAugment", "HeatmapCodec", "PersonCrops", "box_to_region", "collate_crops", "crop_matrix",
           "flip_heatmaps", "gt_instances", "invert_matrix", "load_detections", "transform_points", "warp_image"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Geometry: box -> crop region -> affine warp
# ----------------------------------------------------------------------------------------------------

def box_to_region(boxes: np.ndarray, aspect: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (N, 4) xywh -> (centres (N, 2), region sizes (N, 2) w, h): the box padded by ``padding`` and
    grown along one side to the aspect ratio ``aspect`` = width / height of the input."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    w, h = boxes[:, 2].copy(), boxes[:, 3].copy()
    wide = w > aspect * h
    h = np.where(wide, w / aspect, h)
    w = np.where(wide, w, h * aspect)
    return centre, np.stack([w, h], -1) * padding


def crop_matrix(centre, size, rotation: float, out_size: tuple[int, int]) -> np.ndarray:
    """The (2, 3) affine map from image pixels to input pixels: the region of ``size`` (w, h) about ``centre``,
    rotated by ``rotation`` degrees, onto an input of ``out_size`` (W, H): the region turns clockwise in the
    picture, so its content turns counter-clockwise on the input (mmpose's convention)."""
    cx, cy = float(centre[0]), float(centre[1])
    s = out_size[0] / float(size[0])  # input pixels per image pixel (the same along y: the aspects agree)
    a = math.radians(rotation)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    # q = S R (p - c) + q_c, R rotating counter-clockwise in an image whose y axis points down
    return np.array([[cos, sin, out_size[0] / 2 - cos * cx - sin * cy],
                     [-sin, cos, out_size[1] / 2 + sin * cx - cos * cy]], dtype=np.float64)


def invert_matrix(m: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine map (or of (N, 2, 3) maps)."""
    a = np.asarray(m, dtype=np.float64)
    full = np.concatenate([a, np.broadcast_to(np.array([0.0, 0.0, 1.0]), a.shape[:-2] + (1, 3))], -2)
    return np.linalg.inv(full)[..., :2, :]


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine map to points (..., 2)."""
    p = np.asarray(points, dtype=np.float64)
    return p @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def warp_image(image: np.ndarray, m: np.ndarray, out_size: tuple[int, int]) -> torch.Tensor:
    """The input (3, H, W) float in [0, 1] seen through the map ``m`` (image pixels -> input pixels) from an
    (H_img, W_img, 3) uint8 image; bilinear, zero outside the image. Each output pixel samples the image at the
    pre-image of its centre (``grid_sample`` with ``align_corners=False`` uses the same continuous convention)."""
    w_out, h_out = out_size
    h_img, w_img = image.shape[:2]
    inv = invert_matrix(m)  # input -> image
    ys, xs = np.meshgrid(np.arange(h_out) + 0.5, np.arange(w_out) + 0.5, indexing="ij")
    src = transform_points(inv, np.stack([xs, ys], -1))  # (H, W, 2) image pixels
    grid = torch.from_numpy(np.stack([src[..., 0] / w_img * 2 - 1, src[..., 1] / h_img * 2 - 1], -1)).float()
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)  # (3, H_img, W_img)
    return F.grid_sample(img[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]


# ----------------------------------------------------------------------------------------------------
# The heatmap codec
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints in input pixels <-> Gaussian heatmaps of ``stride``.

    Args:
        input_size: (W, H) of the model's input. stride: input pixels per heatmap cell.
        sigma: the Gaussian's standard deviation in heatmap cells.
        blur: DARK's Gaussian modulation of a predicted heatmap before the Taylor step (kernel from ``sigma``);
            off for heatmaps known to be Gaussian.
    """

    input_size: tuple[int, int] = (192, 256)
    stride: int = 4
    sigma: float = 2.0
    blur: bool = True

    def __post_init__(self):
        w, h = self.input_size
        if w % self.stride or h % self.stride:
            raise ValueError(f"HeatmapCodec: input_size {self.input_size} must be a multiple of stride {self.stride}")
        if not self.sigma > 0:
            raise ValueError(f"HeatmapCodec: sigma must be > 0, got {self.sigma!r}")

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(w, h) of the heatmaps."""
        return self.input_size[0] // self.stride, self.input_size[1] // self.stride

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints (..., K, 2) input pixels and visibility (..., K) -> (heatmaps (..., K, h, w) in [0, 1],
        weights (..., K)): 1 for a labelled joint whose Gaussian reaches the heatmap (within 3 sigma), else 0."""
        w, h = self.heatmap_size
        u = keypoints / self.stride - 0.5  # (..., K, 2): in cell-index units (cell j's centre at j)
        xs = torch.arange(w, dtype=u.dtype, device=u.device)
        ys = torch.arange(h, dtype=u.dtype, device=u.device)
        gx = torch.exp(-(xs - u[..., 0:1]) ** 2 / (2 * self.sigma ** 2))  # (..., K, w)
        gy = torch.exp(-(ys - u[..., 1:2]) ** 2 / (2 * self.sigma ** 2))  # (..., K, h)
        heat = gy[..., :, None] * gx[..., None, :]  # (..., K, h, w): separable Gaussian
        r = 3 * self.sigma
        inside = ((u[..., 0] > -r - 0.5) & (u[..., 0] < w - 0.5 + r) & (u[..., 1] > -r - 0.5)
                  & (u[..., 1] < h - 0.5 + r))
        weight = ((visible > 0) & inside).to(heat.dtype)
        return heat * weight[..., None, None], weight

    def decode(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Heatmaps (..., K, h, w) -> (..., K, 3): x, y in input pixels and the heatmap's maximum as the score.

        The arg-max cell, refined by DARK: the log-heatmap's Newton step -H⁻¹∇ at the maximum (skipped where the
        Hessian is not negative definite, e.g. a flat map, and on the map's border cells, as mmpose skips them);
        exact for a Gaussian away from the border."""
        shape = heatmaps.shape
        h, w = shape[-2:]
        hm = heatmaps.reshape(-1, 1, h, w).float()  # (M, 1, h, w)
        score, idx = hm.flatten(1).max(-1)  # (M,)
        iy, ix = (idx // w).float(), (idx % w).float()
        if self.blur:
            hm = _gaussian_blur(hm, self.sigma)
        logh = hm.clamp_min(1e-10).log()
        p = F.pad(logh, (1, 1, 1, 1), mode="replicate")[:, 0]  # (M, h + 2, w + 2)
        m = torch.arange(len(p), device=p.device)
        y, x = idx // w + 1, idx % w + 1

        def at(dy, dx):
            return p[m, y + dy, x + dx]

        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 1) - 2 * at(0, 0) + at(0, -1)
        dyy = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy ** 2
        inner = (ix >= 1) & (ix <= w - 2) & (iy >= 1) & (iy <= h - 2)  # a border cell's differences are one-sided
        ok = (det > 1e-12) & (dxx < 0) & inner  # a maximum (negative definite), inside the map
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = torch.where(ok, -(dyy * dx - dxy * dy) / safe, torch.zeros_like(det)).clamp(-1, 1)
        oy = torch.where(ok, -(dxx * dy - dxy * dx) / safe, torch.zeros_like(det)).clamp(-1, 1)
        xy = torch.stack([(ix + ox + 0.5) * self.stride, (iy + oy + 0.5) * self.stride], -1)  # (M, 2) input px
        return torch.cat([xy, score[:, None]], -1).reshape(*shape[:-2], 3).to(heatmaps.dtype)


def _gaussian_blur(hm: torch.Tensor, sigma: float) -> torch.Tensor:
    """DARK's modulation: blur (M, 1, h, w) by a Gaussian of ``sigma`` cells, rescaled to each map's maximum."""
    radius = max(int(math.ceil(1.5 * sigma)), 1)
    r = torch.arange(-radius, radius + 1, dtype=hm.dtype, device=hm.device)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    top = hm.amax((-2, -1), keepdim=True)
    out = F.conv2d(F.pad(hm, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return out * top / out.amax((-2, -1), keepdim=True).clamp_min(1e-10)


def flip_heatmaps(heatmaps: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
    """Heatmaps (..., K, h, w) of a mirrored input -> those of the input: mirror x, swap left and right."""
    return heatmaps.flip(-1)[..., list(flip_index), :, :]


# ----------------------------------------------------------------------------------------------------
# Persons: ground truth or detections
# ----------------------------------------------------------------------------------------------------

def gt_instances(coco, image_ids: Sequence[int], num_keypoints: int) -> list[dict]:
    """Every non-crowd person with a box of positive size and at least one labelled joint of these images, as
    instances ``{image_id, bbox (xywh), score 1, keypoints (K, 3), area}`` (pycocotools' index ``coco``). Persons
    whose box has no area are skipped with a count in the log."""
    from .coco import labelled_persons

    out, no_area = [], 0
    for image_id in image_ids:
        anns = coco.imgToAnns.get(image_id, [])
        no_area += sum(1 for a in anns if not a.get("iscrowd", 0) and min(a["bbox"][2:4]) <= 0)
        for ann in labelled_persons(anns):
            kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(num_keypoints, 3)
            kp[kp[:, 2] <= 0] = 0.0
            box = [float(v) for v in ann["bbox"]]
            out.append(dict(image_id=int(image_id), bbox=box, score=1.0, keypoints=kp,
                            area=float(ann.get("area", box[2] * box[3]))))
    if no_area:
        log.warning("%d annotated persons with a box of zero size skipped", no_area)
    return out


def image_sizes(coco) -> dict[int, tuple[float, float]]:
    """``{image_id: (width, height)}`` of pycocotools' index ``coco`` (for :func:`load_detections`)."""
    return {int(i): (float(im["width"]), float(im["height"])) for i, im in coco.imgs.items()}


def overlaps_image(boxes: np.ndarray, size: tuple[float, float]) -> np.ndarray:
    """(N,) bool: which boxes (N, 4) x, y, w, h share some area with an image of ``size`` (width, height)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (b[:, 0] < size[0]) & (b[:, 1] < size[1]) & (b[:, 0] + b[:, 2] > 0) & (b[:, 1] + b[:, 3] > 0)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_detections(path, images=None, min_score: float = 0.0, category_id: int = 1) -> list[dict]:
    """Person boxes of a COCO detection results file (a list of ``{image_id, category_id, bbox, score}``) as
    instances, those of ``category_id`` with ``score >= min_score``.

    ``images``: the annotations' image ids, or ``{image_id: (width, height)}`` (:func:`image_sizes`), which also
    skips the boxes that lie wholly outside their image. Skipped boxes (no area, outside the image) are counted in
    the log; an entry without its fields or with a field of the wrong type (``image_id`` an integer, ``score`` and
    the 4 numbers of ``bbox`` finite), and one naming an image that ``images`` does not hold, are named errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: detection results file not found")
    try:
        dets = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(dets, list):
        raise ValueError(f"{path}: a detection results file is a JSON list of {{image_id, category_id, bbox, "
                         f"score}}, got a {type(dets).__name__}")
    sizes = images if isinstance(images, Mapping) else None
    known = set(int(i) for i in images) if images is not None else None
    out, degenerate, outside, unknown = [], 0, 0, []
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or any(f not in d for f in ("image_id", "bbox", "score")):
            raise ValueError(f"{path}: entry [{i}] must hold image_id, bbox and score, got {str(d)[:120]}")
        box, image_id, score = d["bbox"], d["image_id"], d["score"]
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_real(v) for v in box):
            raise ValueError(f"{path}: entry [{i}] field bbox must be 4 finite numbers (x, y, w, h), got {box!r}")
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise ValueError(f"{path}: entry [{i}] field image_id must be an integer, got {image_id!r}")
        if not _real(score):
            raise ValueError(f"{path}: entry [{i}] field score must be a finite number, got {score!r}")
        if d.get("category_id", category_id) != category_id or score < min_score:
            continue
        if known is not None and image_id not in known:
            unknown.append(image_id)
            continue
        if box[2] <= 0 or box[3] <= 0:
            degenerate += 1
            continue
        if sizes is not None and not overlaps_image(np.array(box), sizes[image_id])[0]:
            outside += 1
            continue
        out.append(dict(image_id=image_id, bbox=[float(v) for v in box], score=float(score), keypoints=None,
                        area=float(box[2] * box[3])))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} detections name images the annotations do not hold (e.g. "
                         f"image_id {unknown[0]}); give the detections of these images")
    if degenerate:
        log.warning("%s: %d detections with a box of zero size skipped", path, degenerate)
    if outside:
        log.warning("%s: %d detections with a box wholly outside its image skipped", path, outside)
    return out


# ----------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropAugment:
    """mmpose's top-down training augmentation (its SimpleBaseline COCO configuration): a random scale of the
    region ``clip(1 + N(0, scale), 1 - scale, 1 + scale)``, with probability ``rotation_prob`` a rotation of
    ``clip(N(0, rotation), -2 rotation, 2 rotation)`` degrees, with probability ``half_body_prob`` the upper or
    the lower body alone (persons with more than ``half_body_joints`` labelled joints; the region from those
    joints, padded 1.5x), if ``flip``, a horizontal flip with the skeleton's pairs swapped, and with probability
    one half Gaussian pixel noise of a std drawn from [0, ``pixel_noise``] (0-255 scale), as the one-stage
    recipes train on SynthCrowd (:class:`~posediff.data.transforms.PixelNoise`)."""

    scale: float = 0.5
    rotation: float = 40.0
    rotation_prob: float = 0.6
    half_body_prob: float = 0.3
    half_body_joints: int = 8
    flip: bool = True
    pixel_noise: float = 0.0


_LOWER = ("hip", "knee", "ankle", "foot")


class PersonCrops(torch.utils.data.Dataset):
    """Person crops of the images of a COCO-format source.

    Args:
        source: a :class:`~posediff.data.coco.CocoKeypointDataset` (its images and pycocotools index), or any
            object with ``read_image(image_id)`` and ``skeleton``.
        instances: the persons (:func:`gt_instances`, :func:`load_detections`).
        codec: the heatmap codec (input size, stride, sigma).
        augment: a :class:`CropAugment` for training, None to evaluate.
        padding: the region's padding of the box. seed: the augmentation seed; item i of epoch e draws from
            ``default_rng([seed, e, i])``.

    Items: ``(crop (3, H, W) normalised, target)``; ``target`` holds ``keypoints`` (K, 3) input pixels and
    visibility (zeros for a detection), ``heatmaps`` (K, h, w), ``weights`` (K,), ``matrix`` (2, 3) image ->
    input, ``image_id``, ``score`` (the box's), ``area`` (the instance's: a person's annotated area, a detection's
    box area; image pixels², for the OKS-NMS).
    """

    def __init__(self, source, instances: list[dict], codec: HeatmapCodec, augment: CropAugment | None = None,
                 padding: float = 1.25, seed: int = 0):
        self.source, self.instances, self.codec, self.augment = source, instances, codec, augment
        self.padding, self.seed, self.epoch = padding, int(seed), 0
        sk = source.skeleton
        self.flip_index = np.asarray(sk.flip_index)
        self.lower = np.array([any(p in j for p in _LOWER) for j in sk.joints])
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.instances)

    def region(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, float,
                                                                                    bool]:
        """(centre, size, rotation, flipped) of item ``index``; augmented when ``rng`` is given."""
        inst = self.instances[index]
        aspect = self.codec.input_size[0] / self.codec.input_size[1]
        box = np.asarray(inst["bbox"], dtype=np.float64)
        a = self.augment
        if rng is not None and a is not None and inst["keypoints"] is not None and a.half_body_prob > 0:
            kp = inst["keypoints"]
            vis = kp[:, 2] > 0
            if vis.sum() > a.half_body_joints and rng.random() < a.half_body_prob:
                upper, lower = vis & ~self.lower, vis & self.lower
                pick = upper if (rng.random() < 0.5 and upper.sum() > 2) or lower.sum() < 2 else lower
                pts = kp[pick, :2]
                size = np.maximum(pts.max(0) - pts.min(0), 1.0)
                box = np.concatenate([pts.mean(0) - size / 2, size])  # centred on the joints' mean, as mmpose
                c, s = box_to_region(box, aspect, padding=1.5)
                return self._jitter(c[0], s[0], rng)
        c, s = box_to_region(box, aspect, padding=self.padding)
        if rng is None or a is None:
            return c[0], s[0], 0.0, False
        return self._jitter(c[0], s[0], rng)

    def _jitter(self, centre, size, rng) -> tuple[np.ndarray, np.ndarray, float, bool]:
        a = self.augment
        size = size * float(np.clip(1 + rng.normal() * a.scale, 1 - a.scale, 1 + a.scale))
        rot = float(np.clip(rng.normal() * a.rotation, -2 * a.rotation, 2 * a.rotation)) \
            if rng.random() < a.rotation_prob else 0.0
        return centre, size, rot, bool(a.flip and rng.random() < 0.5)

    def __getitem__(self, index: int):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} person crops")
        index %= n
        inst = self.instances[index]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment is not None else None
        centre, size, rot, flipped = self.region(index, rng)
        m = crop_matrix(centre, size, rot, self.codec.input_size)
        crop = warp_image(self.source.read_image(inst["image_id"]), m, self.codec.input_size)  # (3, H, W)
        k = len(self.flip_index)
        kp = np.zeros((k, 3)) if inst["keypoints"] is None else inst["keypoints"].copy()
        kp[:, :2] = transform_points(m, kp[:, :2])
        kp[kp[:, 2] <= 0] = 0.0
        if flipped:
            w_in = self.codec.input_size[0]
            crop = crop.flip(-1)
            kp = kp[self.flip_index]
            kp[:, 0] = np.where(kp[:, 2] > 0, w_in - kp[:, 0], 0.0)
            m = np.array([[-1.0, 0.0, w_in], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
        if rng is not None and self.augment.pixel_noise > 0 and rng.random() < 0.5:
            std = rng.uniform(0, self.augment.pixel_noise) / 255.0
            crop = (crop + torch.from_numpy(rng.normal(0.0, std, crop.shape).astype(np.float32))).clamp_(0, 1)
        kps = torch.as_tensor(kp, dtype=torch.float32)
        heat, weight = self.codec.encode(kps[:, :2], kps[:, 2])
        target = dict(keypoints=kps, heatmaps=heat, weights=weight, matrix=torch.as_tensor(m, dtype=torch.float64),
                      image_id=int(inst["image_id"]), score=float(inst["score"]), area=float(inst["area"]))
        return (crop - self.mean) / self.std, target


def collate_crops(items) -> tuple[torch.Tensor, dict]:
    """Items of :class:`PersonCrops` -> (crops (B, 3, H, W), targets: tensors stacked, ids and scores as
    tensors)."""
    crops = torch.stack([c for c, _ in items])
    t = {k: torch.stack([it[1][k] for it in items]) for k in ("keypoints", "heatmaps", "weights", "matrix")}
    t["image_id"] = torch.tensor([it[1]["image_id"] for it in items])
    t["score"] = torch.tensor([it[1]["score"] for it in items], dtype=torch.float64)
    t["area"] = torch.tensor([it[1]["area"] for it in items], dtype=torch.float64)
    return crops, t

