"""SynthCrowd: crowded scenes rendered from real COCO poses, in COCO-17 and CrowdPose-14 format.

Every person is a real COCO val2017 pose (from the pose bank shipped in ``posediff/assets``; its missing
joints completed by the shipped Gaussian prior) drawn as an articulated figure: limbs as capsules,
a torso polygon with a striped or plain shirt, a head ellipse, in varied skin and clothing colours.
The left limbs are drawn a shade darker than the right ones: in a photograph a face or the body's
asymmetry tells left from right, and a figure without such a cue looks the same as its mirror image, so
its left / right labels could not be read from the picture (renderer version 1 had no cue: a model trained
on it fitted 20% of the validation persons it found better with its left / right joints swapped,
docs/data.md).
Backgrounds are procedural clutter (gradients, shapes) with limb-like distractors; some scenes get
foreground occluders. Pixel noise is left to the augmentation (``PixelNoise``), so written PNGs stay
small. Persons are drawn back to front (by the height of their feet), into the image and into a label
map, from which the annotations are read:

* visibility: v = 2 where the joint's pixel shows the person itself, v = 1 where something in front of it
  covers the joint (still labelled, as COCO labels occluded joints), v = 0 outside the image;
* box and area: of the person's visible pixels (as COCO boxes cover the visible segment);
* the crowd index of each image by the CrowdPose definition, on the CrowdPose-14 joints.

The number of persons, their size and their spread are drawn per image from one of three regimes
(spread out, grouped, packed) so that the crowd index covers easy (< 0.1), medium and hard (> 0.8)
images. Scenes are deterministic by (seed, split, index). Train and validation scenes use the poses of
the train pool, test scenes those of the test pool: the pool of a pose is fixed by its COCO image id
(``image_id % 5 == 0``: test), so no test pose, nor any pose of the same photograph, is seen in training.

CrowdPose joints: the twelve limb joints are COCO's; neck is the shoulder midpoint, and head (top) is the
top of the rendered head, ``face centre + 0.6 (face centre - neck)`` as in
:func:`posediff.skeletons.coco17_to_crowdpose14` with the head radius kept within 4.5-10% of the figure.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..skeletons import COCO17, coco17_to_crowdpose14
from .base import PoseDataset
from .coco import CocoKeypointDataset, crowd_index

__all__ = ["SceneConfig", "PoseBank", "render_scene", "make_scene", "Scene", "write_split", "SPLITS",
           "build_pose_bank", "SynthCrowdDataset", "synthcrowd_split", "check_renderer", "refuse_other_renderer",
           "renderer_version", "RENDERER_VERSION"]

log = logging.getLogger(__name__)

SPLITS = {"train": 0, "val": 1, "test": 2}
# changes whenever the same (seed, split, index) would draw a different picture; written folders record it
RENDERER_VERSION = 2
_POOL_OF_SPLIT = {"train": "train", "val": "train", "test": "test"}
_BANK_FILE = "posebank_coco17.npz"

# Index sets of COCO-17
_FACE = [0, 1, 2, 3, 4]
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR, L_HIP, R_HIP, L_KN, R_KN, L_AN, R_AN = range(5, 17)
_ARMS = [(L_SH, L_EL), (L_EL, L_WR), (R_SH, R_EL), (R_EL, R_WR)]
_LEGS = [(L_HIP, L_KN), (L_KN, L_AN), (R_HIP, R_KN), (R_KN, R_AN)]
_LEFT = {L_SH, L_EL, L_WR, L_HIP, L_KN, L_AN}  # a limb is left when it starts at a left joint
_HEAD_TOP = 0.6  # as in skeletons.coco17_to_crowdpose14

_SKIN = np.array([[255, 224, 196], [234, 192, 134], [198, 134, 66], [141, 85, 36], [92, 51, 23], [255, 205, 148]])


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn.

    Attributes:
        size: image side in pixels (square images).
        regime_probs: probabilities of the spread-out, grouped and packed regimes.
        min_area: persons with fewer visible pixels are not annotated (they stay in the picture).
        occluder_prob: chance of foreground occluders in a scene.
        noise: std of pixel noise baked into the image (0-255 scale). Off by default: noise makes PNGs
            five times slower to write and fifteen times larger; add it as an augmentation instead
            (:class:`~posediff.data.transforms.PixelNoise`).
        left_shade: left limbs' colour x this, the cue that tells left from right; 1.0 draws both sides alike
            (as renderer version 1 did): a scene whose left / right assignment the picture leaves open.
    """

    size: int = 256
    regime_probs: tuple[float, float, float] = (0.34, 0.33, 0.33)
    min_area: int = 48
    occluder_prob: float = 0.35
    noise: float = 0.0
    left_shade: float = 0.6


