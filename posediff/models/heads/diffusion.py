"""DiffusionRegPose's head: poses denoised from noise by K-SA / K-CA and the keypoint decoder.

Training (Eq. 3-4, 9-12): the ground-truth poses of an image (invisible joints completed by the Gaussian
prior), mapped to the signal [-ζ, ζ] and padded to N proposals, are noised at a timestep t drawn
uniformly per image; the head predicts x_0 from x_t, and the predictions are matched to the ground truth
like any set prediction.

Inference: N poses start as N(0, I) and are refined by DDIM (the foundation's ``sample`` loop) in
``sampling_steps`` steps. Image features, the detection tokens and the human-to-keypoint tokens are
computed once; only the denoiser and the keypoint decoder repeat per step. Predictions of all steps are
pooled and deduplicated by pose NMS (ensembling); optionally, proposals whose score falls below
``renewal_threshold`` are replaced by fresh noise between steps (pose renewal).

Official-code behaviours, each a named option (see docs/recipes.md): ``train_timestep="zero"`` (t fixed
at 0 in training), ``time_split="official"`` on the denoiser, ``renewal=False`` (never renews),
``ensemble_drop_last=True`` (the last step left out of the ensemble).
"""

from __future__ import annotations

import torch
from torch import nn

from ...diffusion import SignalCodec, pad_poses, q_sample, sample
from ...diffusion.schedulers import Scheduler, check_scheduler
from ..keypoint_decoder import KeypointDecoder, PoseOutput
from .common import HumanToKeypoint

__all__ = ["DiffusionKeypointHead", "TRAIN_TIMESTEPS"]

TRAIN_TIMESTEPS = ("uniform", "zero")


