"""3D pose errors: MPJPE (Protocol 1), P-MPJPE (Protocol 2), N-MPJPE, per action, over hypotheses.

Every function takes poses as ``(..., J, 3)`` numpy arrays or torch tensors (both arguments of one kind)
in any unit and answers in that unit, computed in float64. ``reduction="mean"`` (the default) gives one
number, ``"none"`` the error of each pose, shape ``(...)``.

* :func:`mpjpe` (P1): the mean Euclidean distance between corresponding joints. The lifting literature
  scores root-relative poses (pelvis at the origin), which is the caller's to do (:func:`root_relative`).
* :func:`p_mpjpe` (P2): MPJPE after aligning each predicted pose to its target by the similarity transform
  (scale s > 0, rotation R with det R = +1, translation t) that minimises the summed squared joint
  distance, Umeyama's closed form (Umeyama, TPAMI 1991):
  with centred poses X (prediction) and Y (target), U Σ Vᵀ = SVD(Xᵀ Y), D = diag(1, 1, sign det(V Uᵀ)),
  R = V D Uᵀ, s = tr(Σ D) / ‖X‖²_F, and the aligned prediction s X Rᵀ + ȳ.
* :func:`n_mpjpe`: MPJPE after the scale alone that minimises the summed squared distance,
  s = ⟨X, Y⟩ / ‖X‖² (Rhodin et al., CVPR 2018), on the poses as given (root-relative in the protocol).

Each alignment minimises the *squared* error over a larger family (P2's similarity transforms contain
N-MPJPE's scalings, which contain the identity), so on root-relative poses the mean *squared* joint errors
obey P2 ≤ N ≤ P1 exactly (:func:`joint_error`). MPJPE averages distances, not squared distances, so for
the distances the order is usual but not guaranteed: with one joint off, the least-squares scale can raise
the mean distance (a test shows such a case).

Multi-hypothesis scoring (:func:`hypothesis_errors`) takes ``(..., H, J, 3)``: the mean hypothesis (the
paper's protocol), the best of the H per pose (an oracle that knows the target, labelled as such), and the
hypotheses' spread (mean distance of a hypothesis' joints from their mean) beside the error, so one can see
whether a model's uncertainty knows where it is wrong. :func:`action_means` applies the Human3.6M protocol:
the mean over the poses of each action, then the mean over actions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["mpjpe", "p_mpjpe", "n_mpjpe", "root_relative", "align_procrustes", "align_scale", "joint_error",
           "hypothesis_errors", "action_means"]


def _as_pair(pred, target, name: str):
    """Both as float64 tensors of one shape ``(..., J, 3)``, and whether the caller gave numpy."""
    numpy_in = isinstance(pred, np.ndarray)
    if numpy_in != isinstance(target, np.ndarray):
        raise TypeError(f"{name}: prediction and target must both be numpy arrays or both torch tensors, got "
                        f"{type(pred).__name__} and {type(target).__name__}")
    p = torch.as_tensor(pred, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    if p.shape != t.shape:
        raise ValueError(f"{name}: prediction has shape {tuple(p.shape)} and target {tuple(t.shape)}, expected "
                         f"the same shape (..., J, 3)")
    _check_pose(p, name, "prediction")
    _check_pose(t, name, "target")
    return p, t, numpy_in


def _check_pose(x: torch.Tensor, name: str, what: str) -> None:
    if x.ndim < 2 or x.shape[-1] != 3 or x.shape[-2] < 1:
        raise ValueError(f"{name}: {what} has shape {tuple(x.shape)}, expected (..., J, 3) with J >= 1")
    if not torch.isfinite(x).all():
        where = tuple(int(i) for i in (~torch.isfinite(x)).nonzero()[0].tolist())
        raise ValueError(f"{name}: {what} holds a non-finite value at index {where}")


def _out(err: torch.Tensor, reduction: str, numpy_in: bool, name: str):
    if reduction == "mean":
        value = err.mean()
        return float(value) if numpy_in else value
    if reduction == "none":
        return err.numpy() if numpy_in else err
    raise ValueError(f"{name}: reduction={reduction!r}, expected 'mean' or 'none'")


def root_relative(poses, root: int = 0):
    """``poses`` minus their root joint (pelvis, index 0 in H36M-17): ``(..., J, 3)`` → same shape."""
    return poses - poses[..., root:root + 1, :]


def align_procrustes(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pred`` (..., J, 3) mapped by the similarity transform closest to ``target`` in summed squared distance.

    Umeyama's solution with a proper rotation (a reflection is never used); float64 tensors.
    """
    mu_x = pred.mean(dim=-2, keepdim=True)                                # (..., 1, 3)
    mu_y = target.mean(dim=-2, keepdim=True)                              # (..., 1, 3)
    x, y = pred - mu_x, target - mu_y                                     # (..., J, 3) centred
    u, sigma, vh = torch.linalg.svd(x.transpose(-1, -2) @ y)              # Xᵀ Y = U Σ Vᵀ, (..., 3, 3)
    v = vh.transpose(-1, -2)
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))          # (...,) -1 where U, V reflect
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(sigma)
    d[..., -1] = sign                                                     # D = diag(1, 1, sign det(V Uᵀ))
    rot = v @ (d.unsqueeze(-1) * u.transpose(-1, -2))                     # R = V D Uᵀ, (..., 3, 3)
    norm = (x ** 2).sum(dim=(-1, -2))                                     # ‖X‖²_F, (...,)
    scale = (sigma * d).sum(-1) / norm.clamp_min(1e-300)                  # s = tr(Σ D) / ‖X‖²_F
    scale = torch.where(norm > 0, scale, torch.zeros_like(scale))         # a point: every scale is as good
    return scale[..., None, None] * (x @ rot.transpose(-1, -2)) + mu_y    # s X Rᵀ + ȳ


