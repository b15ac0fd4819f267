"""Noise schedules, the forward process and a shape-agnostic reverse loop.

The schedule and the single DDIM / DDPM update come from diffusers; the loop is ours, so that the
same code samples (B, N, K, 2) poses, (B, J, 3) 3D poses and (B, K, H, W) heatmaps.

Notation (DDPM / DDIM papers, as in DiffusionRegPose Eq. 3-4):
    ᾱ_t = Π_{s<=t} (1 - β_s)                      (``scheduler.alphas_cumprod[t]``)
    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,  ε ~ N(0, I)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler

__all__ = ["make_scheduler", "check_scheduler", "q_sample", "gaussian_posterior_mean", "sample", "SampleOutput",
           "Scheduler", "ddim_sample", "trailing_timesteps"]

Scheduler = DDIMScheduler | DDPMScheduler
_KINDS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}
_PREDICTION_TYPES = ("sample", "epsilon")


def make_scheduler(
    kind: str = "ddim",
    num_train_timesteps: int = 1000,
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "sample",
    signal_scale: float = 1.0,
    **overrides,
) -> Scheduler:
    """A diffusers DDIM or DDPM scheduler configured for a signal in [-signal_scale, signal_scale].

    Defaults avoid the pitfalls seen in peers: ``timestep_spacing="trailing"`` (so one sampling step
    starts at t = T - 1 rather than evaluating t = 0 only), ``clip_sample_range = signal_scale`` and no
    ``thresholding``. Any other diffusers config key may be given in ``overrides``; a combination that
    hits a known pitfall is refused with a ``ValueError`` (see :func:`check_scheduler`).
    """
    if kind not in _KINDS:
        raise ValueError(f"make_scheduler: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if prediction_type not in _PREDICTION_TYPES:
        raise ValueError(f"make_scheduler: prediction_type must be one of {_PREDICTION_TYPES}, "
                         f"got {prediction_type!r}")
    if not signal_scale > 0:
        raise ValueError(f"make_scheduler: signal_scale must be > 0, got {signal_scale!r}")
    config = dict(
        num_train_timesteps=int(num_train_timesteps),
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=True,
        clip_sample_range=float(signal_scale),
        thresholding=False,
        timestep_spacing="trailing",
    )
    if kind == "ddim":
        config["set_alpha_to_one"] = True  # the last DDIM step lands exactly on x_0
    config.update(overrides)
    scheduler = _KINDS[kind](**config)
    check_scheduler(scheduler, signal_scale=signal_scale)
    return scheduler


def check_scheduler(scheduler: Scheduler, signal_scale: float | None = None) -> None:
    """Refuse the known scheduler pitfalls with a ``ValueError`` that names the config field.

    * a ``timestep_spacing`` under which a one-step sampler evaluates t = 0 only (``"leading"`` and
      ``"linspace"`` both do in diffusers);
    * ``clip_sample`` with ``clip_sample_range`` != the signal scale (the prediction would be clipped
      to the wrong box);
    * ``thresholding`` with a signal scale other than 1 (dynamic thresholding assumes [-1, 1]).
    """
    if not isinstance(scheduler, (DDIMScheduler, DDPMScheduler)):
        raise TypeError(f"expected a diffusers DDIMScheduler or DDPMScheduler, got {type(scheduler).__name__}")
    cfg = scheduler.config
    probe = type(scheduler).from_config(cfg)
    probe.set_timesteps(1)
    last = cfg.num_train_timesteps - 1
    if int(probe.timesteps[0]) != last:
        raise ValueError(
            f"scheduler config field timestep_spacing={cfg.timestep_spacing!r} makes a one-step sampler "
            f"evaluate t={int(probe.timesteps[0])} instead of t={last}; use timestep_spacing='trailing'")
    if signal_scale is not None:
        if cfg.clip_sample and abs(cfg.clip_sample_range - signal_scale) > 1e-12:
            raise ValueError(f"scheduler config field clip_sample_range={cfg.clip_sample_range} must equal "
                             f"the signal scale {signal_scale}")
        if cfg.thresholding and abs(signal_scale - 1.0) > 1e-12:
            raise ValueError(f"scheduler config field thresholding=True assumes a signal in [-1, 1], but "
                             f"the signal scale is {signal_scale}; set thresholding=False")


def _expand_like(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) broadcastable against x (B, ...)."""
    return values.reshape(values.shape + (1,) * (x.dim() - 1))


