"""COCO-format person keypoint files (COCO-17, CrowdPose-14, any skeleton of ``posediff.skeletons``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PersonArrays", "load_person_arrays", "AnnotationError", "crowd_index"]


class AnnotationError(ValueError):
    """A COCO-format file that does not hold what it should; the message names the file and field."""


@dataclass
class PersonArrays:
    """All non-crowd persons with keypoints of one annotation file, as arrays.

    Attributes:
        keypoints: (N, K, 3) float64 x, y, visibility.
        boxes: (N, 4) float64 x, y, w, h.
        areas: (N,) float64 ``area`` (NaN where the file marks it inexact with ``"exact": false``).
        image_ids: (N,) int64. ann_ids: (N,) int64 (-1 where absent).
        source: the file it came from.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    image_ids: np.ndarray
    ann_ids: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.keypoints)

    def select(self, mask: np.ndarray) -> PersonArrays:
        return PersonArrays(self.keypoints[mask], self.boxes[mask], self.areas[mask], self.image_ids[mask],
                            self.ann_ids[mask], self.source)


def _read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise AnnotationError(f"{path}: not a COCO-format file (expected an object with a list field "
                              f"'annotations')")
    return data


def load_person_arrays(path: str | os.PathLike, num_keypoints: int | None = None,
                       min_keypoints: int = 1) -> PersonArrays:
    """Read the persons of a COCO-format keypoint file into arrays (for pose statistics and priors).

    Crowd regions (``iscrowd=1``) and persons with fewer than ``min_keypoints`` labelled joints are left
    out, as COCO's evaluation ignores them for keypoints.

    Args:
        path: annotation JSON.
        num_keypoints: K expected; by default taken from ``categories[0].keypoints``.
        min_keypoints: persons with fewer labelled keypoints are dropped.
    """
    data = _read_json(path)
    if num_keypoints is None:
        cats = data.get("categories") or []
        if not cats or "keypoints" not in cats[0]:
            raise AnnotationError(f"{path}: field categories[0].keypoints is missing; pass num_keypoints")
        num_keypoints = len(cats[0]["keypoints"])
    k = int(num_keypoints)
    kps, boxes, areas, img_ids, ann_ids = [], [], [], [], []
    for i, ann in enumerate(data["annotations"]):
        if ann.get("iscrowd", 0):
            continue
        kp = ann.get("keypoints")
        if kp is None:
            continue
        if len(kp) != 3 * k:
            raise AnnotationError(f"{path}: annotations[{i}] (id {ann.get('id')}) field 'keypoints' has "
                                  f"{len(kp)} values, expected {3 * k} (K={k} joints x 3)")
        kp = np.asarray(kp, dtype=np.float64).reshape(k, 3)
        if int((kp[:, 2] > 0).sum()) < min_keypoints:
            continue
        box = ann.get("bbox")
        if box is None or len(box) != 4:
            raise AnnotationError(f"{path}: annotations[{i}] (id {ann.get('id')}) field 'bbox' must be "
                                  f"[x, y, w, h], got {box!r}")
        if box[2] < 0 or box[3] < 0:
            raise AnnotationError(f"{path}: annotations[{i}] (id {ann.get('id')}) field 'bbox' has a "
                                  f"negative size: {box}")
        kps.append(kp)
        boxes.append(box)
        exact = ann.get("exact", True)
        areas.append(float(ann["area"]) if exact and "area" in ann else np.nan)
        img_ids.append(int(ann["image_id"]))
        ann_ids.append(int(ann.get("id", -1)))
    return PersonArrays(
        keypoints=np.asarray(kps, dtype=np.float64).reshape(-1, k, 3),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        areas=np.asarray(areas, dtype=np.float64),
        image_ids=np.asarray(img_ids, dtype=np.int64),
        ann_ids=np.asarray(ann_ids, dtype=np.int64),
        source=str(path),
    )


def crowd_index(keypoints: np.ndarray, boxes: np.ndarray) -> float:
    """CrowdPose's crowd index of one image (Li et al., CVPR 2019).

    CI = (1/n) Σ_i N_b(i) / N_a(i), where N_a(i) counts person i's labelled joints and N_b(i) the labelled
    joints of the other persons that fall inside person i's box. Persons with no labelled joint are not
    counted in n.

    Args:
        keypoints: (M, K, 3) x, y, visibility. boxes: (M, 4) x, y, w, h.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    bx = np.asarray(boxes, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 3 or bx.shape != (kp.shape[0], 4):
        raise ValueError(f"crowd_index: expected keypoints (M, K, 3) and boxes (M, 4), got {kp.shape}, {bx.shape}")
    labelled = kp[..., 2] > 0  # (M, K)
    n_a = labelled.sum(1)  # (M,)
    if kp.shape[0] < 2 or not (n_a > 0).any():
        return 0.0
    x, y = kp[..., 0], kp[..., 1]  # (M, K)
    x0, y0 = bx[:, 0, None, None], bx[:, 1, None, None]  # (M, 1, 1)
    x1, y1 = x0 + bx[:, 2, None, None], y0 + bx[:, 3, None, None]
    inside = (x[None] >= x0) & (x[None] <= x1) & (y[None] >= y0) & (y[None] <= y1) & labelled[None]  # (M, M, K)
    inside[np.arange(len(kp)), np.arange(len(kp))] = False  # a person's own joints do not count
    n_b = inside.sum((1, 2))  # (M,)
    valid = n_a > 0
    return float(np.mean(n_b[valid] / n_a[valid]))
