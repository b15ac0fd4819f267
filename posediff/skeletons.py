"""Skeleton definitions: joint names, flip pairs, limbs and OKS sigmas.

Three skeletons ship with the library:

* ``COCO17``: the 17 COCO person keypoints, in the order of ``categories[0].keypoints`` of the COCO
  annotation files; sigmas are those of ``pycocotools.cocoeval``.
* ``CROWDPOSE14``: the 14 CrowdPose keypoints (left/right shoulder, elbow, wrist, hip, knee, ankle, then
  head and neck); sigmas are the ones the CrowdPose evaluation (``crowdpose-api``, xtcocotools
  ``keypoints_crowd``) uses, which differ from COCO's for the hips and add head and neck.
* ``H36M17``: the usual 17-joint Human3.6M order (hip, r-hip, r-knee, r-foot, l-hip, l-knee, l-foot,
  spine, thorax, neck/nose, head, l-shoulder, l-elbow, l-wrist, r-shoulder, r-elbow, r-wrist). It has no
  OKS sigmas: Human3.6M is evaluated by MPJPE.

``coco17_to_crowdpose14`` converts COCO keypoints to the CrowdPose joint set (see its docstring for how
head and neck are derived).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Skeleton", "COCO17", "CROWDPOSE14", "H36M17", "get_skeleton", "coco17_to_crowdpose14", "coco17_to_h36m17"]


@dataclass(frozen=True)
class Skeleton:
    """A named joint set.

    Attributes:
        name: registry name (``"coco17"``, ``"crowdpose14"``, ``"h36m17"``).
        joints: joint names, in annotation order.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        limbs: (a, b) index pairs drawn as bones.
        sigmas: per-joint OKS sigmas (``None`` when the dataset is not evaluated by OKS).
    """

    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None = None

    def __post_init__(self):
        k = len(self.joints)
        if len(set(self.joints)) != k:
            raise ValueError(f"Skeleton {self.name!r}: joint names must be unique")
        for field, pairs in (("flip_pairs", self.flip_pairs), ("limbs", self.limbs)):
            for a, b in pairs:
                if not (0 <= a < k and 0 <= b < k) or a == b:
                    raise ValueError(f"Skeleton {self.name!r}: {field} has pair ({a}, {b}), expected two "
                                     f"distinct indices in [0, {k})")
        if self.sigmas is not None and len(self.sigmas) != k:
            raise ValueError(f"Skeleton {self.name!r}: sigmas has {len(self.sigmas)} values, expected {k}")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def flip_index(self) -> tuple[int, ...]:
        """Permutation ``p`` such that ``flipped[:, j] = keypoints[:, p[j]]`` after mirroring x."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    def index(self, joint: str) -> int:
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"Skeleton {self.name!r} has no joint {joint!r}; joints: {self.joints}") from None

    def sigmas_array(self) -> np.ndarray:
        if self.sigmas is None:
            raise ValueError(f"Skeleton {self.name!r} has no OKS sigmas")
        return np.asarray(self.sigmas, dtype=np.float64)


COCO17 = Skeleton(
    name="coco17",
    joints=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
            "right_knee", "left_ankle", "right_ankle"),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # The COCO ``skeleton`` field (1-based there), converted to 0-based indices.
    limbs=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
           (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
            0.087, 0.087, 0.089, 0.089),
)

CROWDPOSE14 = Skeleton(
    name="crowdpose14",
    joints=("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
            "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck"),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    limbs=((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (13, 6), (13, 7), (6, 7), (6, 8),
           (8, 10), (7, 9), (9, 11)),
    # crowdpose-api / xtcocotools "keypoints_crowd": COCO's limb sigmas, 0.079 for head and neck.
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079,
            0.079),
)

H36M17 = Skeleton(
    name="h36m17",
    joints=("hip", "right_hip", "right_knee", "right_foot", "left_hip", "left_knee", "left_foot", "spine",
            "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
            "right_elbow", "right_wrist"),
    flip_pairs=((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)),
    limbs=((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10), (8, 11),
           (11, 12), (12, 13), (8, 14), (14, 15), (15, 16)),
    sigmas=None,
)

_SKELETONS = {s.name: s for s in (COCO17, CROWDPOSE14, H36M17)}


def get_skeleton(name: str | Skeleton) -> Skeleton:
    """Look a skeleton up by name (``"coco17"``, ``"crowdpose14"``, ``"h36m17"``); a Skeleton passes through."""
    if isinstance(name, Skeleton):
        return name
    try:
        return _SKELETONS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; expected one of {sorted(_SKELETONS)}") from None


