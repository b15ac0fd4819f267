"""Human3.6M for 2D → 3D lifting, in the preprocessed files the lifting literature uses.

Files (VideoPose3D's format, which DiffPose's code reads too; numpy ``.npz`` holding pickled dicts):

* ``data_3d_h36m.npz``: ``positions_3d[subject][action]`` (F, 32 or 17, 3) metres, world frame. With 32
  joints the usual 17 are kept (:data:`H36M32_TO_17`).
* ``data_2d_h36m_<name>.npz`` (``gt``, ``cpn_ft_h36m_dbb``, ...): ``positions_2d[subject][action]`` a list of
  4 arrays (F, 17, 2) pixels, one per camera in the order of :data:`CAMERA_IDS`, and ``metadata`` (with
  ``keypoints_symmetry``). DiffPose's ``_gmm`` variant stores (F, 17, K, 5) = [π, μu, μv, σu, σv] per joint:
  a K-component mixture of the 2D detection.
* The camera table: ``SUBJECT/CAMERA_ID`` → R (3×3, camera to world), T (3×1, the camera centre in metres),
  f, c (pixels), k (3 radial), p (2 tangential), w, h; the public Human3.6M calibration (shipped as
  ``posediff/assets/h36m_cameras.json``).

Conventions: X_cam = Rᵀ (X_world − T); projection with Human3.6M's distortion as VideoPose3D applies it
(:meth:`Camera.project`); screen normalisation u / w · 2 − (1, h / w) (keeps the aspect ratio, [-1, 1] across
the width); targets root-relative (pelvis at 0) in millimetres. Subjects S1, S5, S6, S7, S8 train and S9, S11
test; an action's take number is dropped for per-action means (``"Directions 1"`` → ``"Directions"``, and
S1's names ``TakingPhoto`` / ``WalkingDog`` → ``Photo`` / ``WalkDog``), giving the protocol's 15 actions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

__all__ = ["CAMERA_IDS", "H36M32_TO_17", "TRAIN_SUBJECTS", "TEST_SUBJECTS", "Camera", "H36MError", "H36MLifting",
           "action_group", "load_cameras", "load_positions_2d", "load_positions_3d", "mixture_mean", "normalize_screen",
           "unnormalize_screen"]

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")  # the order of positions_2d's camera lists
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
_ACTION_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


class H36MError(ValueError):
    """A Human3.6M file that does not hold what the format promises; the message names file and field."""


@dataclass(frozen=True)
class Camera:
    """One calibrated Human3.6M camera.

    Attributes:
        R: (3, 3) rotation, camera to world (its columns are the camera's axes in world coordinates).
        T: (3,) the camera centre in world coordinates, metres.
        f, c: (2,) focal lengths and principal point, pixels.
        k: (3,) radial and p: (2,) tangential distortion.
        w, h: image size in pixels.
    """

    R: np.ndarray
    T: np.ndarray
    f: np.ndarray
    c: np.ndarray
    k: np.ndarray
    p: np.ndarray
    w: int
    h: int
    name: str = ""

    def world_to_camera(self, x: np.ndarray) -> np.ndarray:
        """(..., 3) world points → camera frame, X_cam = Rᵀ (X − T), same unit as ``T`` (metres)."""
        return (np.asarray(x, dtype=np.float64) - self.T) @ self.R

    def camera_to_world(self, x: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points → world, X = R X_cam + T."""
        return np.asarray(x, dtype=np.float64) @ self.R.T + self.T

    def project(self, x_cam: np.ndarray, distort: bool = True) -> np.ndarray:
        """(..., 3) camera-frame points (z > 0) → (..., 2) pixels.

        With ``distort``, Human3.6M's lens model as VideoPose3D applies it: with x̃ = (X/Z, Y/Z) and
        r² = ‖x̃‖², x̃' = x̃ (1 + k₁r² + k₂r⁴ + k₃r⁶ + ⟨p, x̃⟩) + p r², pixels f ⊙ x̃' + c.
        """
        x_cam = np.asarray(x_cam, dtype=np.float64)
        xy = x_cam[..., :2] / x_cam[..., 2:3]                              # (..., 2)
        if distort:
            r2 = (xy ** 2).sum(-1, keepdims=True)                          # (..., 1)
            radial = 1 + self.k[0] * r2 + self.k[1] * r2 ** 2 + self.k[2] * r2 ** 3
            tangential = (self.p * xy).sum(-1, keepdims=True)
            xy = xy * (radial + tangential) + self.p * r2
        return xy * self.f + self.c

    def normalize(self, uv: np.ndarray) -> np.ndarray:
        """Pixels → screen coordinates of this camera's image (:func:`normalize_screen`)."""
        return normalize_screen(uv, self.w, self.h)


def normalize_screen(uv: np.ndarray, w: float, h: float) -> np.ndarray:
    """(..., 2) pixels → u / w · 2 − (1, h / w): [-1, 1] across the width, the aspect ratio kept."""
    return np.asarray(uv, dtype=np.float64) / w * 2 - np.array([1.0, h / w])


def unnormalize_screen(xy: np.ndarray, w: float, h: float) -> np.ndarray:
    """The inverse of :func:`normalize_screen`."""
    return (np.asarray(xy, dtype=np.float64) + np.array([1.0, h / w])) * w / 2


def action_group(action: str) -> str:
    """``"Directions 1"`` → ``"Directions"``; S1's ``TakingPhoto`` / ``WalkingDog`` → ``Photo`` / ``WalkDog``."""
    name = re.split(r"[ _]", action.strip())[0]
    return _ACTION_ALIASES.get(name, name)


def load_cameras(path=None) -> dict[tuple[str, str], Camera]:
    """The camera table as ``{(subject, camera_id): Camera}``; ``path=None`` reads the shipped table."""
    if path is None:
        ref = resources.files("posediff") / "assets" / "h36m_cameras.json"
        with resources.as_file(ref) as p:
            return load_cameras(p)
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise H36MError(f"{path}: cannot read the camera table ({err})") from err
    cams = {}
    for key, entry in table.items():
        subject, _, cam_id = key.partition("/")
        try:
            cams[(subject, cam_id)] = Camera(
                R=np.asarray(entry["R"], dtype=np.float64).reshape(3, 3),
                T=np.asarray(entry["T"], dtype=np.float64).reshape(3),
                f=np.asarray(entry["f"], dtype=np.float64).reshape(2),
                c=np.asarray(entry["c"], dtype=np.float64).reshape(2),
                k=np.asarray(entry["k"], dtype=np.float64).reshape(3),
                p=np.asarray(entry["p"], dtype=np.float64).reshape(2),
                w=int(entry["w"]), h=int(entry["h"]), name=f"{subject}/{cam_id}")
        except KeyError as err:
            raise H36MError(f"{path}: camera {key!r} has no field {err}, expected R, T, f, c, k, p, w, h") from None
        except ValueError as err:
            raise H36MError(f"{path}: camera {key!r} has a field of the wrong size ({err})") from None
    return cams


def _load_dict(path, key: str) -> tuple[dict, np.lib.npyio.NpzFile]:
    path = Path(path)
    if not path.is_file():
        raise H36MError(f"{path}: file not found")
    try:
        z = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as err:
        raise H36MError(f"{path}: cannot read as .npz ({err})") from err
    if key not in z.files:
        raise H36MError(f"{path}: has no field {key!r} (fields: {sorted(z.files)}), expected the VideoPose3D format")
    value = z[key]
    value = value.item() if value.dtype == object else value
    if not isinstance(value, dict):
        raise H36MError(f"{path}: field {key!r} is a {type(value).__name__}, expected a dict by subject")
    return value, z


def _check_array(a, path, where: str, tail: tuple, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 + len(tail) or any(t is not None and s != t for s, t in zip(a.shape[1:], tail)):
        want = ", ".join("F" if i == 0 else ("K" if t is None else str(t)) for i, t in enumerate((0,) + tail))
        raise H36MError(f"{path}: {where} has shape {a.shape}, expected ({want}) {what}")
    bad = ~np.isfinite(a)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise H36MError(f"{path}: {where} holds a non-finite value at frame {frame}")
    return a


def load_positions_3d(path) -> dict[str, dict[str, np.ndarray]]:
    """``data_3d_h36m.npz`` → ``{subject: {action: (F, 17, 3) float64 metres, world frame}}``."""
    data, _ = _load_dict(path, "positions_3d")
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in data.items():
        out[subject] = {}
        for action, a in actions.items():
            a = np.asarray(a)
            where = f"positions_3d[{subject!r}][{action!r}]"
            if a.ndim == 3 and a.shape[1] == 32:
                a = a[:, H36M32_TO_17]
            elif not (a.ndim == 3 and a.shape[1] == 17):
                raise H36MError(f"{path}: {where} has shape {a.shape}, expected (F, 32, 3) or (F, 17, 3) joints")
            out[subject][action] = _check_array(a, path, where, (17, 3), "metres").astype(np.float64)
    return out


def load_positions_2d(path) -> tuple[dict[str, dict[str, list[np.ndarray]]], dict]:
    """``data_2d_h36m_<name>.npz`` → (``{subject: {action: [4 × (F, 17, 2) or (F, 17, K, 5)]}}``, metadata)."""
    data, z = _load_dict(path, "positions_2d")
    meta = z["metadata"].item() if "metadata" in z.files else {}
    _check_metadata(meta, path)
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in data.items():
        out[subject] = {}
        for action, per_cam in actions.items():
            if len(per_cam) != len(CAMERA_IDS):
                raise H36MError(f"{path}: positions_2d[{subject!r}][{action!r}] has {len(per_cam)} cameras, "
                                f"expected {len(CAMERA_IDS)} (in the order {CAMERA_IDS})")
            arrays = []
            for i, a in enumerate(per_cam):
                a = np.asarray(a)
                where = f"positions_2d[{subject!r}][{action!r}][{i}]"
                tail = (17, None, 5) if a.ndim == 4 else (17, 2)
                what = "[π, μu, μv, σu, σv] per joint and component" if a.ndim == 4 else "pixels"
                arrays.append(_check_array(a, path, where, tail, what).astype(np.float64))
            out[subject][action] = arrays
    return out, meta


def _check_metadata(meta, path) -> None:
    """VideoPose3D's ``metadata``: ``num_joints`` 17 and ``keypoints_symmetry`` [left, right] naming H36M-17's own
    left / right joints (the flips and the left / right swaps read them from the skeleton), when given."""
    from ..skeletons import H36M17

    if not isinstance(meta, dict):
        raise H36MError(f"{path}: metadata is a {type(meta).__name__}, expected a dict (num_joints, "
                        f"keypoints_symmetry)")
    if "num_joints" in meta and int(meta["num_joints"]) != 17:
        raise H36MError(f"{path}: metadata['num_joints'] is {meta['num_joints']}, expected 17 (H36M-17)")
    if "keypoints_symmetry" in meta:
        try:
            left, right = (list(map(int, side)) for side in meta["keypoints_symmetry"])
        except (TypeError, ValueError):
            left, right = [], [None]
        pairs = {frozenset(p) for p in zip(left, right)} if len(left) == len(right) else None
        if pairs != {frozenset(p) for p in H36M17.flip_pairs}:
            want = [[a for a, _ in H36M17.flip_pairs], [b for _, b in H36M17.flip_pairs]]
            raise H36MError(f"{path}: metadata['keypoints_symmetry'] is {meta['keypoints_symmetry']!r}, expected "
                            f"H36M-17's left and right joints {want} (in either order)")


def mixture_mean(gmm: np.ndarray) -> np.ndarray:
    """(..., K, 5) [π, μu, μv, σu, σv] → (..., 2) the mixture's mean Σ π μ / Σ π."""
    w = gmm[..., 0:1]                                                       # (..., K, 1)
    return (w * gmm[..., 1:3]).sum(-2) / np.clip(w.sum(-2), 1e-12, None)


class H36MLifting(torch.utils.data.Dataset):
    """Human3.6M lifting samples: one camera's view of one frame (or T frames) of one take.

    Args:
        positions_3d: path of ``data_3d_h36m.npz``.
        positions_2d: path of ``data_2d_h36m_<name>.npz`` (points or DiffPose's mixtures).
        split: ``"train"`` (S1, S5-S8) or ``"test"`` (S9, S11); or give ``subjects``.
        cameras: path of the camera table, ``None`` for the shipped one.
        stride: keep every ``stride``-th frame (the usual 1 for test, often 1-4 for training).
        frames: T, the length of the 2D window centred on the frame (edges repeated, as VideoPose3D pads).
        actions: keep only these action groups (e.g. ``["Walking"]``).

    Items are dicts of tensors: ``keypoints_2d`` (T, 17, 2) screen-normalised 2D (the mixture mean for the
    ``_gmm`` files), ``uncertainty`` (T, 17, K, 5) for the ``_gmm`` files with μ and σ normalised likewise
    (absent otherwise), ``pose_3d`` (17, 3) root-relative camera-frame millimetres; and ``action``,
    ``subject``, ``camera``, ``frame``.
    """

    def __init__(self, positions_3d, positions_2d, split: str = "train", subjects=None, cameras=None,
                 stride: int = 1, frames: int = 1, actions=None):
        if split not in ("train", "test"):
            raise ValueError(f"H36MLifting: split={split!r}, expected 'train' or 'test'")
        if int(stride) < 1 or int(frames) < 1:
            raise ValueError(f"H36MLifting: stride={stride} and frames={frames}, expected integers >= 1")
        subjects = tuple(subjects) if subjects is not None else (TRAIN_SUBJECTS if split == "train" else TEST_SUBJECTS)
        p3d = load_positions_3d(positions_3d)
        p2d, self.metadata = load_positions_2d(positions_2d)
        cams = load_cameras(cameras)
        self.frames = int(frames)
        for subject in subjects:
            for table, path in ((p3d, positions_3d), (p2d, positions_2d)):
                if subject not in table:
                    raise H36MError(f"{path}: subject {subject!r} is absent (subjects: {sorted(table)})")
        self.takes = []   # (subject, action, camera id, 3D (F, 17, 3) camera-frame mm, 2D (F, 17, ...) normalised)
        self.index = []   # (take, frame)
        for subject in subjects:
            for action in sorted(p3d[subject]):
                if actions is not None and action_group(action) not in actions:
                    continue
                if action not in p2d[subject]:
                    raise H36MError(f"{positions_2d}: positions_2d[{subject!r}] has no action {action!r}, which "
                                    f"{positions_3d} holds")
                world = p3d[subject][action]
                for cam_id, kp in zip(CAMERA_IDS, p2d[subject][action]):
                    if (subject, cam_id) not in cams:
                        raise H36MError(f"camera table: has no camera {subject}/{cam_id}")
                    cam = cams[(subject, cam_id)]
                    n = min(len(world), len(kp))  # VideoPose3D trims the 2D to the mocap's length
                    if len(kp) < len(world):
                        raise H36MError(f"{positions_2d}: positions_2d[{subject!r}][{action!r}] camera {cam_id} "
                                        f"has {len(kp)} frames, fewer than the 3D's {len(world)}")
                    xyz = cam.world_to_camera(world[:n]) * 1000.0                 # (F, 17, 3) mm
                    xyz = xyz - xyz[:, :1]                                        # root-relative
                    kp = kp[:n].copy()
                    if kp.ndim == 4:                                              # [π, μu, μv, σu, σv]
                        kp[..., 1:3] = cam.normalize(kp[..., 1:3])
                        kp[..., 3:5] = kp[..., 3:5] / cam.w * 2
                    else:
                        kp = cam.normalize(kp)
                    take = len(self.takes)
                    self.takes.append((subject, action, cam_id, xyz.astype(np.float32), kp.astype(np.float32)))
                    self.index.extend((take, f) for f in range(0, n, int(stride)))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        take, f = self.index[i]
        subject, action, cam_id, xyz, kp = self.takes[take]
        half = self.frames // 2
        window = np.clip(np.arange(f - half, f - half + self.frames), 0, len(kp) - 1)
        seq = kp[window]                                                       # (T, 17, 2) or (T, 17, K, 5)
        item = {"pose_3d": torch.from_numpy(xyz[f]), "action": action_group(action), "subject": subject,
                "camera": cam_id, "frame": f}
        if seq.ndim == 4:
            item["uncertainty"] = torch.from_numpy(seq)
            item["keypoints_2d"] = torch.from_numpy(mixture_mean(seq).astype(np.float32))
        else:
            item["keypoints_2d"] = torch.from_numpy(seq)
        return item