# ----------------------------------------------------------------------------------------------------
# The pose bank
# ----------------------------------------------------------------------------------------------------

def build_pose_bank(annotations, out, min_keypoints: int = 8) -> int:
    """Pack the COCO-17 persons with at least ``min_keypoints`` labelled joints into an .npz pose bank."""
    from ..io import atomic_path, check_output_file
    from ..skeletons import COCO17
    from .coco import AnnotationError, load_person_arrays

    check_output_file(out, "--out", inputs=(annotations,), kind="npz")
    persons = load_person_arrays(annotations, min_keypoints=min_keypoints, joints=COCO17.joints)
    keep = (persons.boxes[:, 2] > 1) & (persons.boxes[:, 3] > 1)
    if not keep.any():
        raise AnnotationError(f"{annotations}: no person has {min_keypoints} or more labelled keypoints and a box "
                              f"wider and taller than 1 pixel (--min-keypoints {min_keypoints}); a pose bank needs "
                              f"a COCO-17 keypoint file (person_keypoints_*.json)")
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, keypoints=persons.keypoints[keep].round().astype(np.int16),
                            boxes=persons.boxes[keep].astype(np.float32),
                            image_ids=persons.image_ids[keep].astype(np.int64),
                            source=np.array(os.path.basename(str(annotations))),
                            min_keypoints=np.array(min_keypoints))
    return int(keep.sum())


class PoseBank:
    """Real COCO poses, completed by the prior and normalised: hip centre at 0, joint extent 1.

    Attributes:
        poses: (N, 17, 2) normalised poses (y down).
        image_ids: (N,) COCO image id of each pose; ``pool(name)`` picks the train or test pool.
    """

    def __init__(self, keypoints: np.ndarray, boxes: np.ndarray, image_ids: np.ndarray):
        from ..diffusion.completion import GaussianPosePrior

        full = GaussianPosePrior.from_pretrained("coco17").complete(keypoints.astype(np.float64), boxes)[..., :2]
        centre = 0.5 * (full[:, L_HIP] + full[:, R_HIP])  # (N, 2)
        extent = (full.max(1) - full.min(1)).max(-1)  # (N,)
        self.poses = (full - centre[:, None]) / extent[:, None, None]
        self.image_ids = image_ids
        self.labelled = keypoints[..., 2] > 0

    @classmethod
    @lru_cache(maxsize=1)
    def shipped(cls) -> PoseBank:
        ref = resources.files("posediff") / "assets" / _BANK_FILE
        with resources.as_file(ref) as path, np.load(path) as z:
            return cls(z["keypoints"], z["boxes"].astype(np.float64), z["image_ids"])

    def pool(self, name: str) -> np.ndarray:
        """Indices of the ``"train"`` or ``"test"`` pool (test: COCO image id divisible by 5)."""
        test = self.image_ids % 5 == 0
        if name == "test":
            return np.flatnonzero(test)
        if name == "train":
            return np.flatnonzero(~test)
        raise ValueError(f"PoseBank.pool: expected 'train' or 'test', got {name!r}")


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------

