"""COCO-format person keypoint files (COCO-17, CrowdPose-14, any skeleton of ``posediff.skeletons``)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import ImageError, PoseDataset, collate, read_image  # noqa: F401  (collate re-exported)

__all__ = ["PersonArrays", "load_person_arrays", "AnnotationError", "ImageError", "crowd_index",
           "CocoKeypointDataset", "collate", "labelled_persons"]

log = logging.getLogger(__name__)


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
                       min_keypoints: int = 1, joints: tuple[str, ...] | None = None) -> PersonArrays:
    """Read the persons of a COCO-format keypoint file into arrays (for pose statistics and priors).

    Crowd regions (``iscrowd=1``) and persons with fewer than ``min_keypoints`` labelled joints are left
    out, as COCO's evaluation ignores them for keypoints.

    Args:
        path: annotation JSON.
        num_keypoints: K expected; by default taken from ``categories[0].keypoints``.
        min_keypoints: persons with fewer labelled keypoints are dropped.
        joints: the joint names expected (a skeleton's ``joints``); a file whose ``categories[0].keypoints``
            names others (a COCO file read as H36M, say) is refused. Files without the field pass.
    """
    data = _read_json(path)
    if joints is not None:
        cats = data.get("categories") or [{}]
        names = cats[0].get("keypoints") if isinstance(cats[0], dict) else None
        if names is not None and [str(n).lower() for n in names] != [j.lower() for j in joints]:
            from ..skeletons import _SKELETONS

            theirs = [s.name for s in _SKELETONS.values() if [j.lower() for j in s.joints] ==
                      [str(n).lower() for n in names]]
            hint = f"; they are skeleton {theirs[0]}'s joints: pass --skeleton {theirs[0]} (skeleton=" \
                   f"'{theirs[0]}')" if theirs else ""
            raise AnnotationError(f"{path}: field categories[0].keypoints names the joints {list(names)}, expected "
                                  f"{list(joints)}{hint}")
        num_keypoints = len(joints) if num_keypoints is None else num_keypoints
    if num_keypoints is None:
        cats = data.get("categories") or []
        if not cats or "keypoints" not in cats[0]:
            raise AnnotationError(f"{path}: field categories[0].keypoints is missing; pass num_keypoints")
        num_keypoints = len(cats[0]["keypoints"])
    k = int(num_keypoints)
    kps, boxes, areas, img_ids, ann_ids = [], [], [], [], []
    for i, ann in enumerate(data["annotations"]):
        if isinstance(ann, dict) and (ann.get("iscrowd", 0) or ann.get("keypoints") is None):
            continue  # crowd regions and annotations of other categories are not checked further
        problem = _annotation_problem(i, ann, k)
        if problem:
            raise AnnotationError(f"{path}: {problem}")
        kp = ann["keypoints"]
        if int((np.asarray(kp[2::3]) > 0).sum()) < min_keypoints:
            continue
        kp = np.asarray(kp, dtype=np.float64).reshape(k, 3)
        box = ann["bbox"]
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


# ----------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------

def _annotation_problem(i: int, ann: dict, k: int, image_ids=None) -> str | None:
    """What is wrong with ``annotations[i]`` of a K-joint file (its image among ``image_ids`` if given), or None."""
    if not isinstance(ann, dict):
        return f"annotations[{i}] must be an object, got {ann!r:.80}"
    name = f"annotations[{i}] (id {ann.get('id')})"
    kp, box = ann.get("keypoints"), ann.get("bbox")
    image_id = ann.get("image_id")
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        return f"{name} field 'image_id' must be an integer, got {image_id!r}"
    if image_ids is not None and image_id not in image_ids:
        return f"{name} field 'image_id' = {image_id!r} names no image"
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return f"{name} field 'bbox' must be [x, y, w, h] (4 numbers), got {box!r:.80}"
    if box[2] < 0 or box[3] < 0:
        return f"{name} field 'bbox' has a negative size: {box}"
    if kp is not None:
        if not isinstance(kp, list):
            return f"{name} field 'keypoints' must be a list of {3 * k} numbers, got {kp!r:.80}"
        if len(kp) != 3 * k:
            return f"{name} field 'keypoints' has {len(kp)} values, expected {3 * k} (K={k} joints x 3)"
        bad = next((j for j, v in enumerate(kp) if not _is_number(v)), None)
        if bad is not None:
            return f"{name} field 'keypoints' value {bad} is {kp[bad]!r}, expected a number"
    return None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate(data: dict, path: Path, k: int, skip_invalid: bool) -> tuple[list[dict], dict[int, list[dict]]]:
    """Check every image and annotation entry; return the images and the valid person annotations per image."""
    for field in ("images", "annotations"):
        if not isinstance(data.get(field), list):
            raise AnnotationError(f"{path}: not a COCO-format file (field {field!r} must be a list)")
    images, seen = [], set()
    for i, img in enumerate(data["images"]):
        problem = None
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            problem = f"images[{i}] needs fields 'id' and 'file_name', got {img!r:.120}"
        elif img["id"] in seen:
            problem = f"images[{i}] field 'id' = {img['id']} is not unique"
        if problem:
            if not skip_invalid:
                raise AnnotationError(f"{path}: {problem}")
            log.warning("%s: %s; skipped", path, problem)
            continue
        seen.add(img["id"])
        images.append(img)
    persons: dict[int, list[dict]] = {img["id"]: [] for img in images}
    for i, ann in enumerate(data["annotations"]):
        problem = _annotation_problem(i, ann, k, image_ids=persons)
        if problem:
            if not skip_invalid:
                raise AnnotationError(f"{path}: {problem}")
            log.warning("%s: %s; skipped", path, problem)
            continue
        persons[ann["image_id"]].append(ann)
    return images, persons


def labelled_persons(anns: list[dict]) -> list[dict]:
    """The annotations that are pose targets: not crowd regions, a box of positive width and height, at least one
    labelled joint."""
    out = []
    for ann in anns:
        kp = ann.get("keypoints")
        if ann.get("iscrowd", 0) or kp is None or ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0:
            continue
        if not any(v > 0 for v in kp[2::3]):
            continue
        out.append(ann)
    return out


class CocoKeypointDataset(PoseDataset):
    """A COCO-format keypoint dataset: an image folder and an annotation JSON (COCO, CrowdPose, ...).

    Persons: crowd regions (``iscrowd=1``) are not targets (COCO's evaluation ignores detections on them);
    persons with no labelled keypoint or a box of zero width or height are left out of the targets,
    as ED-Pose trains. Images without persons are kept (``require_persons=True`` drops them).

    Args:
        image_dir: folder with the images named by ``images[].file_name``.
        ann_file: the annotation JSON (read through pycocotools' index).
        skeleton: a :class:`~posediff.skeletons.Skeleton` or its name; fixes K and the flip pairs.
        transforms: called as ``transforms(sample, rng)`` on a :class:`PoseSample`; then ``ToTensor``.
        prior: a :class:`~posediff.diffusion.GaussianPosePrior` (or ``"coco17"``): targets then carry
            ``keypoints_completed``, invisible joints filled in original pixels before the transforms.
        skip_invalid: log and skip bad annotations and unreadable images instead of raising.
        seed: augmentation seed; the generator of item i in epoch e is ``default_rng([seed, e, i])``.

    Items are ``(image (3, H, W) float, target dict)``; see :class:`~posediff.data.transforms.ToTensor`.
    """

    def __init__(self, image_dir, ann_file, skeleton="coco17", transforms=None, prior=None,
                 skip_invalid: bool = False, require_persons: bool = False, seed: int = 0):
        from pycocotools.coco import COCO

        from ..skeletons import get_skeleton

        super().__init__(transforms=transforms, seed=seed, skip_invalid=skip_invalid)
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.skeleton = get_skeleton(skeleton)
        if isinstance(prior, str):
            from ..diffusion.completion import GaussianPosePrior

            prior = GaussianPosePrior.from_pretrained(prior)
        if prior is not None and prior.num_keypoints != self.skeleton.num_joints:
            raise ValueError(f"prior has {prior.num_keypoints} joints but skeleton {self.skeleton.name!r} has "
                             f"{self.skeleton.num_joints}")
        self.prior = prior
        data = _read_json(self.ann_file)
        images, persons = _validate(data, self.ann_file, self.skeleton.num_joints, skip_invalid)
        self.coco = COCO()  # pycocotools' index, built without re-reading or printing
        self.coco.dataset = dict(data, images=images, annotations=[a for v in persons.values() for a in v])
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.ids = [img["id"] for img in images if not require_persons or self._persons(img["id"])]

    def __len__(self) -> int:
        return len(self.ids)

    def _persons(self, image_id: int) -> list[dict]:
        return labelled_persons(self.coco.imgToAnns.get(image_id, []))

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def read_image(self, image_id: int) -> np.ndarray:
        return read_image(self.image_path(image_id), f"{self.ann_file} field images[id={image_id}].file_name")

    def load_sample(self, index: int):
        """The untransformed :class:`PoseSample` of item ``index`` (pixels, original size)."""
        from .transforms import PoseSample

        image_id = self.ids[index]
        image = self.read_image(image_id)
        anns = self._persons(image_id)
        k = self.skeleton.num_joints
        kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, k, 3)
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        kp[kp[..., 2] <= 0] = 0.0
        areas = np.asarray([a.get("area", b[2] * b[3]) for a, b in zip(anns, xywh)], dtype=np.float64)
        completed = None
        if self.prior is not None:
            completed = self.prior.complete(kp, xywh)[..., :2] if len(kp) else np.zeros((0, k, 2))
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)  # xyxy
        return PoseSample(image=image, boxes=boxes, keypoints=kp, areas=areas, image_id=int(image_id),
                          orig_size=(image.shape[0], image.shape[1]), completed=completed)
