"""2D → 3D lifting: a context encoder and a head, the deterministic Baseline A or DiffPose's GMM diffusion.

Coordinates: 2D in screen-normalised units (:func:`posediff.data.h36m.normalize_screen`: [-1, 1] across the
width), (B, T, J, 2) with T frames (T = 1 for frame-based recipes); 3D root-relative camera-frame metres inside
the model (``LiftingModel.lift`` answers in millimetres).

DiffPose (Gong et al., CVPR 2023), :class:`GMMDiffusionHead`:

* **H_K** (Sec. 4.1), per pose: x, y from the detector's per-joint 2D distribution (the [π, μu, μv, σu, σv]
  mixture; one component at the observation with σ = ``sigma_2d`` when none is given), relative to the root's
  2D and taken into metres by the weak-perspective scale s that best maps the 2D (the mixtures' means) onto
  the context encoder's x, y; z from a per-joint depth distribution: ``depth="context"`` the context
  encoder's z with the spread of its z error on the training set (the paper's choice in its implementation details),
  ``"histogram"`` the training set's histogram of each joint's z (the paper's other choice).
* **The GMM** (Eq. 6): M components fitted by EM to ``gmm_samples`` draws of H_K, per pose
  (:meth:`~posediff.diffusion.GaussianMixture.fit_batched`); ``covariance="full"`` (the paper: 3J × 3J) or
  ``"joint"`` (3 × 3 blocks per joint, a posediff option: within a component the joints are independent, as
  H_K's are drawn; the mixture's components still couple them).
* **Forward process** Eq. 7 with the component mean μ^G (:class:`~posediff.diffusion.GMMForwardProcess`),
  K = ``num_train_timesteps`` steps, ᾱ_K ≈ 0 (cosine schedule).
* **Denoiser** g(ĥ_k, f_ST, f_D^k) (Eq. 8), :class:`~posediff.models.denoisers.graph.GraphDenoiser`, predicting
  ĥ_0. ``loss="x0"`` (default): ‖ĥ_0 − h_0‖² at every k alike, the simplified objective of the diffusion
  work the paper says it follows ([12, 38]); ``"step"``: Eq. 9 taken literally through the DDIM step,
  ‖ĝ_{k-1} − ĥ_{k-1}‖² with ĥ_{k-1} from the same ε^G as ĥ_k and ĝ_{k-1} the step from the predicted ĥ_0,
  which weighs ‖ĥ_0 − h_0‖² by c_k² = (√ᾱ_{k-1} − √(1−ᾱ_{k-1}) √ᾱ_k / √(1−ᾱ_k))² (1 at k = 1, about 0.001
  beyond k = 20): on one fixed budget it scored P1 124 mm against 97 (docs/recipes.md).
* **Sampling**: N hypotheses drawn from the fitted GMM, DDIM in ``steps`` steps through the shared loop, their
  mean is the estimate (Sec. 4.4).
* **The diffusion-off control** (``diffusion=False``, recipe ``diffpose_control``): the same head, trained and
  sampled with x_t replaced by a fresh draw of the fitted GMM at t = K − 1 at every step, so that the context and
  H_K's mixture alone decide; against it the bench measures what the reverse process adds.

Baseline A (Sec. 5.3), :class:`RegressionLiftingHead`: the same denoiser network run once, from the context
encoder's pose at the last timestep, trained to output h_0 with the same loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..diffusion import GaussianMixture, GMMForwardProcess, make_scheduler
from ..diffusion import sample as diffusion_sample
from ..diffusion._random import multinomial, rand, randint, randn

__all__ = ["LiftingModel", "RegressionLiftingHead", "GMMDiffusionHead", "weak_perspective_scale"]

DEPTHS = ("context", "histogram")
COVARIANCES = ("full", "joint")
LOSSES = ("step", "x0", "epsilon")
STATES = ("xyz", "uvxyz")
NOISES = ("gmm", "per_joint")
TRAIN_TIMESTEPS = ("uniform", "antithetic")
TEST_STARTS = ("gmm", "point")
# added to every GMM covariance's diagonal: a 1 cm floor on each coordinate's spread (m² for xyz; for the 2D of
# state="uvxyz", 1e-4 screen units² is 0.5 px on a 1000 px image). With 1e-6 (1 mm), components fitted to few of
# the 256 draws of H_K had most of their 51 eigenvalues at the floor: near-copies of a handful of draws.
REG_COVAR = 1e-4


# Rows per denoiser call when sampling on a CPU: the B·N rows of all hypotheses in one call ran 1.35× slower per
# row than blocks of 256 (2-core AMD EPYC, torch 2.14: a block's activations stay in cache); a GPU takes them all.
CPU_ROWS = 256


def _in_blocks(fn, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``fn(x, t, context)`` over (R, ...) rows, in blocks of :data:`CPU_ROWS` rows on a CPU."""
    n = x.shape[0]
    step = CPU_ROWS if x.device.type == "cpu" else n
    if n <= step:
        return fn(x, t, context)
    per_row = isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == n
    return torch.cat([fn(x[i:i + step], t[i:i + step] if per_row else t, context[i:i + step])
                      for i in range(0, n, step)])