@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: (S, S, 3) uint8.
        keypoints: (M, 17, 3) COCO-17 x, y, v of the annotated persons (continuous pixel coordinates).
        full_keypoints: (M, 17, 2) every joint's true position, also where occluded or outside the image.
        boxes: (M, 4) x, y, w, h of the visible pixels. areas: (M,) visible pixels.
        crowdpose: (M, 14, 3) the same persons in CrowdPose-14.
        full_crowdpose: (M, 14, 2) every CrowdPose joint's true position.
        crowd_index: CrowdPose crowd index of the image.
        regime: 0 spread out, 1 grouped, 2 packed.
    """

    image: np.ndarray
    keypoints: np.ndarray
    full_keypoints: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    crowdpose: np.ndarray
    full_crowdpose: np.ndarray
    crowd_index: float
    regime: int


def _colour(rng, lo=20, hi=235):
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _background(rng, s: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    top, bottom = rng.integers(30, 225, 3), rng.integers(30, 225, 3)
    ramp = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]  # (S, 1, 1)
    base = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)  # (S, 1, 3)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(base, (s, s, 3))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 18))):  # clutter: boxes, blobs, polygons
        x, y = rng.uniform(-0.1, 1.0, 2) * s
        w, h = rng.uniform(0.05, 0.45, 2) * s
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=_colour(rng))
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=_colour(rng))
        else:
            pts = [(x + rng.uniform(0, w), y + rng.uniform(0, h)) for _ in range(int(rng.integers(3, 6)))]
            draw.polygon(pts, fill=_colour(rng))
    for _ in range(int(rng.integers(2, 9))):  # limb-like distractors: capsules, some jointed
        _distractor(draw, rng, s)
    return img, draw


def _distractor(draw, rng, s):
    colour = tuple(int(c) for c in _SKIN[rng.integers(len(_SKIN))]) if rng.random() < 0.5 else _colour(rng)
    width = int(rng.uniform(0.015, 0.05) * s) + 2
    p = rng.uniform(0, 1, 2) * s
    for _ in range(int(rng.integers(1, 3))):
        q = p + rng.normal(0, 0.12, 2) * s
        draw.line([tuple(p), tuple(q)], fill=colour, width=width)
        r = width / 2
        draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=colour)
        p = q


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(round(c * factor)) for c in colour)


def _capsule(draws, a, b, width: float, fills):
    r = width / 2
    for d, f in zip(draws, fills):
        d.line([tuple(a), tuple(b)], fill=f, width=max(int(round(width)), 1))
        d.ellipse([a[0] - r, a[1] - r, a[0] + r, a[1] + r], fill=f)
        d.ellipse([b[0] - r, b[1] - r, b[0] + r, b[1] + r], fill=f)


def _head(kp: np.ndarray, extent: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Face centre, head radius and head top of a COCO-17 pose (pixels).

    The head top lies where ``coco17_to_crowdpose14`` puts it (0.6 of the neck -> face distance beyond
    the face centre), with the radius kept between 0.045 and 0.1 of the pose's extent.
    """
    neck = 0.5 * (kp[L_SH] + kp[R_SH])
    face = kp[_FACE].mean(0)
    up = face - neck
    dist = float(np.linalg.norm(up))
    radius = float(np.clip(_HEAD_TOP * dist, 0.045 * extent, 0.1 * extent))
    top = face + (up / dist if dist > 1e-6 else np.array([0.0, -1.0])) * radius
    return face, radius, top


def _draw_person(draws, kp: np.ndarray, extent: float, label: int, rng, left_shade: float) -> None:
    """Draw one COCO-17 figure into the image (draws[0]) and the label map (draws[1]), left limbs' colours x
    ``left_shade``."""
    skin = tuple(int(c) for c in np.clip(_SKIN[rng.integers(len(_SKIN))] + rng.integers(-15, 16, 3), 0, 255))
    shirt, trousers = _colour(rng), _colour(rng)
    fills = lambda c: (c, label)  # noqa: E731
    limb = extent * rng.uniform(0.045, 0.065)
    left = lambda c, joint: _shade(c, left_shade) if joint in _LEFT else c  # noqa: E731
    for (a, b), part in zip(_LEGS, ("thigh", "shin", "thigh", "shin")):
        _capsule(draws, kp[a], kp[b], limb * (1.3 if part == "thigh" else 1.05), fills(left(trousers, a)))
    torso = [tuple(kp[L_SH]), tuple(kp[R_SH]), tuple(kp[R_HIP]), tuple(kp[L_HIP])]
    for d, f in zip(draws, fills(shirt)):
        d.polygon(torso, fill=f)
    _capsule(draws, kp[L_SH], kp[R_SH], limb * 1.2, fills(shirt))
    _capsule(draws, kp[L_HIP], kp[R_HIP], limb * 1.4, fills(trousers))
    if rng.random() < 0.5:  # a striped shirt
        stripe = _colour(rng)
        for t in np.linspace(0.2, 0.8, int(rng.integers(2, 5))):
            a = kp[L_SH] * (1 - t) + kp[L_HIP] * t
            b = kp[R_SH] * (1 - t) + kp[R_HIP] * t
            draws[0].line([tuple(a), tuple(b)], fill=stripe, width=max(int(limb * 0.5), 1))
    sleeve = shirt if rng.random() < 0.6 else skin
    for (a, b), part in zip(_ARMS, ("upper", "fore", "upper", "fore")):
        _capsule(draws, kp[a], kp[b], limb, fills(left(shirt if part == "upper" else sleeve, a)))
    for j in (L_WR, R_WR):  # hands
        r = limb * 0.7
        for d, f in zip(draws, fills(left(skin, j))):
            d.ellipse([kp[j][0] - r, kp[j][1] - r, kp[j][0] + r, kp[j][1] + r], fill=f)
    neck = 0.5 * (kp[L_SH] + kp[R_SH])
    face, radius, _ = _head(kp, extent)
    _capsule(draws, neck, face, limb * 0.9, fills(skin))
    hair = _colour(rng, 10, 120)
    for d, f in zip(draws, fills(hair)):
        d.ellipse([face[0] - radius * 0.95, face[1] - radius * 1.05, face[0] + radius * 0.95, face[1] + radius * 0.8],
                  fill=f)
    for d, f in zip(draws, fills(skin)):
        d.ellipse([face[0] - radius * 0.85, face[1] - radius * 0.8, face[0] + radius * 0.85, face[1] + radius * 0.95],
                  fill=f)


