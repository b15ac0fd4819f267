"""MocapLift: real CMU motion-capture poses seen through the real Human3.6M cameras, for 2D → 3D lifting.

The embedded default of the lifting task, made on the fly by the library itself (no download):

* **Poses**: 21,085 real 3D poses of 211 takes of the CMU Graphics Lab Motion Capture Database, in the
  Human3.6M-17 joint order, millimetres, Z up (``posediff/assets/mocap_cmu_h36m17.npz``, packed from
  ``shared/data/cmu_mocap`` by :func:`pack_mocap`; root-relative joints in float16, the root in float32).
  *The data used in this project was obtained from mocap.cs.cmu.edu. The database was created with funding
  from NSF EIA-0196217.*
* **Placement**: each pose's take is turned by a random angle about the vertical and its pelvis put at a
  random point of a disc of radius ``area_radius`` (metres) around the capture area's centre; the floor stays
  at Z = 0. It is seen by one of the 44 calibrated Human3.6M cameras (11 subjects × 4, intrinsics with lens
  distortion and extrinsics from the public table), picked at random.
* **2D**: the projection plus a detector-like error. Per joint j, the detector's own spread is
  σ_j = ``noise`` · s_j^OKS · s · c_j: the COCO OKS sigma of the nearest COCO joint (:data:`DETECTOR_SIGMAS`),
  the person's scale s (the square root of its 2D box area, pixels) and a per-joint confidence factor
  c_j = exp(N(0, ``confidence_spread``²)) (the detector knows when it is unsure); the observation is the
  projection + N(0, σ_j²) per coordinate. Gross errors: with probability ``swap_prob`` per frame the
  observations of both arms or of both legs (one pair, at random) trade sides; with probability ``snap_prob``
  per joint a joint is observed at a skeleton neighbour's place.
* **The detector's mixture** per joint, in DiffPose's [π, μu, μv, σu, σv] layout with K = 3 components: where
  this error model puts the true joint given the observation. The observation itself (σ_j) and, with the
  chance of a swap of that joint, the side partner's observation (σ_j: a swapped joint keeps its own error)
  are exact; the third, for a snapped joint, is an approximation: the truth lies about a bone away in a
  direction the observation does not tell, so a broad component at the observation (σ = 0.1 s, weight
  ``snap_prob``) stands for it.
* **Splits by CMU subject** (:data:`SPLIT_SUBJECTS`): the test subjects hold ballet, running, walking,
  basketball signals, soccer, jumping and a cartwheel; the salsa dancers (40% of the poses) and the Li et
  al. takes of unknown subject are in train.
* **Sequences** for video lifters: ``frames=T`` gives T frames centred on the pose at the takes' uniform
  rate (``clip_step`` source frames apart, about 10 fps), rebuilt from ``src_frame`` by linear interpolation
  between kept poses (the source drops near-duplicate poses), held at the take's ends.

Everything is deterministic by ``seed``: item i of epoch e draws from ``numpy.random.default_rng([seed,
split, e, i])``; ``set_epoch`` changes the placement and the noise of the training split every epoch.
Items have the layout of :class:`~posediff.data.h36m.H36MLifting`.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from .h36m import load_cameras, normalize_screen

__all__ = ["ACTION_GROUPS", "DETECTOR_SIGMAS", "SPLIT_SUBJECTS", "MocapBank", "MocapLift", "MocapLiftConfig",
           "pack_mocap"]

_ASSET = "mocap_cmu_h36m17.npz"
ACKNOWLEDGEMENT = ("The data used in this project was obtained from mocap.cs.cmu.edu. The database was created "
                   "with funding from NSF EIA-0196217.")

# COCO OKS sigmas of the nearest COCO joint, in the H36M-17 order: pelvis, spine = hips; thorax = shoulders;
# neck/nose = nose; head = ears; the limbs their own.
DETECTOR_SIGMAS = (0.107, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089, 0.107, 0.079, 0.026, 0.035,
                   0.079, 0.072, 0.062, 0.079, 0.072, 0.062)
_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
_ARMS = ((11, 14), (12, 15), (13, 16))  # (left, right)
_LEGS = ((4, 1), (5, 2), (6, 3))
_SPLITS = {"train": 0, "val": 1, "test": 2}
SPLIT_SUBJECTS = {
    "val": (7, 16, 30, 55, 90),
    "test": (5, 9, 11, 12, 14, 29, 49, 131),
}
ACTION_GROUPS = (  # (group, pattern of CMU action texts), the first match wins
    ("gesture", r"signal|directing|traffic"),
    ("sports", r"soccer|basketball|motorcycle"),
    ("acrobatics", r"cartwheel|flip|hand ?spring|backflip|break|upright|fancyfoot|longsequence"),
    ("martial arts", r"empi|bassai|heian|syutou|gedan|mawashi|oiduki|kick|punch|sword"),
    ("dance", r"dance|salsa|whirl"),
    ("run", r"\brun|jog|leap"),
    ("jump", r"jump|hop"),
    ("walk", r"walk|stride|turn"),
    ("everyday", r"wash|bend|scoop|climb|playground|sit"),
)


@contextmanager
def _plain(path):
    yield path


def action_group(action: str) -> str:
    """A CMU action text → one of :data:`ACTION_GROUPS`' names, or ``"other"``."""
    text = action.lower()
    for group, pattern in ACTION_GROUPS:
        if re.search(pattern, text):
            return group
    return "other"


