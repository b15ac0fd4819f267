"""Gaussian mixtures and the GMM forward process of DiffPose (CVPR 2023, Eq. 6-7).

DiffPose starts the reverse process not from N(0, I) but from the pose's own uncertainty
distribution, a mixture φ_GMM(x) = Σ_m π_m N(x; μ_m, Σ_m) (Eq. 6) fitted to samples of it. The forward
process draws one component m per sample (with probability π_m) and moves x_0 towards it (Eq. 7):

    x_t = √ᾱ_t x_0 + (1 - √ᾱ_t) μ_m + √(1 - ᾱ_t) ε_m,   ε_m ~ N(0, Σ_m)

so x_t -> x_0 as ᾱ_t -> 1 and x_t -> μ_m + ε_m, a draw of the mixture, as ᾱ_t -> 0.

In the centred variable u = x - μ_m this is the ordinary forward process u_t = √ᾱ_t u_0 + √(1-ᾱ_t) ε_m,
so deterministic DDIM in u is exact: :meth:`GMMForwardProcess.sample` runs the shared
:func:`~posediff.diffusion.schedulers.sample` loop on u.

The official DiffPose code keeps one GMM per joint and per frame (from that frame's heatmaps), scales
the noise by the variance instead of its square root, and adds no noise at test time; the mixtures here
may be global (one for all samples) or per sample, over the whole flattened pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._random import randn
from .schedulers import ModelFn, SampleOutput, Scheduler, _as_timesteps, _expand_like
from .schedulers import sample as _sample

__all__ = ["GaussianMixture", "GMMForwardProcess"]


@dataclass
class GaussianMixture:
    """A Gaussian mixture over D-dimensional vectors, optionally one per sample.

    Attributes:
        weights: (M,) or (B, M) mixing weights π (each row sums to 1).
        means: (M, D) or (B, M, D) component means μ^G.
        covs: (M, D, D) or (B, M, D, D) component covariances Σ^G.
    """

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor

    def __post_init__(self):
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.covs = torch.as_tensor(self.covs, dtype=torch.float64)
        w, mu, cov = self.weights, self.means, self.covs
        if w.dim() not in (1, 2):
            raise ValueError(f"GaussianMixture: weights must be (M,) or (B, M), got {tuple(w.shape)}")
        if mu.shape[:-1] != w.shape:
            raise ValueError(f"GaussianMixture: means must have shape {tuple(w.shape)} + (D,), "
                             f"got {tuple(mu.shape)}")
        d = mu.shape[-1]
        if cov.shape != mu.shape + (d,):
            raise ValueError(f"GaussianMixture: covs must have shape {tuple(mu.shape) + (d,)}, got {tuple(cov.shape)}")
        if bool((w < 0).any()) or not bool(((w.sum(-1) - 1.0).abs() < 1e-6).all()):
            raise ValueError("GaussianMixture: weights must be non-negative and sum to 1")
        self._chol = torch.linalg.cholesky(cov)  # raises if a covariance is not positive definite

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def num_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[:-1])

    @classmethod
    def fit(cls, samples, num_components: int, seed: int = 0, reg_covar: float = 1e-6,
            max_iter: int = 200) -> GaussianMixture:
        """Fit an M-component full-covariance mixture to samples (S, D) by EM (scikit-learn)."""
        from sklearn.mixture import GaussianMixture as _SkGMM

        x = np.asarray(samples.detach().cpu() if isinstance(samples, torch.Tensor) else samples, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"GaussianMixture.fit: samples must have shape (S, D), got {x.shape}")
        if x.shape[0] < num_components:
            raise ValueError(f"GaussianMixture.fit: {x.shape[0]} samples cannot fit {num_components} components")
        sk = _SkGMM(n_components=num_components, covariance_type="full", random_state=seed,
                    reg_covar=reg_covar, max_iter=max_iter).fit(x)
        return cls(sk.weights_ / sk.weights_.sum(), sk.means_, sk.covariances_)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture mean (..., D) and covariance (..., D, D): Σ π (Σ_m + μ_m μ_mᵀ) - μ μᵀ."""
        w = self.weights[..., None]  # (..., M, 1)
        mean = (w * self.means).sum(-2)  # (..., D)
        outer = self.means[..., :, None] * self.means[..., None, :]  # (..., M, D, D): μ_m μ_mᵀ
        second = (self.weights[..., None, None] * (self.covs + outer)).sum(-3)  # (..., D, D)
        return mean, second - mean[..., :, None] * mean[..., None, :]

    def _per_sample(self, batch: int):
        if self.batch_shape == ():
            return (self.weights.expand(batch, -1), self.means.expand(batch, -1, -1),
                    self._chol.expand(batch, -1, -1, -1))
        if self.batch_shape != (batch,):
            raise ValueError(f"GaussianMixture has batch shape {self.batch_shape}, but the data has batch {batch}")
        return self.weights, self.means, self._chol

    def draw_components(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) component indices, m ~ Categorical(π)."""
        w, _, _ = self._per_sample(batch)
        gen_device = generator.device if generator is not None else "cpu"
        return torch.multinomial(w.to(gen_device), 1, generator=generator).reshape(batch).cpu()

    def component_params(self, components: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means (B, D) and Cholesky factors (B, D, D) of the chosen components."""
        b = components.shape[0]
        _, mu, chol = self._per_sample(b)
        idx = torch.arange(b)
        comp = components.cpu().long()
        return mu[idx, comp], chol[idx, comp]