def _layout(rng, s: int, regime: int) -> tuple[np.ndarray, np.ndarray]:
    """Hip centres (n, 2) and joint extents (n,) in pixels for one regime."""
    if regime == 0:  # spread out: few persons, apart
        n = int(rng.integers(1, 4))
        extent = rng.uniform(0.35, 0.75, n) * s
        centres = []
        for i in range(n):
            for _ in range(20):
                c = rng.uniform(0.15, 0.85, 2) * s
                if all(np.linalg.norm(c - o) > 0.5 * (extent[i] + extent[j]) for j, o in enumerate(centres)):
                    break
            centres.append(c)
        return np.array(centres), extent
    if regime == 1:  # grouped
        n = int(rng.integers(3, 7))
        extent = rng.uniform(0.3, 0.55, n) * s
        spread = rng.uniform(0.15, 0.3) * s
    else:  # packed
        n = int(rng.integers(5, 11))
        extent = rng.uniform(0.3, 0.5, n) * s
        spread = rng.uniform(0.06, 0.14) * s
    centre = rng.uniform(0.35, 0.65, 2) * s
    return centre + rng.normal(0, 1, (n, 2)) * spread * np.array([1.4, 0.7]), extent


def render_scene(rng: np.random.Generator, bank: PoseBank, pool: np.ndarray,
                 config: SceneConfig = SceneConfig()) -> Scene:
    """Render one scene with poses drawn from ``pool`` (indices into ``bank``)."""
    s = config.size
    regime = int(rng.choice(3, p=np.asarray(config.regime_probs) / np.sum(config.regime_probs)))
    centres, extents = _layout(rng, s, regime)
    n = len(centres)
    picks = pool[rng.integers(len(pool), size=n)]
    poses = bank.poses[picks].copy()  # (n, 17, 2) normalised
    flip = rng.random(n) < 0.5
    poses[flip] = poses[flip][:, list(COCO17.flip_index)] * np.array([-1.0, 1.0])
    kp = poses * extents[:, None, None] + centres[:, None, :]  # (n, 17, 2) pixels
    order = np.argsort(kp[:, :, 1].max(1))  # feet higher up = further away = drawn first

    img, draw = _background(rng, s)
    label = Image.new("L", (s, s), 0)
    draws = (draw, ImageDraw.Draw(label))
    for rank, i in enumerate(order):
        _draw_person(draws, kp[i], extents[i], rank + 1, rng, config.left_shade)
    if rng.random() < config.occluder_prob:  # foreground occluders: label 255
        for _ in range(int(rng.integers(1, 3))):
            x, y = rng.uniform(0, 1, 2) * s
            w, h = rng.uniform(0.08, 0.3, 2) * s
            shape = [x, y, x + w, y + h]
            box = rng.random() < 0.5
            for d, f in zip(draws, (_colour(rng), 255)):
                (d.rectangle if box else d.ellipse)(shape, fill=f)

    image = np.array(img)
    if config.noise > 0:
        image = np.clip(image.astype(np.int16) + _noise_tile(s, rng, config.noise), 0, 255).astype(np.uint8)
    lab = np.asarray(label)
    return _annotate(image, lab, kp[order], extents[order], regime, config)