# Head-top extrapolation: the head top lies this far beyond the face centre, in units of the
# neck -> face-centre distance. 0.6 puts it about one eye-to-crown distance above the eyes on the
# real COCO poses; it is a geometric estimate, not a label.
_HEAD_TOP_EXTRAPOLATION = 0.6


def coco17_to_crowdpose14(keypoints: np.ndarray) -> np.ndarray:
    """Convert COCO-17 keypoints to CrowdPose-14.

    The twelve limb joints (shoulders, elbows, wrists, hips, knees, ankles) are copied. COCO has no
    neck and no head top, so they are derived:

    * neck = midpoint of the two shoulders; labelled only if both shoulders are, with the lower
      (more occluded) of their two visibility flags;
    * head (top) = face centre + 0.6 * (face centre - neck), where the face centre is the mean of the
      labelled face joints (nose, eyes, ears); labelled only if the neck and at least one face joint are,
      with the visibility of the best-visible face joint.

    Args:
        keypoints: (..., 17, 3) array of x, y, visibility (0 unlabelled, 1 occluded, 2 visible).

    Returns:
        (..., 14, 3) array in CrowdPose order; unlabelled joints are (0, 0, 0).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-2:] != (17, 3):
        raise ValueError(f"coco17_to_crowdpose14: expected keypoints of shape (..., 17, 3), got {kp.shape}")
    out = np.zeros(kp.shape[:-2] + (14, 3), dtype=np.float64)
    # COCO indices of CrowdPose joints 0..11 (same left/right order).
    out[..., :12, :] = kp[..., [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], :]

    ls, rs = kp[..., 5, :], kp[..., 6, :]
    neck_ok = (ls[..., 2] > 0) & (rs[..., 2] > 0)
    neck_xy = 0.5 * (ls[..., :2] + rs[..., :2])  # (..., 2)
    neck_v = np.minimum(ls[..., 2], rs[..., 2])

    face = kp[..., 0:5, :]  # (..., 5, 3)
    face_lab = face[..., 2] > 0  # (..., 5)
    n_face = face_lab.sum(-1)
    face_centre = (face[..., :2] * face_lab[..., None]).sum(-2) / np.maximum(n_face, 1)[..., None]
    head_ok = neck_ok & (n_face > 0)
    head_xy = face_centre + _HEAD_TOP_EXTRAPOLATION * (face_centre - neck_xy)
    head_v = face[..., 2].max(-1)

    out[..., 13, :2] = np.where(neck_ok[..., None], neck_xy, 0.0)
    out[..., 13, 2] = np.where(neck_ok, neck_v, 0.0)
    out[..., 12, :2] = np.where(head_ok[..., None], head_xy, 0.0)
    out[..., 12, 2] = np.where(head_ok, head_v, 0.0)
    return out


def coco17_to_h36m17(keypoints: np.ndarray) -> np.ndarray:
    """Convert COCO-17 keypoints (x, y, score or flag) to the Human3.6M-17 joint order, for lifting.

    Hips, knees, ankles (as feet), shoulders, elbows and wrists are copied. COCO has no pelvis, spine, thorax or
    head top, so (as the usual conversion for 2D-to-3D lifters does):

    * pelvis = midpoint of the hips; thorax = midpoint of the shoulders; spine = midpoint of pelvis and thorax;
    * neck/nose = the nose; head = midpoint of the eyes;

    each derived joint taking the lower third value of the joints it is made from.

    Args:
        keypoints: (..., 17, 3) COCO-17 x, y and a score or visibility flag.

    Returns:
        (..., 17, 3) in the H36M-17 order (:data:`H36M17`).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-2:] != (17, 3):
        raise ValueError(f"coco17_to_h36m17: expected keypoints of shape (..., 17, 3), got {kp.shape}")

    def mid(a, b):
        return np.concatenate([0.5 * (a[..., :2] + b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])], -1)

    out = np.zeros_like(kp)
    pelvis, thorax = mid(kp[..., 11, :], kp[..., 12, :]), mid(kp[..., 5, :], kp[..., 6, :])
    out[..., 0, :] = pelvis
    out[..., 1:4, :] = kp[..., [12, 14, 16], :]  # right hip, knee, ankle
    out[..., 4:7, :] = kp[..., [11, 13, 15], :]  # left hip, knee, ankle
    out[..., 7, :] = mid(pelvis, thorax)
    out[..., 8, :] = thorax
    out[..., 9, :] = kp[..., 0, :]
    out[..., 10, :] = mid(kp[..., 1, :], kp[..., 2, :])
    out[..., 11:14, :] = kp[..., [5, 7, 9], :]  # left shoulder, elbow, wrist
    out[..., 14:17, :] = kp[..., [6, 8, 10], :]  # right shoulder, elbow, wrist
    return out