def _as_timesteps(t: torch.Tensor | int, batch: int, num_train_timesteps: int) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},) (one timestep per sample), "
                         f"got shape {tuple(t.shape)}")
    if t.is_floating_point():
        raise TypeError(f"t must hold integer timesteps, got dtype {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_train_timesteps):
        raise ValueError(f"t must lie in [0, {num_train_timesteps}), got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    return t.long()


def q_sample(scheduler: Scheduler, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
    """Forward process, one timestep per sample, any shape.

    Args:
        scheduler: gives ᾱ (``alphas_cumprod``).
        x0: (B, ...) clean signal.
        t: (B,) integer timesteps (or one int for all).
        noise: ε, same shape as ``x0``.

    Returns:
        x_t, same shape and dtype as ``x0``.
    """
    if noise.shape != x0.shape:
        raise ValueError(f"q_sample: noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
    t = _as_timesteps(t, x0.shape[0], scheduler.config.num_train_timesteps).to(x0.device)
    abar = scheduler.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)[t]  # (B,)
    abar = _expand_like(abar, x0)  # (B, 1, ..., 1)
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise  # Eq. 3-4: x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε


def gaussian_posterior_mean(scheduler: Scheduler, x_t: torch.Tensor, t: torch.Tensor | int, mean: torch.Tensor,
                            std: float | torch.Tensor) -> torch.Tensor:
    """E[x_0 | x_t] when the prior is x_0 ~ N(μ, s² I) (a Wiener filter of the noisy sample).

    With x_t = √ᾱ x_0 + √(1-ᾱ) ε, x_0 and x_t are jointly Gaussian and
    E[x_0 | x_t] = μ + √ᾱ s² / (ᾱ s² + 1 - ᾱ) · (x_t - √ᾱ μ): the prior mean at t = T (ᾱ → 0), x_t itself as
    ᾱ → 1, and in between the noisy sample trusted as far as its noise allows.

    Args:
        scheduler: gives ᾱ (``alphas_cumprod``).
        x_t: (B, ...) noisy signal. t: (B,) integer timesteps (or one int for all).
        mean: μ, broadcastable against ``x_t``. std: s >= 0, a number or broadcastable against ``x_t``
            (s = 0: a point prior, E[x_0 | x_t] = μ).

    Returns:
        (B, ...) the posterior mean, shaped like ``x_t``.
    """
    work = torch.promote_types(x_t.dtype, torch.float32)  # in half precision ᾱ_0 rounds to 1: 0 / 0 when s = 0
    std = torch.as_tensor(std, dtype=work, device=x_t.device)
    if not bool((std >= 0).all()):
        raise ValueError(f"gaussian_posterior_mean: std must be >= 0 (and not NaN), got {std.min().item()}")
    mean = torch.as_tensor(mean, dtype=work, device=x_t.device)
    t = _as_timesteps(t, x_t.shape[0], scheduler.config.num_train_timesteps).to(x_t.device)
    abar = _expand_like(scheduler.alphas_cumprod.to(device=x_t.device, dtype=work)[t], x_t)  # (B, 1, ..., 1)
    var = std ** 2
    gain = abar.sqrt() * var / (abar * var + 1.0 - abar)  # (B, 1, ..., 1) or broadcast with std's shape
    return (mean + gain * (x_t.to(work) - abar.sqrt() * mean)).to(x_t.dtype)  # (B, ...)


@dataclass
class SampleOutput:
    """Result of :func:`sample`.

    Attributes:
        x0: (B, ...) the final sample.
        x0_per_step: (S, B, ...) the model's x_0 prediction at each of the S steps (for ensembling
            across steps and for trajectory plots); ``x0_per_step[-1]`` is the last prediction.
        timesteps: (S,) the timesteps that were evaluated, from T - 1 downwards.
    """

    x0: torch.Tensor
    x0_per_step: torch.Tensor
    timesteps: torch.Tensor


ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    scheduler: Scheduler,
    num_steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
) -> SampleOutput:
    """Reverse diffusion from ``x_T`` in ``num_steps`` steps, for a tensor of any shape.

    Args:
        model_fn: ``model_fn(x_t, t) -> prediction``; ``x_t`` has the shape of ``x_T``, ``t`` is a
            LongTensor (B,), and the prediction is of the scheduler's ``prediction_type``
            (x_0 for ``"sample"``, ε for ``"epsilon"``), shaped like ``x_t``.
        x_T: (B, ...) the starting noise (or a GMM draw, see :mod:`posediff.diffusion.gmm`).
        scheduler: a DDIM or DDPM scheduler; it is not modified (a copy holds the inference steps).
        num_steps: number of model evaluations; the first is always at t = T - 1.
        eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like); ignored by DDPM.
        generator: random source for the stochastic parts (DDIM with eta > 0, DDPM).
        callback: ``callback(step, t, x_next, x0_pred)`` after each step; a tensor it returns replaces
            ``x_next`` (e.g. DiffusionDet-style renewal of low-scoring proposals).

    Returns:
        :class:`SampleOutput` with the final ``x0`` and one x_0 prediction per step.
    """
    if int(num_steps) < 1:
        raise ValueError(f"sample: num_steps must be >= 1, got {num_steps}")
    if x_T.dim() < 1 or x_T.shape[0] < 1:
        raise ValueError(f"sample: x_T must have a leading batch dimension, got shape {tuple(x_T.shape)}")
    check_scheduler(scheduler)
    sched = type(scheduler).from_config(scheduler.config)  # private copy: set_timesteps mutates state
    num_train = sched.config.num_train_timesteps
    if num_steps > num_train:
        raise ValueError(f"sample: num_steps={num_steps} exceeds num_train_timesteps={num_train}")
    sched.set_timesteps(int(num_steps))
    # diffusers keeps the schedule in float32, where 1 - ᾱ_{T-1} (ᾱ ≈ 2e-9 for the cosine schedule) rounds
    # to 1 and an ε-prediction's x_0 = (x_t - √(1-ᾱ) ε) / √ᾱ loses four digits. The same ᾱ values held in
    # float64 make float64 sampling exact; the 0-dim factors do not change a float32 sample's dtype.
    for name in ("betas", "alphas", "alphas_cumprod"):
        setattr(sched, name, getattr(sched, name).to(torch.float64))
    is_ddim = isinstance(sched, DDIMScheduler)

    x = x_T
    preds = []
    batch = x_T.shape[0]
    for i, t in enumerate(sched.timesteps):
        t_batch = torch.full((batch,), int(t), dtype=torch.long, device=x.device)  # (B,)
        model_out = model_fn(x, t_batch)
        if model_out.shape != x.shape:
            raise ValueError(f"sample: model_fn returned shape {tuple(model_out.shape)}, expected "
                             f"{tuple(x.shape)} (the shape of x_t)")
        if is_ddim:
            step = sched.step(model_out, int(t), x, eta=eta, generator=generator)
        else:
            step = sched.step(model_out, int(t), x, generator=generator)
        x = step.prev_sample  # x_{t'} at the next (smaller) timestep; x_0 after the last step
        preds.append(step.pred_original_sample)
        if callback is not None:
            replaced = callback(i, int(t), x, step.pred_original_sample)
            if replaced is not None:
                if replaced.shape != x.shape:
                    raise ValueError(f"sample: callback returned shape {tuple(replaced.shape)}, "
                                     f"expected {tuple(x.shape)}")
                x = replaced
    return SampleOutput(x0=x, x0_per_step=torch.stack(preds), timesteps=sched.timesteps.clone())


def trailing_timesteps(start: int, num_steps: int) -> list[int]:
    """``num_steps`` timesteps from ``start`` down, spaced as diffusers' ``"trailing"`` spacing spaces them from
    T - 1 (``trailing_timesteps(T - 1, n)`` is ``set_timesteps(n)``'s list)."""
    if not 1 <= int(num_steps) <= int(start) + 1:
        raise ValueError(f"trailing_timesteps: num_steps must be in [1, start + 1 = {int(start) + 1}], got {num_steps}")
    ratio = (int(start) + 1) / int(num_steps)
    return [int(round(int(start) + 1 - i * ratio)) - 1 for i in range(int(num_steps))]


def ddim_sample(model_fn: ModelFn, x_t: torch.Tensor, scheduler: Scheduler, timesteps,
                eta: float = 0.0) -> SampleOutput:
    """Deterministic DDIM (η = 0) over explicit descending ``timesteps``, for a tensor of any shape: the steps
    :func:`sample` takes from T - 1, from any timestep (a start noised from an estimate) or at any list, without
    its clipping of x̂_0 to the signal range.

    With x̂_0 the model's prediction at t (``"epsilon"``: x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t) and
    ε̂ = (x_t - √ᾱ_t x̂_0) / √(1-ᾱ_t), each step sets x_{t'} = √ᾱ_{t'} x̂_0 + √(1-ᾱ_{t'}) ε̂ (DDIM Eq. 12, σ = 0),
    ᾱ = 1 after the last timestep, so the result is the last x̂_0. ``eta`` must be 0."""
    if eta != 0.0:
        raise ValueError("ddim_sample: only deterministic DDIM (eta=0) is offered over explicit timesteps")
    ts = [int(t) for t in timesteps]
    num_train = scheduler.config.num_train_timesteps
    if not ts or any(not 0 <= t < num_train for t in ts) or ts != sorted(set(ts), reverse=True):
        raise ValueError(f"ddim_sample: timesteps {list(timesteps)} must be distinct, descending, in [0, {num_train})")
    abar = scheduler.alphas_cumprod.to(x_t.device, torch.float64)
    epsilon = scheduler.config.prediction_type == "epsilon"
    x, preds = x_t, []
    for i, t in enumerate(ts):
        a_t = abar[t].to(x.dtype)
        out = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        if out.shape != x.shape:
            raise ValueError(f"ddim_sample: model_fn returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
        if epsilon:
            eps, x0 = out, (x - (1 - a_t).sqrt() * out) / a_t.sqrt()
        else:
            x0, eps = out, (x - a_t.sqrt() * out) / (1 - a_t).sqrt().clamp_min(1e-12)
        a_next = abar[ts[i + 1]].to(x.dtype) if i + 1 < len(ts) else torch.ones((), dtype=x.dtype, device=x.device)
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        preds.append(x0)
    return SampleOutput(x0=x, x0_per_step=torch.stack(preds), timesteps=torch.tensor(ts))