@lru_cache(maxsize=4)
def _noise_field(s: int, std: float) -> np.ndarray:
    return np.random.default_rng(12345).normal(0, std, (2 * s, 2 * s, 3)).astype(np.int16)


def _noise_tile(s: int, rng, std: float) -> np.ndarray:
    field = _noise_field(s, std)
    y, x = rng.integers(0, s, 2)
    return field[y:y + s, x:x + s]


def _annotate(image, lab, kp, extents, regime, config) -> Scene:
    s = config.size
    n = len(kp)
    counts = np.bincount(lab.reshape(-1), minlength=256)
    keep = []
    boxes = np.zeros((n, 4))
    for rank in range(n):
        area = counts[rank + 1]
        if area < config.min_area:
            continue
        ys, xs = np.nonzero(lab == rank + 1)
        boxes[rank] = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        keep.append(rank)
    # visibility at each joint: 2 own pixel, 1 covered, 0 outside (COCO-17 and the CrowdPose head / neck)
    k17 = np.zeros((n, 17, 3))
    k17[..., :2] = kp
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < s) & (kp[..., 1] >= 0) & (kp[..., 1] < s)
    xi = np.clip(kp[..., 0].astype(np.int64), 0, s - 1)
    yi = np.clip(kp[..., 1].astype(np.int64), 0, s - 1)
    own = lab[yi, xi] == (np.arange(n) + 1)[:, None]
    k17[..., 2] = np.where(inside, np.where(own, 2.0, 1.0), 0.0)
    k17[~inside] = 0.0
    cp = coco17_to_crowdpose14(np.concatenate([kp, np.full((n, 17, 1), 2.0)], -1))  # every joint labelled
    for p in range(n):  # the head label sits on the rendered head's top
        cp[p, 12, :2] = _head(kp[p], extents[p])[2]
    full_cp = cp[..., :2].copy()
    cxy = cp[..., :2]
    inside_cp = (cxy[..., 0] >= 0) & (cxy[..., 0] < s) & (cxy[..., 1] >= 0) & (cxy[..., 1] < s)
    own_cp = lab[np.clip(cxy[..., 1].astype(np.int64), 0, s - 1), np.clip(cxy[..., 0].astype(np.int64), 0, s - 1)] \
        == (np.arange(n) + 1)[:, None]
    cp[..., 2] = np.where(inside_cp, np.where(own_cp, 2.0, 1.0), 0.0)
    cp[~inside_cp] = 0.0
    keep = [r for r in keep if (k17[r, :, 2] > 0).any()]
    k = np.asarray(keep, dtype=np.int64)
    ci = crowd_index(cp[k], boxes[k]) if len(k) else 0.0
    return Scene(image=image, keypoints=k17[k], full_keypoints=kp[k], boxes=boxes[k], areas=counts[k + 1].astype(
        np.float64), crowdpose=cp[k], full_crowdpose=full_cp[k], crowd_index=ci, regime=regime)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def make_scene(seed: int, split: str, index: int, config: SceneConfig = SceneConfig(),
               bank: PoseBank | None = None) -> Scene:
    """Scene ``index`` of ``split`` for ``seed``: the same picture and labels on every machine."""
    if split not in SPLITS:
        raise ValueError(f"make_scene: split must be one of {sorted(SPLITS)}, got {split!r}")
    bank = bank or PoseBank.shipped()
    return render_scene(scene_rng(seed, split, index), bank, bank.pool(_POOL_OF_SPLIT[split]), config)


# ----------------------------------------------------------------------------------------------------
# Writing a split
# ----------------------------------------------------------------------------------------------------

CROWDPOSE_CATEGORY = dict(supercategory="person", id=1, name="person", keypoints=list(
    ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
     "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")),
    skeleton=[[a + 1, b + 1] for a, b in ((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (13, 6),
                                          (13, 7), (6, 7), (6, 8), (8, 10), (7, 9), (9, 11))])
COCO_CATEGORY = dict(supercategory="person", id=1, name="person", keypoints=list(COCO17.joints),
                     skeleton=[[a + 1, b + 1] for a, b in COCO17.limbs])


