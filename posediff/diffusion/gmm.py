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

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._random import multinomial, randint, randn
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

    @classmethod
    def fit_batched(cls, samples: torch.Tensor, num_components: int, iterations: int = 20,
                    reg_covar: float = 1e-6, block: int | None = None,
                    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> GaussianMixture:
        """One M-component mixture per row, fitted by EM (Eq. 6): samples (B, S, D) → a mixture of batch shape (B,).

        Batched in torch (in ``dtype``; the mixture is returned in float64), for the per-pose mixtures of
        DiffPose's H_K. ``block=None``: full D × D
        covariances (the paper's); ``block=k``: block-diagonal covariances of k × k blocks (per joint with
        k = 3), the maximum-likelihood fit within that family, returned as full matrices. Means start at M
        samples drawn by k-means++ seeding, covariances at the samples' covariance, weights equal;
        ``reg_covar`` is added to each covariance's diagonal.
        """
        x = torch.as_tensor(samples, dtype=dtype)
        if x.dim() != 3:
            raise ValueError(f"GaussianMixture.fit_batched: samples must have shape (B, S, D), got {tuple(x.shape)}")
        b, s, d = x.shape
        m = int(num_components)
        k = d if block is None else int(block)
        if s < m or k < 1 or d % k:
            raise ValueError(f"GaussianMixture.fit_batched: {s} samples of dimension {d} per row, {m} components, "
                             f"block {block}: expected at least {m} samples and a block that divides {d}")
        nb = d // k                                                             # blocks per vector
        dev = x.device
        eye = torch.eye(k, dtype=x.dtype, device=dev) * reg_covar
        rows = torch.arange(b, device=dev)
        # k-means++ seeding: each next mean drawn with probability ∝ squared distance to the nearest chosen one
        first = randint(s, (b,), generator, dev)
        means = [x[rows, first]]                                                # [(B, D)]
        dist = ((x - means[0][:, None]) ** 2).sum(-1)                           # (B, S)
        for _ in range(1, m):
            pick = multinomial(dist.float() + 1e-12, 1, generator)[:, 0]
            means.append(x[rows, pick])
            dist = torch.minimum(dist, ((x - means[-1][:, None]) ** 2).sum(-1))
        mu = torch.stack(means, 1)                                              # (B, M, D)
        xb = x.reshape(b, s, nb, k)                                             # (B, S, nb, k)
        centred = xb - xb.mean(1, keepdim=True)
        cov = torch.einsum("bsni,bsnj->bnij", centred, centred) / s + eye      # (B, nb, k, k)
        cov = cov[:, None].expand(b, m, nb, k, k).clone()                       # (B, M, nb, k, k)
        log_w = torch.full((b, m), -math.log(m), dtype=x.dtype, device=dev)     # (B, M)
        for _ in range(int(iterations)):
            # E step: log π_m + log N(x; μ_m, Σ_m) = ... - ½ (x - μ_m)ᵀ Σ_m⁻¹ (x - μ_m) - ½ log det Σ_m
            chol = torch.linalg.cholesky(cov)                                    # (B, M, nb, k, k)
            precision = torch.cholesky_inverse(chol)                             # (B, M, nb, k, k)
            diff = (x[:, None] - mu[:, :, None]).reshape(b, m, s, nb, k)         # (B, M, S, nb, k)
            pd = (diff.permute(0, 1, 3, 2, 4) @ precision).permute(0, 1, 3, 2, 4)  # (B, M, S, nb, k)
            maha = (pd * diff).sum((-1, -2))                                     # (B, M, S)
            logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum((-1, -2))  # (B, M)
            logp = log_w[..., None] - 0.5 * (maha + logdet[..., None] + d * math.log(2 * math.pi))  # (B, M, S)
            r = torch.softmax(logp, dim=1)                                       # (B, M, S) responsibilities
            # M step
            nk = r.sum(-1) + 1e-10                                               # (B, M)
            log_w = torch.log(nk / s)
            mu = (r @ x) / nk[..., None]                                         # (B, M, D)
            diff = (x[:, None] - mu[:, :, None]).reshape(b, m, s, nb, k).permute(0, 1, 3, 2, 4)  # (B, M, nb, S, k)
            weighted = diff * r[:, :, None, :, None]                             # (B, M, nb, S, k)
            cov = weighted.transpose(-1, -2) @ diff / nk[..., None, None, None] + eye  # (B, M, nb, k, k)
        full = torch.zeros(b, m, d, d, dtype=x.dtype, device=dev)
        for j in range(nb):
            full[..., j * k:(j + 1) * k, j * k:(j + 1) * k] = cov[:, :, j]
        w = torch.exp(log_w)
        return cls(w / w.sum(-1, keepdim=True), mu, full)

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