class DiffusionKeypointHead(nn.Module):
    """Args:
        denoiser: :class:`~posediff.models.denoisers.KeypointAttentionDenoiser` (K-SA, K-CA, time).
        scheduler: a diffusers scheduler from ``make_scheduler(..., prediction_type="sample")``.
        signal: the codec with the signal scale ζ (default ζ = 5).
        padding: ``"repeat" | "empty" | "noise" | "mean"`` (Table 4).
        sampling_steps: DDIM steps at inference.
        num_proposals: N, the number of noisy poses.
        decoder: the keypoint decoder (Eq. 8); by default 6 layers of the denoiser's width.
        num_group: detected persons whose human-to-keypoint tokens form the K-CA context (default N).
        completion: train on prior-completed poses (``keypoints_completed`` of the targets) when present.
        train_timestep: ``"uniform"`` (paper) or ``"zero"`` (official code).
        renewal, renewal_threshold: replace low-scoring proposals by noise between sampling steps.
        ensemble: pool the predictions of every step; ``ensemble_drop_last`` leaves the last one out.
        eta: DDIM stochasticity.
    """

    nms = True

    def __init__(self, denoiser, scheduler: Scheduler, signal: SignalCodec | None = None, padding: str = "empty",
                 sampling_steps: int = 4, num_proposals: int = 100, decoder: KeypointDecoder | None = None,
                 num_group: int | None = None, completion: bool = True, train_timestep: str = "uniform",
                 renewal: bool = True, renewal_threshold: float = 0.05, ensemble: bool = True,
                 ensemble_drop_last: bool = False, eta: float = 0.0):
        super().__init__()
        if scheduler.config.prediction_type != "sample":
            raise ValueError("DiffusionKeypointHead: the scheduler's prediction_type must be 'sample' (the keypoint "
                             "decoder predicts x_0)")
        signal = signal or SignalCodec(5.0)
        check_scheduler(scheduler, signal_scale=signal.scale if scheduler.config.clip_sample else None)
        if train_timestep not in TRAIN_TIMESTEPS:
            raise ValueError(f"DiffusionKeypointHead: train_timestep must be one of {TRAIN_TIMESTEPS}, "
                             f"got {train_timestep!r}")
        self.denoiser = denoiser
        self.decoder = decoder or KeypointDecoder(num_keypoints=denoiser.num_keypoints, dim=denoiser.dim)
        self.scheduler, self.signal, self.padding = scheduler, signal, padding
        self.sampling_steps, self.num_proposals = int(sampling_steps), int(num_proposals)
        self.num_group = int(num_group or num_proposals)
        self.completion, self.train_timestep = completion, train_timestep
        self.renewal, self.renewal_threshold = renewal, renewal_threshold
        self.ensemble, self.ensemble_drop_last, self.eta = ensemble, ensemble_drop_last, eta
        self.expand = HumanToKeypoint(denoiser.dim, denoiser.num_keypoints)

    # -- one denoising pass ----------------------------------------------------------------------------
    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, enc) -> PoseOutput:
        """x_t (B, N, K, 2) signal, t (B,) -> per-layer predictions of x_0 (normalised keypoints)."""
        coords = self.signal.decode(x_t).clamp(1e-3, 1 - 1e-3)  # (B, N, K, 2) in [0, 1]
        kp_tokens, pose_tokens, cond = self.denoiser(coords, t, context)  # K-SA (Eq. 5), K-CA (Eq. 7)
        lo, hi = coords.min(2).values, coords.max(2).values  # (B, N, 2)
        boxes = torch.cat([(lo + hi) / 2, (hi - lo).clamp_min(0.02) * 1.1], -1).clamp(1e-3, 1 - 1e-3)  # (B, N, 4)
        tokens = torch.cat([pose_tokens[:, :, None], kp_tokens], 2)  # (B, N, 1 + K, D)
        out, _ = self.decoder(tokens, coords, boxes, context, enc.memory, enc.padding_mask, enc.spatial_shapes,
                              enc.valid_ratios, cond=cond)  # Eq. 8
        return out

    def _context(self, humans) -> torch.Tensor:
        _, _, h2k = self.expand(humans, self.num_group)  # (B, N, 1 + K, D)
        return h2k.flatten(1, 2)  # (B, N (1 + K), D)

    # -- training --------------------------------------------------------------------------------------
    def forward(self, humans, enc, targets) -> PoseOutput:
        context = self._context(humans)
        b, device = context.shape[0], context.device
        use_completed = self.completion and targets.keypoints_completed is not None
        kps = targets.keypoints_completed if use_completed else targets.keypoints  # (B, M, K, 2) in [0, 1]
        x0 = []
        for i in range(b):
            gt = self.signal.encode(kps[i, targets.valid[i]].clamp(0, 1))  # (M_i, K, 2), Eq. 4
            padded, _ = pad_poses(gt, self.num_proposals, self.padding)
            x0.append(padded)
        x0 = torch.stack(x0)  # (B, N, K, 2)
        num_train = self.scheduler.config.num_train_timesteps
        if self.train_timestep == "uniform":
            t = torch.randint(0, num_train, (b,), device=device)  # one t per image, uniform
        else:
            t = torch.zeros(b, dtype=torch.long, device=device)  # official code: t = 0
        x_t = q_sample(self.scheduler, x0, t, torch.randn_like(x0))  # Eq. 3-4
        return self.denoise(x_t, t, context, enc)

    # -- inference -------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, humans, enc, steps: int | None = None, generator: torch.Generator | None = None):
        """Sample poses; returns logits (B, M), boxes (B, M, 4), keypoints (B, M, K, 2), M = N x pooled steps."""
        steps = int(steps or self.sampling_steps)
        context = self._context(humans)
        b, k = context.shape[0], self.denoiser.num_keypoints
        shape = (b, self.num_proposals, k, 2)
        x_T = torch.randn(shape, generator=generator, device="cpu" if generator is None else generator.device)
        x_T = x_T.to(context.device, context.dtype)
        records = []

        def model_fn(x_t, t):
            out = self.denoise(x_t, t, context, enc)
            records.append((out.logits[-1], out.boxes[-1], out.keypoints[-1]))
            return self.signal.encode(out.keypoints[-1])  # x_0 prediction in signal space

        def renew(i, t, x_next, x0_pred):
            if not self.renewal or i == steps - 1:
                return None
            low = records[-1][0].sigmoid() < self.renewal_threshold  # (B, N)
            if not bool(low.any()):
                return None
            fresh = torch.randn(x_next.shape, generator=generator,
                                device="cpu" if generator is None else generator.device).to(x_next)
            return torch.where(low[..., None, None], fresh, x_next)

        sample(model_fn, x_T, self.scheduler, steps, eta=self.eta, generator=generator, callback=renew)
        pooled = records
        if self.ensemble:
            if self.ensemble_drop_last and len(records) > 1:
                pooled = records[:-1]
        else:
            pooled = records[-1:]
        logits = torch.cat([r[0] for r in pooled], 1)
        boxes = torch.cat([r[1] for r in pooled], 1)
        keypoints = torch.cat([r[2] for r in pooled], 1)
        return logits, boxes, keypoints