def pack_mocap(src, out) -> int:
    """Pack ``shared/data/cmu_mocap/cmu_h36m17.npz`` into the shipped asset; returns the number of poses."""
    from ..io import atomic_path, check_output_file

    check_output_file(out, "--out", inputs=(src,), kind="npz")
    with np.load(src) as z:
        joints = z["joints3d_mm"].astype(np.float64)                           # (N, 17, 3) mm, Z up
        root = joints[:, :1]
        fields = {k: z[k] for k in ("clip_index", "subject_id", "src_frame", "clip_name", "clip_cmu_id",
                                    "clip_action", "clip_fps", "clip_step", "clip_subject")}
        licence = str(z["licence"])
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, root_mm=root[:, 0].astype(np.float32), pose_mm=(joints - root).astype(np.float16),
                            **fields, licence=np.array(licence), acknowledgement=np.array(ACKNOWLEDGEMENT),
                            source=np.array(os.path.basename(str(src))))
    return len(joints)


class MocapBank:
    """The shipped CMU poses: ``joints`` (N, 17, 3) mm (Z up), per-pose take, subject, source frame, action."""

    def __init__(self, path=None):
        ref = resources.files("posediff") / "assets" / _ASSET if path is None else path
        with resources.as_file(ref) if path is None else _plain(path) as p, np.load(p) as z:
            self.joints = z["pose_mm"].astype(np.float64) + z["root_mm"].astype(np.float64)[:, None]
            self.clip_index = z["clip_index"].astype(np.int64)
            self.subject = z["subject_id"].astype(np.int64)
            self.src_frame = z["src_frame"].astype(np.int64)
            self.clip_step = z["clip_step"].astype(np.int64)
            self.clip_action = [str(a) for a in z["clip_action"]]
        # per take: its poses' indices in source-frame order, for sequences
        order = np.lexsort((self.src_frame, self.clip_index))
        self.take_poses = np.split(order, np.flatnonzero(np.diff(self.clip_index[order])) + 1)
        self.position_in_take = np.empty(len(self.joints), np.int64)
        for poses in self.take_poses:
            self.position_in_take[poses] = np.arange(len(poses))
        self.take_of = self.clip_index

    @classmethod
    @lru_cache(maxsize=1)
    def shipped(cls) -> MocapBank:
        return cls()

    def split(self, name: str) -> np.ndarray:
        """Indices of the poses of split ``name`` (train / val / test, by CMU subject)."""
        if name not in _SPLITS:
            raise ValueError(f"MocapLift: split={name!r}, expected one of {sorted(_SPLITS)}")
        held = {s for subjects in SPLIT_SUBJECTS.values() for s in subjects}
        if name == "train":
            return np.flatnonzero(~np.isin(self.subject, list(held)))
        return np.flatnonzero(np.isin(self.subject, list(SPLIT_SUBJECTS[name])))

    def window(self, i: int, frames: int) -> np.ndarray:
        """(T, 17, 3) mm: ``frames`` poses centred on pose i at its take's uniform rate (interpolated, held)."""
        take = self.take_poses[self.take_of[i]]
        step = self.clip_step[self.take_of[i]]
        times = self.src_frame[i] + step * (np.arange(frames) - frames // 2)   # (T,) source frames
        pos = np.interp(times, self.src_frame[take], np.arange(len(take)))     # (T,) fractional, held at the ends
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, len(take) - 1)
        w = (pos - lo)[:, None, None]                                          # (T, 1, 1)
        return (1 - w) * self.joints[take[lo]] + w * self.joints[take[hi]]