def _ann(ann_id, image_id, kp, box, area):
    flat = [round(float(v), 2) for v in kp.reshape(-1)]
    return dict(id=ann_id, image_id=image_id, category_id=1, iscrowd=0, keypoints=flat,
                num_keypoints=int((kp[:, 2] > 0).sum()), bbox=[float(v) for v in box], area=float(area))


def scene_file_name(index: int) -> str:
    """The image file of scene ``index`` (0-based) in a written split's ``images/`` folder."""
    return f"{index + 1:06d}.png"


def split_annotations(scenes, split: str, seed: int, num_images: int, config: SceneConfig) -> tuple[dict, dict]:
    """(COCO-17, CrowdPose-14) ground truth of ``scenes`` (scene i is image i + 1, ``scene_file_name(i)``), as
    :func:`write_split` writes it and :meth:`SynthCrowdDataset.ground_truth` gives it."""
    images, coco_anns, cp_anns, cp_images = [], [], [], []
    ann_id = 0
    for i, scene in enumerate(scenes):
        img = dict(id=i + 1, file_name=scene_file_name(i), width=config.size, height=config.size)
        images.append(img)
        cp_images.append(dict(img, crowdIndex=round(scene.crowd_index, 4)))
        for p in range(len(scene.keypoints)):
            ann_id += 1
            coco_anns.append(_ann(ann_id, i + 1, scene.keypoints[p], scene.boxes[p], scene.areas[p]))
            cp_anns.append(_ann(ann_id, i + 1, scene.crowdpose[p], scene.boxes[p], scene.areas[p]))
    info = dict(description=f"SynthCrowd {split} split, rendered by posediff from real COCO val2017 poses",
                renderer=RENDERER_VERSION, seed=seed, split=split, num_images=num_images, config=config.__dict__)
    return (dict(info=info, licenses=[], categories=[COCO_CATEGORY], images=images, annotations=coco_anns),
            dict(info=info, licenses=[], categories=[CROWDPOSE_CATEGORY], images=cp_images, annotations=cp_anns))


def write_split(out_dir, split: str, num_images: int, seed: int = 0, config: SceneConfig = SceneConfig(),
                progress: bool = True) -> dict:
    """Render and write ``num_images`` scenes: ``out_dir/split/images/*.png``, ``coco.json``, ``crowdpose.json``.

    Returns a summary (counts, crowd levels). Writing is atomic per file; an existing image with the same
    name is overwritten (scenes are deterministic, so a re-run reproduces it).
    """
    from tqdm import tqdm

    from ..io import atomic_path, write_json

    root = Path(out_dir) / split
    (root / "images").mkdir(parents=True, exist_ok=True)
    bank = PoseBank.shipped()

    def scenes():
        for i in tqdm(range(num_images), desc=f"synthcrowd {split}", disable=not progress, unit="img"):
            scene = make_scene(seed, split, i, config, bank)
            with atomic_path(root / "images" / scene_file_name(i)) as tmp:
                Image.fromarray(scene.image).save(tmp, format="PNG", compress_level=1)
            yield scene

    coco, crowdpose = split_annotations(scenes(), split, seed, num_images, config)
    write_json(coco, root / "coco.json", indent=None)
    write_json(crowdpose, root / "crowdpose.json", indent=None)
    ci = np.array([im["crowdIndex"] for im in crowdpose["images"]])
    summary = dict(split=split, images=num_images, persons=len(coco["annotations"]), easy=int((ci <= 0.1).sum()),
                   medium=int(((ci > 0.1) & (ci <= 0.8)).sum()), hard=int((ci > 0.8).sum()))
    log.info("wrote %s", json.dumps(summary))
    return summary


# ----------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------