def weak_perspective_scale(uv: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """(B,) s minimising Σ_j ‖s (u_j − u_0) − (x_j, y_j)‖²: metres per screen unit of each pose.

    ``uv`` (B, J, 2) screen-normalised 2D, ``xyz`` (B, J, 3) root-relative metres (joint 0 the root).
    """
    du = uv - uv[:, :1]                                                          # (B, J, 2)
    num = (du * xyz[..., :2]).sum((-1, -2))
    den = (du ** 2).sum((-1, -2)).clamp_min(1e-12)
    return (num / den).clamp_min(1e-3)                                           # (B,)


def _mean_2d(keypoints_2d: torch.Tensor, uncertainty: torch.Tensor | None) -> torch.Tensor:
    """The centre frame's 2D (B, J, 2): the observation, or its mixture's mean."""
    if uncertainty is not None:
        mix = uncertainty[:, uncertainty.shape[1] // 2]                          # (B, J, K, 5)
        w = mix[..., 0:1]
        return (w * mix[..., 1:3]).sum(-2) / w.sum(-2).clamp_min(1e-12)
    return keypoints_2d[:, keypoints_2d.shape[1] // 2]


class RegressionLiftingHead(nn.Module):
    """Baseline A: the denoiser network in one pass from the context's pose, at timestep ``timestep``."""

    deterministic = True

    def __init__(self, denoiser: nn.Module, timestep: int = 49):
        super().__init__()
        self.denoiser = denoiser
        self.timestep = int(timestep)

    def _run(self, features: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        t = torch.full((xyz.shape[0],), self.timestep, dtype=torch.long, device=xyz.device)
        return self.denoiser(xyz, t, features)                                  # (B, J, 3)

    def loss(self, features, xyz, keypoints_2d, uncertainty, target, generator=None) -> dict:
        pred = self._run(features, xyz)
        return {"pose": ((pred - target) ** 2).sum(-1).mean()}

    def sample(self, features, xyz, keypoints_2d, uncertainty, hypotheses: int = 1, steps: int | None = None,
               generator=None) -> torch.Tensor:
        return self._run(features, xyz)[:, None]                                 # (B, 1, J, 3)


class GMMDiffusionHead(nn.Module):
    """DiffPose: H_K, its per-pose GMM, the GMM forward process and DDIM (see the module docstring).

    Behaviours of the released code (GONGJIA0208/Diffpose, docs/recipes.md), each a named option whose default
    is the paper's: ``state="uvxyz"`` diffuses the 2D with the 3D (J × 5, all five in the loss, xyz returned);
    ``noise="per_joint"`` trains on x_t = √ᾱ_t x_0 + √(1−ᾱ_t) e with e zero-mean: the 2D of one per-joint
    component drawn by π as x_0's uv, its σ scaling N(0, 1) on uv, unit N(0, 1) on xyz (no μ^G, no fitted
    GMM; needs ``state="uvxyz"``); ``loss="epsilon"`` predicts e with the squared error summed over joints and
    coordinates; ``train_timesteps="antithetic"`` draws t and K−1−t in pairs; ``test_start="point"`` starts
    sampling from an H_K point without noise: per joint the μ of one component drawn by π (which the context
    encoder reads too, ``LiftingModel.predict``) and the context's xyz, so hypotheses differ only where a
    mixture has several weighted components; ``timesteps=(12, 0)`` evaluates those timesteps;
    ``context_input=False`` gives the denoiser no context (the released code passes 0). Its schedule (linear β
    1e-4 → 1e-3 over 51 steps) is a scheduler setting (``beta_schedule``, ``beta_start``, ``beta_end``,
    ``num_train_timesteps``); its denoiser is the recipe's ``denoiser="released"``.
    """

    deterministic = False

    def __init__(self, denoiser: nn.Module, num_joints: int = 17, num_train_timesteps: int = 50,
                 beta_schedule: str = "squaredcos_cap_v2", num_components: int = 5, gmm_samples: int = 256,
                 em_iterations: int = 10, covariance: str = "full", depth: str = "context", loss: str = "x0",
                 hypotheses: int = 5, steps: int = 5, sigma_2d: float = 0.005, depth_bins: int = 64,
                 depth_range: float = 1.2, stats_momentum: float = 0.01, state: str = "xyz", noise: str = "gmm",
                 train_timesteps: str = "uniform", test_start: str = "gmm", timesteps: tuple[int, ...] | None = None,
                 context_input: bool = True, beta_start: float | None = None, beta_end: float | None = None,
                 diffusion: bool = True):
        super().__init__()
        for name, value, allowed in (("depth", depth, DEPTHS), ("covariance", covariance, COVARIANCES),
                                     ("loss", loss, LOSSES), ("state", state, STATES), ("noise", noise, NOISES),
                                     ("train_timesteps", train_timesteps, TRAIN_TIMESTEPS),
                                     ("test_start", test_start, TEST_STARTS)):
            if value not in allowed:
                raise ValueError(f"GMMDiffusionHead: {name}={value!r}, expected one of {allowed}")
        if noise == "per_joint" and state != "uvxyz":
            raise ValueError("GMMDiffusionHead: noise='per_joint' (the released code's) diffuses the 2D as well; "
                             "it needs state='uvxyz'")
        if (noise == "per_joint") != (test_start == "point"):
            raise ValueError(f"GMMDiffusionHead: noise={noise!r} with test_start={test_start!r}: a model trained on "
                             f"the zero-mean per-joint process samples from the H_K point (test_start='point'), one "
                             f"trained on Eq. 7 from draws of its GMM (test_start='gmm')")
        if not diffusion and (noise != "gmm" or loss != "x0"):
            raise ValueError(f"GMMDiffusionHead: the diffusion-off control (diffusion=False) replaces x_t by draws of "
                             f"the fitted GMM and predicts x_0; it needs noise='gmm' and loss='x0', got "
                             f"noise={noise!r}, loss={loss!r}")
        for name, value, least in (("num_components", num_components, 1), ("gmm_samples", gmm_samples, num_components),
                                   ("em_iterations", em_iterations, 1), ("hypotheses", hypotheses, 1),
                                   ("steps", steps, 1), ("num_train_timesteps", num_train_timesteps, 2)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"GMMDiffusionHead: {name}={value!r}, expected an integer >= {least}")
        if steps > num_train_timesteps:
            raise ValueError(f"GMMDiffusionHead: steps={steps} exceeds num_train_timesteps={num_train_timesteps}")
        self.denoiser = denoiser
        self.num_joints = num_joints
        betas = {k: v for k, v in (("beta_start", beta_start), ("beta_end", beta_end)) if v is not None}
        self.scheduler = make_scheduler("ddim", num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                        prediction_type="epsilon" if loss == "epsilon" else "sample",
                                        clip_sample=False, **betas)
        if timesteps is not None:
            ts = [int(t) for t in timesteps]
            if not ts or any(not 0 <= t < num_train_timesteps for t in ts) or ts != sorted(set(ts), reverse=True):
                raise ValueError(f"GMMDiffusionHead: timesteps={timesteps}, expected distinct timesteps in "
                                 f"[0, {num_train_timesteps}), descending")
        self.num_components, self.gmm_samples, self.em_iterations = num_components, gmm_samples, em_iterations
        self.covariance, self.depth, self.loss_kind = covariance, depth, loss
        self.hypotheses, self.steps, self.sigma_2d = hypotheses, steps, sigma_2d
        self.state, self.noise, self.train_timesteps, self.test_start = state, noise, train_timesteps, test_start
        self.timesteps = tuple(int(t) for t in timesteps) if timesteps is not None else None
        self.context_input, self.diffusion = context_input, bool(diffusion)
        self.dims = 5 if state == "uvxyz" else 3
        self.momentum = stats_momentum
        # training-set statistics, running averages updated in training (saved with the weights)
        self.register_buffer("depth_var", torch.full((num_joints,), 0.1 ** 2))             # context z error², m²
        self.register_buffer("depth_hist", torch.ones(num_joints, depth_bins) / depth_bins)  # z histogram
        self.register_buffer("depth_edges", torch.linspace(-depth_range, depth_range, depth_bins + 1))

    # -- H_K and its mixture ------------------------------------------------------------------------------
    def _update_stats(self, xyz: torch.Tensor, target: torch.Tensor) -> None:
        with torch.no_grad():
            err = ((xyz[..., 2] - target[..., 2]) ** 2).mean(0)                  # (J,)
            self.depth_var.lerp_(err.to(self.depth_var.dtype), self.momentum)
            edges = self.depth_edges
            idx = torch.bucketize(target[..., 2].clamp(edges[0], edges[-1] - 1e-6), edges[1:-1])  # (B, J)
            counts = torch.zeros_like(self.depth_hist).scatter_add_(
                1, idx.T.long(), torch.ones_like(idx.T, dtype=self.depth_hist.dtype))
            self.depth_hist.lerp_(counts / counts.sum(-1, keepdim=True), self.momentum)

    def _mixture(self, keypoints_2d, uncertainty, like: torch.Tensor) -> torch.Tensor:
        """The centre frame's per-joint 2D mixture (B, J, K, 5); one component at the observation when none."""
        if uncertainty is not None:
            return uncertainty[:, uncertainty.shape[1] // 2].to(like.dtype)     # (B, J, K, 5)
        uv = keypoints_2d[:, keypoints_2d.shape[1] // 2].to(like.dtype)
        return torch.cat([torch.ones_like(uv[..., :1]), uv, torch.full_like(uv, self.sigma_2d)], -1)[:, :, None]

    def _components(self, mix: torch.Tensor, count: int, generator=None) -> torch.Tensor:
        """``count`` draws of one component per joint by π: (B, count, J, 5) of the chosen components."""
        b, j, k, _ = mix.shape
        weights = mix[..., 0].clamp_min(0).reshape(b * j, k) + 1e-12
        comp = multinomial(weights, count, generator, replacement=True).reshape(b, j, count)
        comp = comp.permute(0, 2, 1)                                             # (B, S, J)
        return torch.gather(mix[:, None].expand(b, count, j, k, 5), 3,
                            comp[..., None, None].expand(b, count, j, 1, 5))[..., 0, :]

    def drawn_observations(self, keypoints_2d, uncertainty, count: int, generator=None) -> torch.Tensor:
        """``test_start="point"``'s 2D, as the released code sees it at test: per joint the μ of one component of
        the mixture drawn by π, ``count`` draws per pose: (B·count, T, J, 2), the centre frame replaced."""
        mix = self._mixture(keypoints_2d, uncertainty, keypoints_2d)             # (B, J, K, 5)
        chosen = self._components(mix, count, generator)                         # (B, S, J, 5)
        kp = keypoints_2d.repeat_interleave(count, 0).clone()                    # (B·S, T, J, 2)
        kp[:, kp.shape[1] // 2] = chosen[..., 1:3].reshape(-1, chosen.shape[2], 2)
        return kp

    def h_k_samples(self, keypoints_2d, uncertainty, xyz, count: int, generator=None) -> torch.Tensor:
        """``count`` draws of H_K per pose: (B, count, J, 3) metres (J × 5 with the 2D for ``state="uvxyz"``)."""
        b, j = xyz.shape[:2]
        dev, dt = xyz.device, xyz.dtype
        uv_obs = _mean_2d(keypoints_2d, uncertainty)                             # (B, J, 2)
        chosen = self._components(self._mixture(keypoints_2d, uncertainty, xyz), count, generator)  # (B, S, J, 5)
        noise = randn((b, count, j, 3), generator, dev, dt)
        uv = chosen[..., 1:3] + chosen[..., 3:5] * noise[..., :2]                # (B, S, J, 2)
        s = weak_perspective_scale(uv_obs, xyz)                                  # (B,)
        xy = s[:, None, None, None] * (uv - uv_obs[:, None, :1])                 # (B, S, J, 2) metres
        if self.depth == "context":
            z = xyz[:, None, :, 2] + self.depth_var.sqrt().to(dt) * noise[..., 2]  # (B, S, J)
        else:
            hist = self.depth_hist.to(dt).clamp_min(1e-12)                       # (J, bins)
            bins = multinomial(hist.repeat(b * count, 1), 1, generator, replacement=True).reshape(b, count, j)
            lo, hi = self.depth_edges[bins].to(dt), self.depth_edges[bins + 1].to(dt)
            z = lo + (hi - lo) * rand((b, count, j), generator, dev, dt)
        draws = torch.cat([xy, z[..., None]], -1)                                # (B, S, J, 3)
        return torch.cat([uv, draws], -1) if self.state == "uvxyz" else draws

    def fit_gmm(self, keypoints_2d, uncertainty, xyz, generator=None) -> GaussianMixture:
        """The per-pose mixture of Eq. 6, fitted to draws of H_K: batch shape (B,), dimension J × D."""
        draws = self.h_k_samples(keypoints_2d, uncertainty, xyz.detach(), self.gmm_samples, generator)
        b = draws.shape[0]
        return GaussianMixture.fit_batched(draws.reshape(b, self.gmm_samples, -1), self.num_components,
                                           iterations=self.em_iterations, reg_covar=REG_COVAR,
                                           block=self.dims if self.covariance == "joint" else None,
                                           generator=generator, dtype=torch.float32)

    def _context(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.context_input else torch.zeros_like(features)

    def state_point(self, keypoints_2d, uncertainty, xyz: torch.Tensor) -> torch.Tensor:
        """A pose (B, J, 3) in the diffused state (B, J, D): itself, or after the 2D it was seen as
        (``state="uvxyz"``: the observation, or its mixture's mean)."""
        if self.state == "xyz":
            return xyz
        return torch.cat([_mean_2d(keypoints_2d, uncertainty).to(xyz.dtype), xyz], -1)

    def _timesteps(self, b: int, generator=None) -> torch.Tensor:
        num_t = self.scheduler.config.num_train_timesteps
        dev = self.depth_var.device
        if self.train_timesteps == "antithetic":                                # t and K−1−t in pairs
            t = randint(num_t, (b // 2 + 1,), generator, dev)
            return torch.cat([t, num_t - 1 - t])[:b]
        return randint(num_t, (b,), generator, dev)

    # -- training and sampling ----------------------------------------------------------------------------
    def loss(self, features, xyz, keypoints_2d, uncertainty, target, generator=None) -> dict:
        if self.training:
            self._update_stats(xyz.detach(), target)
        b, j = target.shape[:2]
        t = self._timesteps(b, generator).to(target.device)                     # k - 1 ∈ [0, K)
        if not self.diffusion:                                                   # the control: x_t a fresh GMM draw
            t = torch.full_like(t, self.scheduler.config.num_train_timesteps - 1)
        abar = self.scheduler.alphas_cumprod.to(target.device, torch.float64)
        if self.noise == "per_joint":                                           # the released code's
            chosen = self._components(self._mixture(keypoints_2d, uncertainty, target), 1, generator)[:, 0]
            x0 = torch.cat([chosen[..., 1:3], target], -1)                       # (B, J, 5): μ_uv of a component
            scale = torch.cat([chosen[..., 3:5], torch.ones_like(target)], -1)   # σ_uv as a std, 1 on xyz
            eps = randn((b, j, 5), generator, target.device, target.dtype) * scale
            a = abar[t].to(target.dtype)[:, None, None]
            h_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        else:
            x0 = self.state_point(keypoints_2d, uncertainty, target)
            gmm = self.fit_gmm(keypoints_2d, uncertainty, xyz, generator)
            process = GMMForwardProcess(gmm, self.scheduler)
            if self.diffusion:
                comps = gmm.draw_components(b, generator)
                eps = process.component_noise(comps, x0, generator)             # ε^G (B, J, D)
                h_t, _ = process.q_sample(x0, t, components=comps, noise=eps)    # Eq. 7
            else:                                                                # the control: x_0 unseen
                h_t, _ = process.prior_sample(x0, generator)                      # a draw of the GMM
        pred = self.denoiser(h_t.to(features.dtype), t, self._context(features))  # (B, J, D)
        if self.loss_kind == "epsilon":                                          # summed over J × D, as released
            return {"pose": ((pred - eps) ** 2).sum((-1, -2)).mean()}
        sq = ((pred - x0) ** 2).sum(-1).mean(-1)                                 # (B,)
        if self.loss_kind == "step":                                             # Eq. 9 through the DDIM step
            a_t = abar[t]
            a_prev = torch.where(t > 0, abar[(t - 1).clamp_min(0)], torch.ones_like(a_t))
            c = a_prev.sqrt() - (1 - a_prev).sqrt() * a_t.sqrt() / (1 - a_t).sqrt()
            sq = sq * (c ** 2).to(sq.dtype)
        return {"pose": sq.mean()}

    def _ddim(self, model_fn, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM over the explicit ``timesteps`` in the centred variable u = x − μ (ᾱ after 0: 1)."""
        from ..diffusion.schedulers import ddim_sample

        def centred(u, t):
            out = model_fn(u + mu, t)
            return out if self.loss_kind == "epsilon" else out - mu

        return ddim_sample(centred, x - mu, self.scheduler, self.timesteps).x0 + mu

    def sample(self, features, xyz, keypoints_2d, uncertainty, hypotheses: int | None = None,
               steps: int | None = None, generator=None) -> torch.Tensor:
        """(B, H, J, 3): H hypotheses drawn from each pose's fitted GMM and denoised by DDIM in ``steps`` steps
        (or over the explicit ``timesteps``)."""
        h = int(hypotheses or self.hypotheses)
        n = int(steps or self.steps)
        b, j = xyz.shape[:2]
        feats = self._context(features).repeat_interleave(h, 0)                  # (B·H, J, C)

        def model_fn(x_t, t):
            return _in_blocks(self.denoiser, x_t, t, feats)

        if self.test_start == "point":                                          # the released code: H_K's point
            x_k = self.state_point(keypoints_2d, uncertainty, xyz).repeat_interleave(h, 0)  # (B·H, J, D), no noise
            mu = torch.zeros_like(x_k)
            x0 = self._ddim(model_fn, x_k, mu) if self.timesteps else diffusion_sample(model_fn, x_k, self.scheduler,
                                                                                        n).x0
        else:
            gmm = self.fit_gmm(keypoints_2d, uncertainty, xyz, generator)
            rep = GaussianMixture(gmm.weights.repeat_interleave(h, 0), gmm.means.repeat_interleave(h, 0),
                                  gmm.covs.repeat_interleave(h, 0))             # batch B·H
            process = GMMForwardProcess(rep, self.scheduler)
            like = torch.zeros(b * h, j, self.dims, dtype=xyz.dtype, device=xyz.device)
            x_k, comps = process.prior_sample(like, generator)                   # draws of the GMM
            if not self.diffusion:                                               # the control: fresh draws each step
                t_last = self.scheduler.config.num_train_timesteps - 1

                def model_fn(x_t, t):
                    fresh, _ = process.prior_sample(like, generator)
                    return _in_blocks(self.denoiser, fresh.to(x_t), torch.full_like(t, t_last), feats)

            if self.timesteps:
                mu, _ = rep.component_params(comps)
                x0 = self._ddim(model_fn, x_k, mu.to(x_k.dtype).reshape(x_k.shape))
            else:
                x0 = process.sample(model_fn, x_k, comps, n).x0
        return x0.reshape(b, h, j, self.dims)[..., -3:]                          # xyz


class LiftingModel(nn.Module):
    """A context encoder (2D → f_ST and a 3D pose) and a head; see the module docstring.

    Args:
        context: :class:`~posediff.models.denoisers.graph.GraphLifter` (frames) or
            :class:`~posediff.models.temporal.TemporalLifter` (video).
        head: :class:`RegressionLiftingHead` or :class:`GMMDiffusionHead`; ``None``: the context encoder alone is
            the lifter (its own pose is the answer; it trains with ``freeze_context=False``).
        frames: T, the 2D window the context encoder reads.
        freeze_context: the context encoder is pretrained and frozen (the paper); when False its own loss
            ‖context pose − h_0‖² is added and it trains with the head.
    """

    def __init__(self, context: nn.Module, head: nn.Module, frames: int = 1, freeze_context: bool = True,
                 num_joints: int = 17):
        super().__init__()
        self.context, self.head = context, head
        self.frames, self.num_joints = int(frames), num_joints
        self.freeze_context = freeze_context
        if head is None and freeze_context:
            raise ValueError("LiftingModel: with no head the context encoder is the lifter; give "
                             "freeze_context=False")
        if freeze_context:
            self.context.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_context:
            self.context.eval()  # a frozen encoder keeps its inference behaviour (dropout off)
        return self

    def check_inputs(self, keypoints_2d: torch.Tensor, uncertainty: torch.Tensor | None = None) -> None:
        if not isinstance(keypoints_2d, torch.Tensor) or keypoints_2d.dim() != 4 \
                or tuple(keypoints_2d.shape[1:]) != (self.frames, self.num_joints, 2):
            shape = tuple(keypoints_2d.shape) if isinstance(keypoints_2d, torch.Tensor) else type(keypoints_2d)
            raise ValueError(f"LiftingModel: keypoints_2d has shape {shape}, expected (B, {self.frames}, "
                             f"{self.num_joints}, 2) screen-normalised 2D")
        if not torch.isfinite(keypoints_2d).all():
            where = tuple((~torch.isfinite(keypoints_2d)).nonzero()[0].tolist())
            raise ValueError(f"LiftingModel: keypoints_2d holds a non-finite value at index {where}")
        if uncertainty is not None:
            if uncertainty.dim() != 5 or tuple(uncertainty.shape[:3]) != tuple(keypoints_2d.shape[:3]) \
                    or uncertainty.shape[-1] != 5:
                raise ValueError(f"LiftingModel: uncertainty has shape {tuple(uncertainty.shape)}, expected "
                                 f"(B, {self.frames}, {self.num_joints}, K, 5) = [π, μu, μv, σu, σv]")
            if not torch.isfinite(uncertainty).all():
                raise ValueError("LiftingModel: uncertainty holds a non-finite value")

    def encode(self, keypoints_2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_ST (B, J, C) and the context's pose (B, J, 3), root-relative metres."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_context):
            features, xyz = self.context(keypoints_2d)
        return features, xyz - xyz[:, :1]

    def forward(self, keypoints_2d: torch.Tensor, target: torch.Tensor, uncertainty: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict:
        """Training losses for (B, T, J, 2) 2D and (B, J, 3) root-relative metres: ``{"loss", "pose", ...}``."""
        self.check_inputs(keypoints_2d, uncertainty)
        features, xyz = self.encode(keypoints_2d)
        losses = {} if self.head is None else self.head.loss(
            features, xyz.detach() if self.freeze_context else xyz, keypoints_2d, uncertainty, target, generator)
        if not self.freeze_context:
            losses["context"] = ((xyz - target) ** 2).sum(-1).mean()
        losses["loss"] = sum(losses.values())
        return losses

    @torch.no_grad()
    def predict(self, keypoints_2d: torch.Tensor, uncertainty: torch.Tensor | None = None,
                hypotheses: int | None = None, steps: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, H, J, 3) root-relative metres: the head's hypotheses (H = 1 for a deterministic head)."""
        self.check_inputs(keypoints_2d, uncertainty)
        if hypotheses is not None and int(hypotheses) < 1:
            raise ValueError(f"LiftingModel: hypotheses={hypotheses}, expected an integer >= 1")
        if steps is not None:
            if self.head is None or self.head.deterministic:
                raise ValueError("LiftingModel: steps= applies to a diffusion head; this model lifts in one pass")
            num_t = self.head.scheduler.config.num_train_timesteps
            if not 1 <= int(steps) <= num_t:
                raise ValueError(f"LiftingModel: steps={steps}, expected an integer in [1, {num_t}]")
            if self.head.timesteps is not None:
                raise ValueError(f"LiftingModel: steps={steps}, but this model samples at its explicit timesteps "
                                 f"{self.head.timesteps} (model.timesteps); give one or the other")
        if getattr(self.head, "test_start", None) == "point" and uncertainty is not None:
            # the released code: each hypothesis reads one component per joint drawn by π, in the context encoder
            # and as the start's 2D
            b, h = keypoints_2d.shape[0], int(hypotheses or self.head.hypotheses)
            drawn = self.head.drawn_observations(keypoints_2d, uncertainty, h, generator)  # (B·H, T, J, 2)
            features, xyz = self.encode(drawn)
            poses = self.head.sample(features, xyz, drawn, None, 1, steps, generator)     # (B·H, 1, J, 3)
            poses = poses.reshape(b, h, *poses.shape[2:])                                  # (B, H, J, 3)
        else:
            features, xyz = self.encode(keypoints_2d)
            if self.head is None:
                return xyz[:, None]                                              # (B, 1, J, 3)
            poses = self.head.sample(features, xyz, keypoints_2d, uncertainty, hypotheses, steps, generator)
        return poses - poses[..., :1, :]

    def lift(self, keypoints_2d, image_size, uncertainty=None, hypotheses: int | None = None,
             steps: int | None = None, return_hypotheses: bool = False, seed: int = 0,
             joints: str = "h36m17") -> torch.Tensor:
        """2D poses in pixels → 3D poses in millimetres.

        Args:
            keypoints_2d: (B, 17, 2) pixels in the H36M-17 joint order (or (B, T, 17, 2) for a video model), or in
                the COCO-17 order with ``joints="coco17"`` (converted by :func:`posediff.skeletons.coco17_to_h36m17`).
            image_size: (w, h) of the image the pixels are in.
            uncertainty: optional (B, 17, K, 5) [π, μu, μv, σu, σv] per joint in pixels (or (B, T, 17, K, 5)).
            hypotheses, steps: the diffusion head's N and DDIM steps (defaults: the recipe's).
            return_hypotheses: return every hypothesis (B, H, 17, 3) instead of their mean (B, 17, 3).
            seed: the random source of the hypotheses.
            joints: the order of ``keypoints_2d``'s joints: ``"h36m17"`` or ``"coco17"``.

        Returns:
            root-relative camera-frame millimetres, pelvis at 0, in the H36M-17 order.
        """
        from ..data.h36m import normalize_screen
        from ..skeletons import coco17_to_h36m17

        if joints not in ("h36m17", "coco17"):
            raise ValueError(f"lift: joints={joints!r}, expected 'h36m17' (Human3.6M's 17 joints) or 'coco17' (COCO's, "
                             f"converted)")
        kp = torch.as_tensor(np.asarray(keypoints_2d, dtype=np.float64) if not isinstance(keypoints_2d, torch.Tensor)
                             else keypoints_2d.detach().cpu().double())
        if joints == "coco17":
            if uncertainty is not None:
                raise ValueError("lift: uncertainty is per H36M-17 joint; with joints='coco17' give none (convert the "
                                 "2D with posediff.skeletons.coco17_to_h36m17 and build its mixtures in that order)")
            if kp.shape[-2:] != (17, 2):
                raise ValueError(f"lift: keypoints_2d has shape {tuple(kp.shape)}, expected (B, 17, 2) pixels in the "
                                 f"COCO-17 order")
            kp = torch.as_tensor(coco17_to_h36m17(torch.cat([kp, torch.ones_like(kp[..., :1])], -1).numpy())[..., :2])
        try:
            w, h = (float(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"lift: image_size={image_size!r}, expected (width, height) in pixels") from None
        if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
            raise ValueError(f"lift: image_size={image_size!r}, expected a positive width and height")
        if kp.dim() == 3:
            kp = kp[:, None]                                                     # (B, 1, J, 2)
        if kp.dim() != 4 or kp.shape[-1] != 2 or kp.shape[-2] != self.num_joints:
            raise ValueError(f"lift: keypoints_2d has shape {tuple(kp.shape)}, expected (B, {self.num_joints}, 2) "
                             f"pixels in the H36M-17 joint order (hip, r-hip, r-knee, r-foot, l-hip, ..., r-wrist)")
        if kp.shape[1] == 1 and self.frames > 1:
            raise ValueError(f"lift: this model reads {self.frames} frames; give (B, {self.frames}, 17, 2)")
        if not torch.isfinite(kp).all():
            where = tuple((~torch.isfinite(kp)).nonzero()[0].tolist())
            raise ValueError(f"lift: keypoints_2d holds a non-finite value at index {where}")
        unc = None
        if uncertainty is not None:
            unc = torch.as_tensor(np.asarray(uncertainty, dtype=np.float64) if not isinstance(uncertainty, torch.Tensor)
                                  else uncertainty.detach().cpu().double())
            if unc.dim() == 4:
                unc = unc[:, None]
            if unc.dim() != 5 or unc.shape[-1] != 5 or tuple(unc.shape[:3]) != tuple(kp.shape[:3]):
                raise ValueError(f"lift: uncertainty has shape {tuple(unc.shape)}, expected (B, 17, K, 5) "
                                 f"[π, μu, μv, σu, σv] in pixels, matching keypoints_2d")
            if not torch.isfinite(unc).all():
                raise ValueError(f"lift: uncertainty holds a non-finite value at index "
                                 f"{tuple((~torch.isfinite(unc)).nonzero()[0].tolist())}")
            if (unc[..., 0] < 0).any() or (unc[..., 0].sum(-1) <= 0).any():
                raise ValueError("lift: uncertainty's weights π (field 0) must be >= 0 with a positive sum per joint")
            if (unc[..., 3:5] <= 0).any():
                raise ValueError("lift: uncertainty's σu, σv (fields 3, 4) must be positive pixels")
            unc = unc.clone()
            unc[..., 1:3] = torch.as_tensor(normalize_screen(unc[..., 1:3].numpy(), w, h))
            unc[..., 3:5] = unc[..., 3:5] * (2.0 / w)
        norm = torch.as_tensor(normalize_screen(kp.numpy(), w, h))
        dtype = next(self.parameters()).dtype
        device = next(self.parameters()).device
        gen = torch.Generator().manual_seed(int(seed))
        poses = self.predict(norm.to(device, dtype), None if unc is None else unc.to(device, dtype),
                             hypotheses=hypotheses, steps=steps, generator=gen) * 1000.0  # (B, H, J, 3) mm
        return poses if return_hypotheses else poses.mean(1)