@dataclass(frozen=True)
class MocapLiftConfig:
    """How MocapLift places, views and corrupts the poses (see the module docstring)."""

    area_radius: float = 1.0          # metres
    noise: float = 0.25               # σ_j = noise · OKS sigma · person scale · confidence factor
    confidence_spread: float = 0.4    # c_j = exp(N(0, spread²))
    swap_prob: float = 0.03           # per frame: both arms or both legs trade sides
    snap_prob: float = 0.01           # per joint: observed at a skeleton neighbour's place

    def __post_init__(self):
        for name in ("area_radius", "noise", "confidence_spread"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"MocapLiftConfig.{name}={getattr(self, name)!r}, expected a number >= 0")
        for name in ("swap_prob", "snap_prob"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"MocapLiftConfig.{name}={getattr(self, name)!r}, expected a probability in "
                                 f"[0, 0.5]")


def _rot_z(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class MocapLift(torch.utils.data.Dataset):
    """Lifting samples from real CMU poses seen by the real Human3.6M cameras.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (by CMU subject).
        seed: the placement, camera and 2D noise of item i are drawn from ``default_rng([seed, split, epoch, i])``.
        frames: T, the 2D window length (1 for frame-based lifters).
        config: :class:`MocapLiftConfig`.
        bank: a :class:`MocapBank` (default: the shipped poses).
        size: use only ``size`` poses of the split, evenly spaced through it (so that every part of the split,
            whose poses are stored take by take, is represented): a fixed subset for quick runs.

    Items: ``keypoints_2d`` (T, 17, 2) screen-normalised observed 2D, ``uncertainty`` (T, 17, 3, 5) the
    detector's mixture (normalised like the 2D), ``pose_3d`` (17, 3) root-relative camera-frame millimetres,
    ``root_3d`` (3,) the pelvis in the camera frame (mm), ``keypoints_px`` (T, 17, 2) the observed pixels,
    ``image_size`` (2,) (w, h), ``action`` (a group of :data:`ACTION_GROUPS`), ``subject``, ``camera``,
    ``frame`` (the pose's index in the bank).
    """

    def __init__(self, split: str = "train", seed: int = 0, frames: int = 1, config: MocapLiftConfig | None = None,
                 bank: MocapBank | None = None, size: int | None = None):
        self.bank = bank if bank is not None else MocapBank.shipped()
        self.indices = self.bank.split(split)
        if size is not None:
            if int(size) < 1:
                raise ValueError(f"MocapLift: size={size}, expected an integer >= 1")
            n = len(self.indices)
            self.indices = self.indices[np.linspace(0, n - 1, min(int(size), n)).round().astype(np.int64)]
        if int(frames) < 1:
            raise ValueError(f"MocapLift: frames={frames}, expected an integer >= 1")
        self.split, self.seed, self.frames = split, int(seed), int(frames)
        self.config = config or MocapLiftConfig()
        self.cameras = list(load_cameras().items())
        self.epoch = 0
        self.sigmas = np.asarray(DETECTOR_SIGMAS)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"MocapLift: index {i} out of range for {len(self)} items")
        cfg = self.config
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], self.epoch, i])
        pose = int(self.indices[i])
        seq = self.bank.window(pose, self.frames)                             # (T, 17, 3) mm, world (Z up)
        centre = seq[self.frames // 2, 0].copy()
        centre[2] = 0.0                                                       # turn about the pelvis' vertical
        radius = cfg.area_radius * np.sqrt(rng.random())
        angle = rng.random() * 2 * np.pi
        spot = np.array([radius * np.cos(angle), radius * np.sin(angle), 0.0])  # metres
        rot = _rot_z(rng.random() * 2 * np.pi)
        world = ((seq - centre) @ rot.T) / 1000.0 + spot                     # (T, 17, 3) metres
        (subject, cam_id), cam = self.cameras[int(rng.integers(len(self.cameras)))]
        cam_xyz = cam.world_to_camera(world)                                  # (T, 17, 3) metres
        uv = cam.project(cam_xyz)                                             # (T, 17, 2) pixels
        observed, mixture = self._detect(uv, rng)
        target = cam_xyz[self.frames // 2] * 1000.0
        mixture[..., 1:3] = normalize_screen(mixture[..., 1:3], cam.w, cam.h)
        mixture[..., 3:5] *= 2.0 / cam.w
        return {
            "keypoints_2d": torch.from_numpy(normalize_screen(observed, cam.w, cam.h).astype(np.float32)),
            "uncertainty": torch.from_numpy(mixture.astype(np.float32)),
            "pose_3d": torch.from_numpy((target - target[:1]).astype(np.float32)),
            "root_3d": torch.from_numpy(target[0].astype(np.float32)),
            "keypoints_px": torch.from_numpy(observed.astype(np.float32)),
            "image_size": torch.tensor([cam.w, cam.h], dtype=torch.float32),
            "action": action_group(self.bank.clip_action[self.bank.take_of[pose]]),
            "subject": int(self.bank.subject[pose]),
            "camera": f"{subject}/{cam_id}",
            "frame": pose,
        }

    def _detect(self, uv: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(T, 17, 2) true pixels → observed pixels and the (T, 17, 3, 5) mixture of the truth given them."""
        cfg = self.config
        t, j = uv.shape[:2]
        extent = uv.max(1) - uv.min(1)                                        # (T, 2)
        scale = np.sqrt(np.clip(extent[:, 0] * extent[:, 1], 1.0, None))     # (T,) person scale s, pixels
        conf = np.exp(rng.normal(size=(t, j)) * cfg.confidence_spread)        # (T, 17) c_j
        sigma = cfg.noise * self.sigmas * scale[:, None] * conf               # (T, 17) σ_j
        observed = uv + rng.normal(size=uv.shape) * sigma[..., None]          # (T, 17, 2)
        partner = np.arange(j)
        swap_p = np.zeros(j)
        for a, b in _ARMS + _LEGS:
            partner[a], partner[b] = b, a
            swap_p[[a, b]] = cfg.swap_prob / 2                                # arms or legs, one at random
        for f in range(t):
            if rng.random() < cfg.swap_prob:
                pairs = _ARMS if rng.random() < 0.5 else _LEGS
                for a, b in pairs:
                    observed[f, [a, b]] = observed[f, [b, a]]
            snapped = np.flatnonzero(rng.random(j) < cfg.snap_prob)
            for k in snapped:
                nb = _PARENTS[k] if _PARENTS[k] >= 0 else 7                   # the pelvis snaps to the spine
                observed[f, k] = uv[f, nb] + rng.normal(size=2) * sigma[f, k]
        mixture = np.empty((t, j, 3, 5))
        mixture[..., 0, 0] = 1.0 - swap_p - cfg.snap_prob                     # the observation itself
        mixture[..., 0, 1:3] = observed
        mixture[..., 0, 3:5] = sigma[..., None]
        mixture[..., 1, 0] = swap_p                                           # the partner's observation
        mixture[..., 1, 1:3] = observed[:, partner]
        mixture[..., 1, 3:5] = sigma[..., None]                               # swapped: own error, partner's place
        mixture[..., 2, 0] = cfg.snap_prob                                    # a broad one: snapped
        mixture[..., 2, 1:3] = observed
        mixture[..., 2, 3:5] = 0.1 * scale[:, None, None]
        return observed, mixture
