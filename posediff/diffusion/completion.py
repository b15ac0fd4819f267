"""Gaussian pose prior: complete invisible keypoints (DiffusionRegPose Eq. 9-12).

A person's K keypoints, normalised by its box (Eq. 9), are modelled as one 2K-dimensional Gaussian
y ~ N(μ, Σ) (coordinates interleaved: x_1, y_1, x_2, y_2, ...). Given the labelled joints V, the
invisible joints I are set to the Gaussian conditional mean

    ŷ_I = μ_I + Σ_IV Σ_VV⁻¹ (y_V - μ_V).

The paper writes this as a least-squares problem (Eq. 10-12): with the Cholesky factor Σ⁻¹ = L Lᵀ and
B = Lᵀ, minimise ||B_I y_I + B_V y_V - B μ||², i.e. the Mahalanobis distance over y_I; its minimiser is
the conditional mean above. We compute that same minimiser from the Cholesky factor of Σ_VV, which
needs no inverse of the whole Σ, handles any mix of visibility patterns in one batched solve, and adds
jitter only to the matrices whose factorisation fails (near-singular covariances).

Normalisation (our choice; the paper divides by W · L_head, the official code by a head length on
CrowdPose and by the right shoulder-hip length on COCO, which has no head joint, and skips persons where
that length is unlabelled): every person is expressed in its own box frame,

* ``"box"`` (default): y = ((x - c_x) / w, (y - c_y) / h), c the box centre, w, h its size;
* ``"box_isotropic"``: both axes divided by max(w, h).

A box is always available (it is part of every COCO annotation, and of every detection), while a head
or torso length is missing exactly when completion is needed. ``benchmarks/completion.py`` compares the
two normalisations on real COCO poses.

Beyond the paper, the prior can also condition on the box shape: the box's log aspect ratio
a = log(h / w) is always observed, so fitting the joint Gaussian of (y, a) and conditioning on a gives a
pose Gaussian N(μ + β (a - ā), Σ) whose mean moves with the box (a tall box: standing; a wide one:
lying or arms spread). ``aspect_coef`` holds β and ``aspect_mean`` ā; without them the prior is the
paper's plain N(μ, Σ). On the completion benchmark this adds about 0.01 mean OKS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import torch

from ..io import atomic_path, read_safetensors

__all__ = ["GaussianPosePrior", "NORMALIZATIONS", "conditional_gaussian"]

NORMALIZATIONS = ("box", "box_isotropic")
_PRETRAINED = {"coco17": "prior_coco17.safetensors"}
_EM_CHUNK = 4096  # persons per E-step chunk in GaussianPosePrior.fit: (4096, D, D) float64, 40 MB for COCO


# ----------------------------------------------------------------------------------------------------
# Batched Gaussian conditioning on arbitrary visibility masks
# ----------------------------------------------------------------------------------------------------

def _safe_cholesky(a: torch.Tensor) -> torch.Tensor:
    """Batched Cholesky (..., D, D); matrices that fail get growing diagonal jitter, the rest none."""
    chol, info = torch.linalg.cholesky_ex(a)
    bad = info != 0
    if not bool(bad.any()):
        return chol
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    scale = a.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-30)  # (...,)
    for rel in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0):
        idx = bad.nonzero(as_tuple=True)
        fixed, info_b = torch.linalg.cholesky_ex(a[idx] + (rel * scale[idx])[:, None, None] * eye)
        chol[idx] = torch.where((info_b == 0)[:, None, None], fixed, chol[idx])
        bad[idx] = info_b != 0
        if not bool(bad.any()):
            return chol
    raise torch.linalg.LinAlgError("conditional_gaussian: covariance is not positive semi-definite "
                                   "(Cholesky failed even with jitter)")


@dataclass
class _Conditioned:
    mean: torch.Tensor  # (B, D): visible entries = observations, hidden entries = conditional mean
    cov: torch.Tensor | None  # (B, D, D): conditional covariance of the hidden entries, 0 elsewhere
    loglik: torch.Tensor | None  # (B,): log N(y_V; μ_V, Σ_VV)


def conditional_gaussian(
    mean: torch.Tensor,
    cov: torch.Tensor,
    y: torch.Tensor,
    visible: torch.Tensor,
    *,
    with_cov: bool = False,
    with_loglik: bool = False,
) -> _Conditioned:
    """Condition N(mean, cov) on the visible entries of each row of ``y``.

    Args:
        mean: (D,). cov: (D, D) symmetric positive (semi-)definite.
        y: (B, D) observations (hidden entries are ignored, may hold anything finite or not).
        visible: (B, D) bool.

    Returns:
        ``.mean`` (B, D): y on visible entries, μ_I + Σ_IV Σ_VV⁻¹ (y_V - μ_V) on hidden ones; optionally
        ``.cov`` (B, D, D), the conditional covariance Σ_II - Σ_IV Σ_VV⁻¹ Σ_VI embedded at the hidden
        entries, and ``.loglik`` (B,), the marginal log-density of the visible entries.
    """
    m = visible.to(y.dtype)  # (B, D)
    r = torch.where(visible, y - mean, torch.zeros_like(y))  # (B, D): y_V - μ_V, 0 on I
    # Σ_VV on the visible block, identity on the hidden one: one batched SPD matrix per row.
    a = cov * m[:, :, None] * m[:, None, :] + torch.diag_embed(1.0 - m)  # (B, D, D)
    chol = _safe_cholesky(a)  # (B, D, D)
    z = torch.cholesky_solve(r[..., None], chol)[..., 0]  # (B, D): Σ_VV⁻¹ (y_V - μ_V) on V, 0 on I
    cond = mean + z @ cov.T  # (B, D): μ + Σ_{:,V} z_V  (Eq. 10-12 minimiser on I)
    out_mean = torch.where(visible, y, cond)
    out_cov = loglik = None
    if with_cov:
        sigma_v = cov[None] * m[:, :, None]  # (B, D, D): rows of V only (Σ_VI and Σ_VV)
        w = torch.cholesky_solve(sigma_v, chol)  # (B, D, D): Σ_VV⁻¹ Σ_{V,:}
        c = cov[None] - sigma_v.transpose(1, 2) @ w  # (B, D, D): Σ - Σ_{:,V} Σ_VV⁻¹ Σ_{V,:}
        hid = 1.0 - m
        out_cov = c * hid[:, :, None] * hid[:, None, :]  # keep the hidden block only
    if with_loglik:
        n_vis = m.sum(-1)  # (B,)
        logdet = 2.0 * torch.log(chol.diagonal(dim1=-2, dim2=-1)).sum(-1)  # log|Σ_VV| (+ log|I| = 0)
        loglik = -0.5 * ((r * z).sum(-1) + logdet + n_vis * float(np.log(2.0 * np.pi)))
    return _Conditioned(out_mean, out_cov, loglik)


# ----------------------------------------------------------------------------------------------------
# numpy / torch in, the same out
# ----------------------------------------------------------------------------------------------------

def _refuse_non_finite(kp: torch.Tensor) -> None:
    """``complete``'s keypoints: every visibility flag and every labelled joint's coordinates must be finite (an
    unlabelled joint's coordinates are never read); the first that is not is named. (Boxes: ``_frame``.)"""
    flags = kp[..., 2]  # (..., K)
    labelled = torch.isfinite(flags) & (flags > 0)
    bad_joint = ~torch.isfinite(flags) | (labelled & ~torch.isfinite(kp[..., :2]).all(-1))  # (..., K)
    if bad_joint.any():
        where = tuple(bad_joint.nonzero()[0].tolist())
        raise ValueError(f"complete: keypoints{list(where)} = {kp[where].tolist()} is not finite (a labelled joint's "
                         f"x and y, and every visibility flag, must be); mark an unknown joint invisible (v = 0)")


def _as_float64(x) -> tuple[torch.Tensor, object]:
    """Input array-like -> float64 tensor, plus a token that restores the caller's type and dtype."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64), ("torch", x.dtype, x.device)
    arr = np.asarray(x)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)), ("numpy", dtype, None)


def _restore(t: torch.Tensor, token) -> torch.Tensor | np.ndarray:
    kind, dtype, device = token
    if kind == "torch":
        return t.to(device=device, dtype=dtype if dtype.is_floating_point else torch.float64)
    return t.cpu().numpy().astype(dtype, copy=False)


# ----------------------------------------------------------------------------------------------------
# The prior
# ----------------------------------------------------------------------------------------------------

@dataclass
class GaussianPosePrior:
    """N(μ, Σ) over box-normalised poses; fills invisible keypoints with the conditional mean.

    Args:
        mean: (K, 2) mean pose in the normalised box frame.
        cov: (2K, 2K) covariance of the interleaved coordinates (x_1, y_1, ..., x_K, y_K).
        normalization: ``"box"`` or ``"box_isotropic"`` (see the module docstring).
        aspect_coef: (K, 2) regression of the mean pose on the box's log aspect ratio, or ``None``.
        aspect_mean: the mean log aspect ratio ā (used with ``aspect_coef``).
        meta: free-form provenance (what it was fitted on), saved with the prior.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    normalization: str = "box"
    aspect_coef: torch.Tensor | None = None
    aspect_mean: float = 0.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64)
        self.cov = torch.as_tensor(self.cov, dtype=torch.float64)
        if self.mean.dim() != 2 or self.mean.shape[1] != 2:
            raise ValueError(f"GaussianPosePrior: mean must have shape (K, 2), got {tuple(self.mean.shape)}")
        d = 2 * self.mean.shape[0]
        if self.cov.shape != (d, d):
            raise ValueError(f"GaussianPosePrior: cov must have shape ({d}, {d}) for K={d // 2}, "
                             f"got {tuple(self.cov.shape)}")
        if not torch.allclose(self.cov, self.cov.T, atol=1e-10 * float(self.cov.abs().max().clamp_min(1))):
            raise ValueError("GaussianPosePrior: cov must be symmetric")
        if self.aspect_coef is not None:
            self.aspect_coef = torch.as_tensor(self.aspect_coef, dtype=torch.float64)
            if self.aspect_coef.shape != self.mean.shape:
                raise ValueError(f"GaussianPosePrior: aspect_coef must have shape {tuple(self.mean.shape)}, "
                                 f"got {tuple(self.aspect_coef.shape)}")
        self.aspect_mean = float(self.aspect_mean)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"GaussianPosePrior: normalization must be one of {NORMALIZATIONS}, "
                             f"got {self.normalization!r}")

    @property
    def num_keypoints(self) -> int:
        return self.mean.shape[0]

    # -- frames --------------------------------------------------------------------------------------
    def _frame(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (..., 4) xywh -> centre (..., 1, 2), scale (..., 1, 2)."""
        if boxes.shape[-1] != 4:
            raise ValueError(f"boxes must have shape (..., 4) as x, y, w, h; got {tuple(boxes.shape)}")
        wh = boxes[..., 2:4]
        if bool((wh <= 0).any()) or not bool(torch.isfinite(boxes).all()):
            bad = ((wh <= 0).any(-1) | ~torch.isfinite(boxes).all(-1)).nonzero()[0].tolist()
            raise ValueError(f"boxes: every box needs a finite position and width, height > 0; box at "
                             f"index {bad} is {boxes[tuple(bad)].tolist()}")
        centre = boxes[..., 0:2] + 0.5 * wh
        scale = wh if self.normalization == "box" else wh.max(-1, keepdim=True).values.expand_as(wh)
        return centre[..., None, :], scale[..., None, :]

    def normalize(self, xy: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Pixels (..., K, 2) -> box frame (..., K, 2) (Eq. 9)."""
        centre, scale = self._frame(boxes)
        return (xy - centre) / scale  # Eq. 9: per-person normalisation

    def denormalize(self, y: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Box frame (..., K, 2) -> pixels (..., K, 2)."""
        centre, scale = self._frame(boxes)
        return y * scale + centre

    # -- completion ----------------------------------------------------------------------------------
    def complete_normalized(self, y, visible, log_aspect=None):
        """Fill the invisible joints of normalised poses with the conditional mean (Eq. 10-12).

        Args:
            y: (..., K, 2) normalised poses (numpy or torch); invisible entries are ignored.
            visible: (..., K) bool.
            log_aspect: (...,) log(h / w) of each person's box; used only by a prior with
                ``aspect_coef`` (required there).

        Returns:
            (..., K, 2), same type and dtype as ``y``: visible joints unchanged, invisible ones completed;
            a pose with no visible joint becomes the mean pose.
        """
        yt, token = _as_float64(y)
        vis = torch.as_tensor(np.asarray(visible) if not isinstance(visible, torch.Tensor) else visible)
        k = self.num_keypoints
        if yt.shape[-2:] != (k, 2):
            raise ValueError(f"complete_normalized: y must have shape (..., {k}, 2), got {tuple(yt.shape)}")
        if tuple(vis.shape) != tuple(yt.shape[:-1]):
            raise ValueError(f"complete_normalized: visible must have shape {tuple(yt.shape[:-1])}, "
                             f"got {tuple(vis.shape)}")
        vis = vis.to(device=yt.device, dtype=torch.bool)
        batch_shape = yt.shape[:-2]
        flat = yt.reshape(-1, 2 * k)  # (B, 2K) interleaved x, y
        vis2 = vis.reshape(-1, k).repeat_interleave(2, dim=-1)  # (B, 2K)
        if (vis2 & ~torch.isfinite(flat)).any():  # one would make every completed joint of its pose NaN
            person, entry = (vis2 & ~torch.isfinite(flat)).nonzero()[0].tolist()
            raise ValueError(f"complete_normalized: pose {person} (flattened), joint {entry // 2} is visible but its "
                             f"{'xy'[entry % 2]} is {float(flat[person, entry])}; mark it invisible instead")
        flat = torch.where(vis2, flat, torch.zeros_like(flat))  # NaN/inf in hidden entries never leak
        mean = self.mean.to(yt.device).reshape(-1)  # (2K,)
        if self.aspect_coef is not None:
            if log_aspect is None:
                raise ValueError("complete_normalized: this prior conditions on the box aspect; pass "
                                 "log_aspect (log(h / w) of each box)")
            a, _ = _as_float64(log_aspect)
            if tuple(a.shape) != tuple(batch_shape):
                raise ValueError(f"complete_normalized: log_aspect must have shape {tuple(batch_shape)}, "
                                 f"got {tuple(a.shape)}")
            shift = (a.to(yt.device).reshape(-1, 1) - self.aspect_mean) * self.aspect_coef.to(yt.device).reshape(1, -1)
            flat = flat - torch.where(vis2, shift, torch.zeros_like(shift))  # condition on a: μ + β (a - ā)
            done = conditional_gaussian(mean, self.cov.to(yt.device), flat, vis2).mean + shift  # (B, 2K)
        else:
            done = conditional_gaussian(mean, self.cov.to(yt.device), flat, vis2).mean  # (B, 2K)
        return _restore(done.reshape(*batch_shape, k, 2), token)

    def complete(self, keypoints, boxes):
        """Complete invisible keypoints in pixels, for any number of persons at once.

        Args:
            keypoints: (..., K, 3) x, y, visibility (numpy or torch); v > 0 counts as labelled. A non-finite
                visibility flag, or labelled joint coordinate, is refused (ValueError naming it).
            boxes: (..., 4) x, y, w, h (COCO ``bbox``), one per person.

        Returns:
            (..., K, 3), same type and dtype: labelled joints and all visibility flags unchanged,
            unlabelled joints moved to the conditional mean.
        """
        kp, token = _as_float64(keypoints)
        bx, _ = _as_float64(boxes)
        bx = bx.to(kp.device)
        k = self.num_keypoints
        if kp.shape[-2:] != (k, 3):
            raise ValueError(f"complete: keypoints must have shape (..., {k}, 3), got {tuple(kp.shape)}")
        if tuple(bx.shape) != tuple(kp.shape[:-2]) + (4,):
            raise ValueError(f"complete: boxes must have shape {tuple(kp.shape[:-2]) + (4,)}, got "
                             f"{tuple(bx.shape)}")
        if kp.shape[:-2].numel() == 0:
            return _restore(kp.clone(), token)
        _refuse_non_finite(kp)
        visible = kp[..., 2] > 0  # (..., K)
        y = self.normalize(kp[..., :2], bx)  # (..., K, 2)
        y_done = self.complete_normalized(y, visible, log_aspect=torch.log(bx[..., 3] / bx[..., 2]))
        out = kp.clone()
        out[..., :2] = torch.where(visible[..., None], kp[..., :2], self.denormalize(y_done, bx))
        return _restore(out, token)

    # -- fitting -------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        keypoints,
        boxes,
        *,
        normalization: str = "box",
        min_visible: int | None = None,
        flip_index: tuple[int, ...] | None = None,
        condition_on_aspect: bool = True,
        em_iters: int = 50,
        reg: float = 1e-6,
        meta: dict | None = None,
    ) -> GaussianPosePrior:
        """Fit μ and Σ to COCO-format persons.

        Args:
            keypoints: (N, K, 3) x, y, visibility in pixels.
            boxes: (N, 4) x, y, w, h.
            normalization: the box frame (see the module docstring).
            min_visible: persons with fewer labelled joints are left out (default K: only fully labelled
                persons). With partially labelled persons the fit is the maximum-likelihood Gaussian
                under missing data, by EM (``em_iters`` iterations).
            flip_index: if given (a skeleton's ``flip_index``), every person is also used mirrored,
                which makes the prior left-right symmetric and doubles the data.
            condition_on_aspect: also fit the regression of the pose on the box's log aspect ratio
                (see the module docstring); ``False`` gives the paper's plain Gaussian.
            reg: added to the diagonal of Σ (normalised units²) so that it stays invertible.
            meta: provenance stored with the prior.
        """
        kp, _ = _as_float64(keypoints)
        bx, _ = _as_float64(boxes)
        if kp.dim() != 3 or kp.shape[-1] != 3:
            raise ValueError(f"fit: keypoints must have shape (N, K, 3), got {tuple(kp.shape)}")
        if bx.shape != (kp.shape[0], 4):
            raise ValueError(f"fit: boxes must have shape ({kp.shape[0]}, 4), got {tuple(bx.shape)}")
        k = kp.shape[1]
        min_visible = k if min_visible is None else int(min_visible)
        vis = kp[..., 2] > 0  # (N, K)
        keep = (vis.sum(-1) >= max(min_visible, 1)) & (bx[:, 2] > 0) & (bx[:, 3] > 0)
        if int(keep.sum()) < 2:
            raise ValueError(f"fit: need at least 2 persons with >= {min_visible} labelled joints and a "
                             f"positive box, got {int(keep.sum())}")
        proto = cls(torch.zeros(k, 2), torch.eye(2 * k), normalization=normalization)
        y = proto.normalize(kp[keep, :, :2], bx[keep])  # (n, K, 2)
        vis = vis[keep]
        log_aspect = torch.log(bx[keep, 3] / bx[keep, 2])  # (n,)
        if flip_index is not None:
            flip = torch.as_tensor(flip_index, dtype=torch.long)
            if flip.shape != (k,):
                raise ValueError(f"fit: flip_index must list {k} joints, got {len(flip_index)}")
            y_f = y[:, flip].clone()
            y_f[..., 0] = -y_f[..., 0]  # mirror about the box centre
            y = torch.cat([y, y_f])
            vis = torch.cat([vis, vis[:, flip]])
            log_aspect = torch.cat([log_aspect, log_aspect])  # mirroring keeps the box shape
        n = y.shape[0]
        flat = y.reshape(n, 2 * k)  # (n, 2K)
        vis2 = vis.repeat_interleave(2, dim=-1)  # (n, 2K)
        if condition_on_aspect:  # joint Gaussian of (y, a); a is always observed
            flat = torch.cat([flat, log_aspect[:, None]], dim=1)  # (n, 2K + 1)
            vis2 = torch.cat([vis2, torch.ones(n, 1, dtype=torch.bool)], dim=1)
        eye = torch.eye(flat.shape[1], dtype=torch.float64)

        if bool(vis2.all()):
            mean = flat.mean(0)
            centred = flat - mean
            cov = centred.T @ centred / (n - 1) + reg * eye
            iters = 0
        else:
            # EM for a Gaussian with missing entries, started from the per-coordinate moments.
            obs = torch.where(vis2, flat, torch.zeros_like(flat))
            cnt = vis2.sum(0).clamp_min(1)
            mean = obs.sum(0) / cnt
            var = (torch.where(vis2, flat - mean, torch.zeros_like(flat)) ** 2).sum(0) / cnt
            cov = torch.diag(var.clamp_min(reg)) + reg * eye
            iters = 0
            for iters in range(1, em_iters + 1):  # noqa: B007
                # E-step in chunks of persons: the conditional covariances are (B, D, D), 3 GB each for COCO train
                filled = torch.empty_like(obs)  # (n, D): E[y | y_V]
                hidden_cov = torch.zeros_like(cov)  # (D, D): Σ_persons Cov[y | y_V]
                for start in range(0, n, _EM_CHUNK):
                    part = slice(start, start + _EM_CHUNK)
                    cond = conditional_gaussian(mean, cov, obs[part], vis2[part], with_cov=True)
                    filled[part] = cond.mean
                    hidden_cov += cond.cov.sum(0)
                new_mean = filled.mean(0)  # M-step: μ = E[y]
                centred = filled - new_mean
                new_cov = (centred.T @ centred + hidden_cov) / n + reg * eye  # Σ = E[(y-μ)(y-μ)ᵀ]
                delta = float((new_cov - cov).abs().max())
                mean, cov = new_mean, 0.5 * (new_cov + new_cov.T)
                if delta < 1e-9:
                    break
        info = dict(meta or {})
        info.update(num_persons=int(keep.sum()), flip=flip_index is not None, min_visible=min_visible,
                    em_iters=iters, reg=reg, condition_on_aspect=condition_on_aspect)
        if not condition_on_aspect:
            return cls(mean.reshape(k, 2), cov, normalization=normalization, meta=info)
        d = 2 * k
        beta = cov[:d, d] / cov[d, d]  # (2K,): Σ_ya / σ_a²
        cond_cov = cov[:d, :d] - beta[:, None] * cov[d, :d][None, :]  # Σ_yy - Σ_ya Σ_ay / σ_a²
        cond_cov = 0.5 * (cond_cov + cond_cov.T)
        return cls(mean[:d].reshape(k, 2), cond_cov, normalization=normalization,
                   aspect_coef=beta.reshape(k, 2), aspect_mean=float(mean[d]), meta=info)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the prior as safetensors (atomically), with its normalisation and provenance."""
        from safetensors.torch import save_file

        tensors = {"mean": self.mean.contiguous(), "cov": self.cov.contiguous()}
        if self.aspect_coef is not None:
            tensors["aspect_coef"] = self.aspect_coef.contiguous()
        metadata = {"format": "posediff.GaussianPosePrior/1", "normalization": self.normalization,
                    "aspect_mean": repr(self.aspect_mean), "meta": json.dumps(self.meta, sort_keys=True)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaussianPosePrior:
        metadata, tensors = read_safetensors(path, "a GaussianPosePrior (GaussianPosePrior.load)")
        if metadata.get("format") != "posediff.GaussianPosePrior/1" or not {"mean", "cov"} <= tensors.keys():
            raise ValueError(f"GaussianPosePrior.load: {path} is not a saved GaussianPosePrior (expected "
                             f"metadata field format='posediff.GaussianPosePrior/1' and tensors mean, cov)")
        return cls(tensors["mean"], tensors["cov"], normalization=metadata.get("normalization", "box"),
                   aspect_coef=tensors.get("aspect_coef"), aspect_mean=float(metadata.get("aspect_mean", 0.0)),
                   meta=json.loads(metadata.get("meta", "{}")))

    @classmethod
    def from_pretrained(cls, name: str = "coco17") -> GaussianPosePrior:
        """A prior shipped in the package: ``"coco17"``, fitted on the real COCO val2017 poses."""
        if name not in _PRETRAINED:
            raise KeyError(f"GaussianPosePrior.from_pretrained: unknown prior {name!r}; "
                           f"available: {sorted(_PRETRAINED)}")
        ref = resources.files("posediff") / "assets" / _PRETRAINED[name]
        with resources.as_file(ref) as path:
            return cls.load(path)