class GMMForwardProcess:
    """DiffPose's forward process with a Gaussian-mixture endpoint (Eq. 7), for tensors (B, ...).

    Args:
        gmm: the mixture; its dimension D must equal the number of elements of one sample.
        scheduler: gives ᾱ_t (any diffusers scheduler made by ``make_scheduler``).
    """

    def __init__(self, gmm: GaussianMixture, scheduler: Scheduler):
        self.gmm = gmm
        self.scheduler = scheduler

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x[0].numel() != self.gmm.dim:
            raise ValueError(f"GMMForwardProcess: each sample must hold D={self.gmm.dim} elements, got a tensor "
                             f"of shape {tuple(x.shape)}")

    def component_noise(self, components: torch.Tensor, like: torch.Tensor,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """ε_m ~ N(0, Σ_m) per sample, shaped like ``like`` (B, ...)."""
        self._check(like)
        _, chol = self.gmm.component_params(components)  # (B, D, D)
        z = randn((like.shape[0], self.gmm.dim), generator, like.device, torch.float64)  # (B, D)
        eps = (chol.to(like.device) @ z[..., None])[..., 0]  # (B, D): L z ~ N(0, Σ_m)
        return eps.to(like.dtype).reshape(like.shape)

    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | int,
        components: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 7 for x0 (B, ...) at timesteps t (B,); returns (x_t, components (B,)).

        ``noise`` is ε_m (already shaped by Σ_m); drawn when not given.
        """
        self._check(x0)
        b = x0.shape[0]
        if components is None:
            components = self.gmm.draw_components(b, generator)
        if noise is None:
            noise = self.component_noise(components, x0, generator)
        t = _as_timesteps(t, b, self.scheduler.config.num_train_timesteps).to(x0.device)
        mu, _ = self.gmm.component_params(components)
        mu = mu.to(device=x0.device, dtype=x0.dtype).reshape(x0.shape)  # (B, ...)
        abar = _expand_like(self.scheduler.alphas_cumprod.to(x0.device, x0.dtype)[t], x0)  # (B, 1, ...)
        x_t = abar.sqrt() * x0 + (1.0 - abar.sqrt()) * mu + (1.0 - abar).sqrt() * noise  # Eq. 7
        return x_t, components

    def prior_sample(self, like: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_T = μ_m + ε_m, a draw of the mixture shaped like ``like`` (B, ...); returns (x_T, components)."""
        self._check(like)
        components = self.gmm.draw_components(like.shape[0], generator)
        mu, _ = self.gmm.component_params(components)
        eps = self.component_noise(components, like, generator)
        return mu.to(like.device, like.dtype).reshape(like.shape) + eps, components

    def sample(
        self,
        model_fn: ModelFn,
        x_T: torch.Tensor,
        components: torch.Tensor,
        num_steps: int,
    ) -> SampleOutput:
        """Deterministic DDIM from x_T towards x_0 under the GMM forward process.

        The scheduler clips its x_0 prediction in the centred variable x_0 - μ_m: give it
        ``clip_sample=False`` or a ``clip_sample_range`` that covers that spread.

        ``model_fn(x_t, t)`` sees x_t in the original (un-centred) space and returns the scheduler's
        prediction type: x_0, or the component noise ε_m for ``"epsilon"``.
        """
        self._check(x_T)
        mu, _ = self.gmm.component_params(components)
        mu = mu.to(x_T.device, x_T.dtype).reshape(x_T.shape)  # (B, ...)
        predicts_x0 = self.scheduler.config.prediction_type == "sample"

        def centred_fn(u_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = model_fn(u_t + mu, t)
            return out - mu if predicts_x0 else out  # u_0 = x_0 - μ_m; ε_m is unchanged by centring

        out = _sample(centred_fn, x_T - mu, self.scheduler, num_steps, eta=0.0)
        return SampleOutput(x0=out.x0 + mu, x0_per_step=out.x0_per_step + mu, timesteps=out.timesteps)