class SynthCrowdDataset(PoseDataset):
    """SynthCrowd rendered on the fly: item i is scene i of ``split`` for ``scene_seed``.

    Args:
        num_images: number of scenes.
        split: ``"train"``, ``"val"`` or ``"test"`` (test scenes use the test pose pool).
        skeleton: ``"coco17"`` or ``"crowdpose14"``: which annotation the targets carry.
        transforms: augmentation, called as ``transforms(sample, rng)``.
        scene_seed: the seed of the scenes (the same as ``posediff data synthcrowd --seed``).
        seed: the augmentation seed.
        config: :class:`SceneConfig`.

    Targets carry ``keypoints_completed``: the true position of every joint, also where occluded or
    outside the image (the renderer knows them; no prior is needed).
    """

    def __init__(self, num_images: int, split: str = "train", skeleton: str = "coco17", transforms=None,
                 scene_seed: int = 0, seed: int = 0, config: SceneConfig = SceneConfig()):
        super().__init__(transforms=transforms, seed=seed)
        if split not in SPLITS:
            raise ValueError(f"SynthCrowdDataset: split must be one of {sorted(SPLITS)}, got {split!r}")
        if skeleton not in ("coco17", "crowdpose14"):
            raise ValueError(f"SynthCrowdDataset: skeleton must be 'coco17' or 'crowdpose14', got {skeleton!r}")
        self.num_images, self.split, self.skeleton_name = int(num_images), split, skeleton
        self.scene_seed, self.config = scene_seed, config

    def __len__(self) -> int:
        return self.num_images

    @property
    def ids(self) -> list[int]:
        """The image ids of the items, in order (item i is image i + 1)."""
        return list(range(1, self.num_images + 1))

    def ground_truth(self) -> dict:
        """The COCO-format ground truth of the items (this dataset's skeleton), as a written split would hold."""
        bank = PoseBank.shipped()
        coco, crowdpose = split_annotations((make_scene(self.scene_seed, self.split, i, self.config, bank)
                                             for i in range(self.num_images)), self.split, self.scene_seed,
                                            self.num_images, self.config)
        return coco if self.skeleton_name == "coco17" else crowdpose

    def load_sample(self, index: int):
        from .transforms import PoseSample

        scene = make_scene(self.scene_seed, self.split, index, self.config)
        if self.skeleton_name == "coco17":
            kp, full = scene.keypoints, scene.full_keypoints
        else:
            kp, full = scene.crowdpose, scene.full_crowdpose
        boxes = np.concatenate([scene.boxes[:, :2], scene.boxes[:, :2] + scene.boxes[:, 2:]], 1)  # xyxy
        s = self.config.size
        return PoseSample(image=scene.image, boxes=boxes, keypoints=kp.copy(), areas=scene.areas, image_id=index + 1,
                          orig_size=(s, s), completed=full.copy())


def check_renderer(ann_file, dataset: dict | None = None) -> None:
    """Refuse a SynthCrowd annotation file drawn by another renderer version than this posediff's.

    Args:
        ann_file: the COCO-format json (named in the error). dataset: its content, if already loaded.

    The version is the file's ``info.renderer`` (files without one were written by version 1).
    """
    if dataset is None:
        with open(ann_file) as f:
            dataset = json.load(f)
    info = dataset.get("info", {}) if isinstance(dataset, dict) else None
    if not isinstance(info, dict):
        raise ValueError(f"{ann_file}: field info must be an object (SynthCrowd records its renderer version "
                         f"there), got {type(info).__name__}")
    refuse_other_renderer(info.get("renderer"), f"{ann_file}: field info.renderer",
                          "render the split again (posediff data synthcrowd) or point at another folder")


def renderer_version(recorded) -> int:
    """The SynthCrowd renderer version a file or checkpoint was made with; None (not recorded) means version 1,
    which recorded none."""
    return 1 if recorded is None else recorded


def refuse_other_renderer(have, what: str, remedy: str) -> None:
    """Raise unless ``have`` (a recorded renderer version, or None: :func:`renderer_version`) is this posediff's.

    ``what`` names the file and field in the error, ``remedy`` says what to do instead.
    """
    if renderer_version(have) != RENDERER_VERSION:
        raise ValueError(f"{what} is {'(missing: version 1)' if have is None else have}, but this posediff draws "
                         f"SynthCrowd version {RENDERER_VERSION}; {remedy}")


def synthcrowd_split(root, split: str, skeleton: str = "coco17", **kwargs) -> CocoKeypointDataset:
    """A written SynthCrowd split (``posediff data synthcrowd --out root``) as a CocoKeypointDataset; refuses
    a split drawn by another renderer version (:func:`check_renderer`)."""
    ann = Path(root) / split / ("coco.json" if skeleton == "coco17" else "crowdpose.json")
    ds = CocoKeypointDataset(Path(root) / split / "images", ann, skeleton=skeleton, **kwargs)
    check_renderer(ann, ds.coco.dataset)
    return ds