def align_scale(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pred`` (..., J, 3) times the scale s = ⟨X, Y⟩ / ‖X‖² closest to ``target`` in squared distance."""
    norm = (pred ** 2).sum(dim=(-1, -2), keepdim=True)                     # (..., 1, 1)
    scale = (pred * target).sum(dim=(-1, -2), keepdim=True) / norm.clamp_min(1e-300)
    return torch.where(norm > 0, scale, torch.zeros_like(scale)) * pred


def _distances(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(pred - target, dim=-1)               # (..., J)


def mpjpe(pred, target, reduction: str = "mean"):
    """Protocol 1: the mean per-joint Euclidean distance, ``(..., J, 3)`` → a number or ``(...)``."""
    p, t, numpy_in = _as_pair(pred, target, "mpjpe")
    return _out(_distances(p, t).mean(-1), reduction, numpy_in, "mpjpe")


def p_mpjpe(pred, target, reduction: str = "mean"):
    """Protocol 2: MPJPE after each predicted pose is aligned to its target by a similarity transform."""
    p, t, numpy_in = _as_pair(pred, target, "p_mpjpe")
    return _out(_distances(align_procrustes(p, t), t).mean(-1), reduction, numpy_in, "p_mpjpe")


def n_mpjpe(pred, target, reduction: str = "mean"):
    """MPJPE after each predicted pose is scaled (no rotation, no translation) to fit its target."""
    p, t, numpy_in = _as_pair(pred, target, "n_mpjpe")
    return _out(_distances(align_scale(p, t), t).mean(-1), reduction, numpy_in, "n_mpjpe")


def joint_error(pred, target, alignment: str = "none", reduction: str = "mean", squared: bool = False):
    """The per-pose error under one of the three alignments, as distance or as squared distance.

    ``alignment``: ``"none"`` (P1), ``"scale"`` (N-MPJPE) or ``"procrustes"`` (P2). With ``squared=True``
    the mean *squared* joint distance, the quantity each alignment minimises.
    """
    p, t, numpy_in = _as_pair(pred, target, "joint_error")
    aligners = {"none": lambda a, b: a, "scale": align_scale, "procrustes": align_procrustes}
    if alignment not in aligners:
        raise ValueError(f"joint_error: alignment={alignment!r}, expected one of {sorted(aligners)}")
    d = _distances(aligners[alignment](p, t), t)                          # (..., J)
    return _out((d ** 2 if squared else d).mean(-1), reduction, numpy_in, "joint_error")


def hypothesis_errors(hypotheses, target) -> dict:
    """Per-pose errors of ``hypotheses`` (..., H, J, 3) against ``target`` (..., J, 3), float64 numpy.

    Returns a dict of arrays of shape ``(...)``:
    ``mean_p1`` / ``mean_p2``: P1 / P2 of the mean hypothesis (the paper's protocol);
    ``best_p1`` / ``best_p2``: the lowest P1 / P2 over the H hypotheses (oracle: it looks at the target);
    ``first_p1``: P1 of hypothesis 0 alone (what one sample scores);
    ``spread``: the mean distance of the hypotheses' joints from the mean hypothesis (0 when H = 1).
    """
    h = torch.as_tensor(hypotheses, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    if h.ndim < 3 or tuple(h.shape[:-3]) + tuple(h.shape[-2:]) != tuple(t.shape):
        raise ValueError(f"hypothesis_errors: hypotheses have shape {tuple(h.shape)} and target "
                         f"{tuple(t.shape)}, expected (..., H, J, 3) and (..., J, 3)")
    _check_pose(h, "hypothesis_errors", "hypotheses")
    _check_pose(t, "hypothesis_errors", "target")
    mean = h.mean(dim=-3)                                                 # (..., J, 3)
    tt = t.unsqueeze(-3).expand_as(h)                                     # (..., H, J, 3)
    p1_each = _distances(h, tt).mean(-1)                                  # (..., H)
    p2_each = _distances(align_procrustes(h, tt), tt).mean(-1)            # (..., H)
    spread = _distances(h, mean.unsqueeze(-3).expand_as(h)).mean(dim=(-1, -2))
    return {
        "mean_p1": _distances(mean, t).mean(-1).numpy(),
        "mean_p2": _distances(align_procrustes(mean, t), t).mean(-1).numpy(),
        "best_p1": p1_each.min(-1).values.numpy(),
        "best_p2": p2_each.min(-1).values.numpy(),
        "first_p1": p1_each[..., 0].numpy(),
        "spread": spread.numpy(),
    }


def action_means(errors, actions: Sequence[str]) -> dict:
    """The Human3.6M protocol: mean error per action, then the mean over actions.

    ``errors`` (N,) per-pose errors; ``actions`` N action names. Returns ``{"per_action": {name: mean},
    "mean": mean over actions}`` (each action counts once, whatever its number of poses).
    """
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    names = np.asarray(list(actions))
    if names.shape != err.shape:
        raise ValueError(f"action_means: {err.size} errors and {names.size} action names, expected one name per "
                         f"error")
    if err.size == 0:
        raise ValueError("action_means: no errors given")
    per_action = {str(a): float(err[names == a].mean()) for a in sorted(set(names.tolist()))}
    return {"per_action": per_action, "mean": float(np.mean(list(per_action.values())))}
