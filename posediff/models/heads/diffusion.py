"""DiffusionRegPose's head: poses denoised from noise by K-SA / K-CA and the keypoint decoder.

The N pose proposals are anchored to the N best persons of the human decoder (ED-Pose's human-to-keypoint
groups): proposal i's coordinates are those of person i's box, enlarged by ``frame_scale``, so that the
signal [-ζ, ζ] spans that frame and x_T ~ N(0, I) starts around the person rather than anywhere.

Training (Eq. 3-4, 9-12): each ground-truth pose (invisible joints completed by the Gaussian prior) goes
to the detected person whose box fits it best (Hungarian on box L1 - GIoU), is mapped to the signal in
that person's frame, and the remaining proposals are padded (Table 4); the N poses are noised at a
timestep t drawn uniformly per image; the head predicts x_0 from x_t, and the predictions are matched to
the ground truth like any set prediction.

Inference: N poses start as N(0, I) and are refined by DDIM (the foundation's ``sample`` loop) in
``sampling_steps`` steps. Image features, the detection tokens and the human-to-keypoint tokens are
computed once; only the denoiser and the keypoint decoder repeat per step. Predictions of all steps are
pooled and deduplicated by pose NMS (ensembling); optionally, proposals whose score falls below
``renewal_threshold`` are replaced by fresh noise between steps (pose renewal).

Anchors. ``anchor="box"`` (the paper): the keypoint decoder starts from the noisy pose itself and its tokens
are the denoiser's. ``anchor="regression"`` (a posediff option): ED-Pose's initial regression of each
person's pose is a Gaussian prior N(kp_0, s² I) on x_0 (s = ``prior_std`` in signal units, fixed); the
decoder starts from the posterior mean E[x_0 | x_t] (a Wiener filter: kp_0 at t = T, tending to x_t / √ᾱ when
s² ≫ 1 - ᾱ; kp_0 always when s = 0), and the denoiser's tokens are added to ED-Pose's human-to-keypoint
tokens through a zero-initialised projection, the only way x_t reaches the decoder when s = 0. Initialised
from an ED-Pose checkpoint, such a head predicts ED-Pose's poses before it has learnt anything; training
teaches the projection what x_t adds. In the paper's form a fresh denoiser must first learn to sample from
noise (AP 0 after the quick preset's 100 fine-tuning steps, docs/benchmarks.md).

Official-code behaviours, each a named option (see docs/recipes.md): ``train_timestep="zero"`` (t fixed
at 0 in training), ``time_split="official"`` on the denoiser, ``renewal=False`` (never renews),
``ensemble_drop_last=True`` (the last step left out of the ensemble).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ...diffusion import PADDING_STRATEGIES, SignalCodec, gaussian_posterior_mean, pad_poses, q_sample, sample
from ...diffusion.schedulers import Scheduler, check_scheduler
from ..keypoint_decoder import KeypointDecoder, PoseOutput
from .common import HumanToKeypoint, InitialKeypoints

__all__ = ["DiffusionKeypointHead", "TRAIN_TIMESTEPS", "ANCHORS"]

TRAIN_TIMESTEPS = ("uniform", "zero")
ANCHORS = ("box", "regression")


class Persons(NamedTuple):
    """What the head computes once per image, before any denoising pass (N proposals, one per person)."""

    hidden: torch.Tensor  # (B, N, D) human tokens
    boxes: torch.Tensor  # (B, N, 4) cx, cy, w, h
    logits: torch.Tensor  # (B, N) the human decoder's last-layer logits
    origin: torch.Tensor  # (B, N, 1, 2) frame origin
    size: torch.Tensor  # (B, N, 1, 2) frame size
    kp0: torch.Tensor | None  # (B, N, K, 2) ED-Pose's initial regression (anchor="regression")
    prior: torch.Tensor | None  # (B, N, K, 2) kp0 as a signal: the prior mean of x_0 (anchor="regression")


class DiffusionKeypointHead(nn.Module):
    """Args:
        denoiser: :class:`~posediff.models.denoisers.KeypointAttentionDenoiser` (K-SA, K-CA, time).
        scheduler: a diffusers scheduler from ``make_scheduler(..., prediction_type="sample")``.
        signal: the codec with the signal scale ζ (default ζ = 5).
        padding: ``"repeat" | "empty" | "noise" | "mean"`` (Table 4).
        sampling_steps: DDIM steps at inference.
        num_proposals: N, the number of noisy poses: one per each of the N best detected persons.
        decoder: the keypoint decoder (Eq. 8); by default 6 layers of the denoiser's width.
        completion: train on prior-completed poses (``keypoints_completed`` of the targets) when present.
        train_timestep: ``"uniform"`` (paper) or ``"zero"`` (official code).
        renewal, renewal_threshold: replace low-scoring proposals by noise between sampling steps.
        ensemble: pool the predictions of every step; ``ensemble_drop_last`` leaves the last one out.
        eta: DDIM stochasticity.
        frame_scale: each proposal's coordinates are those of its person's box enlarged by this factor.
        inference_proposals: at inference, sample poses for this many best persons only (default N). COCO's
            keypoint AP keeps at most 20 persons per image, so sampling 100 is mostly wasted work.
        anchor: ``"box"`` (paper) or ``"regression"`` (prior-anchored, see the module docstring).
        prior_std: s, the prior's standard deviation in signal units (``anchor="regression"``).
    """

    nms = True

    def __init__(self, denoiser, scheduler: Scheduler, signal: SignalCodec | None = None, padding: str = "empty",
                 sampling_steps: int = 4, num_proposals: int = 100, decoder: KeypointDecoder | None = None,
                 completion: bool = True, train_timestep: str = "uniform",
                 renewal: bool = True, renewal_threshold: float = 0.05, ensemble: bool = True,
                 ensemble_drop_last: bool = False, eta: float = 0.0, frame_scale: float = 1.25,
                 inference_proposals: int | None = None, anchor: str = "box", prior_std: float = 0.0):
        super().__init__()
        if anchor not in ANCHORS:
            raise ValueError(f"DiffusionKeypointHead: anchor must be one of {ANCHORS}, got {anchor!r}")
        if not prior_std >= 0:
            raise ValueError(f"DiffusionKeypointHead: prior_std must be >= 0, got {prior_std!r}")
        if anchor == "box" and prior_std != 0:
            raise ValueError(f"DiffusionKeypointHead: prior_std (got {prior_std!r}) applies to anchor='regression' "
                             "only; the paper's anchor='box' has no prior")
        if scheduler.config.prediction_type != "sample":
            raise ValueError("DiffusionKeypointHead: the scheduler's prediction_type must be 'sample' (the keypoint "
                             "decoder predicts x_0)")
        signal = signal or SignalCodec(5.0)
        check_scheduler(scheduler, signal_scale=signal.scale if scheduler.config.clip_sample else None)
        if train_timestep not in TRAIN_TIMESTEPS:
            raise ValueError(f"DiffusionKeypointHead: train_timestep must be one of {TRAIN_TIMESTEPS}, "
                             f"got {train_timestep!r}")
        if padding not in PADDING_STRATEGIES:
            raise ValueError(f"DiffusionKeypointHead: padding must be one of {PADDING_STRATEGIES}, got {padding!r}")
        total = scheduler.config.num_train_timesteps
        if not 1 <= sampling_steps <= total:
            raise ValueError(f"DiffusionKeypointHead: sampling_steps must lie in [1, num_train_timesteps={total}] "
                             f"(a sampler takes at most one step per training timestep), got {sampling_steps!r}")
        if num_proposals < 1 or (inference_proposals is not None and inference_proposals < 1):
            raise ValueError(f"DiffusionKeypointHead: num_proposals and inference_proposals must be >= 1, got "
                             f"{num_proposals!r} and {inference_proposals!r}")
        self.denoiser = denoiser
        self.decoder = decoder or KeypointDecoder(num_keypoints=denoiser.num_keypoints, dim=denoiser.dim)
        self.scheduler, self.signal, self.padding = scheduler, signal, padding
        self.sampling_steps, self.num_proposals = int(sampling_steps), int(num_proposals)
        self.completion, self.train_timestep = completion, train_timestep
        self.renewal, self.renewal_threshold = renewal, renewal_threshold
        self.ensemble, self.ensemble_drop_last, self.eta = ensemble, ensemble_drop_last, eta
        self.expand = HumanToKeypoint(denoiser.dim, denoiser.num_keypoints)
        self.frame_scale = float(frame_scale)
        self.inference_proposals = int(inference_proposals or num_proposals)
        self.anchor, self.prior_std = anchor, float(prior_std)
        if anchor == "regression":
            dim, k = denoiser.dim, denoiser.num_keypoints
            self.init_keypoints = InitialKeypoints(dim, k)  # ED-Pose's, the same weights
            self.inject = nn.Linear(dim, dim)  # the denoiser's tokens into ED-Pose's; zero: ignored at first
            nn.init.zeros_(self.inject.weight)
            nn.init.zeros_(self.inject.bias)

    # -- frames: each proposal lives in the (enlarged) box of one detected person --------------------------
    def _frames(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Person boxes (B, N, 4) cx, cy, w, h -> frame origin (B, N, 1, 2) and size (B, N, 1, 2)."""
        wh = (boxes[..., 2:] * self.frame_scale).clamp_min(0.02)
        return (boxes[..., :2] - wh / 2)[:, :, None], wh[:, :, None]

    def to_signal(self, keypoints: torch.Tensor, origin: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Normalised image keypoints (B, N, K, 2) -> signal in each proposal's frame (Eq. 4)."""
        return self.signal.encode((keypoints - origin) / size)

    def from_signal(self, x: torch.Tensor, origin: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Signal (B, N, K, 2) -> normalised image keypoints, clamped to the frame."""
        return origin + self.signal.decode(x) * size

    # -- one denoising pass ----------------------------------------------------------------------------
    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, persons: Persons, context: torch.Tensor,
                enc) -> PoseOutput:
        """x_t (B, N, K, 2) signal, t (B,) -> per-layer predictions of x_0 (normalised image keypoints)."""
        p = persons
        coords = self.from_signal(x_t, p.origin, p.size).clamp(1e-3, 1 - 1e-3)  # (B, N, K, 2) in the image
        kp_tokens, pose_tokens, cond = self.denoiser(coords, t, context)  # K-SA (Eq. 5), K-CA (Eq. 7)
        if self.anchor == "box":
            tokens = torch.cat([(pose_tokens + p.hidden)[:, :, None], kp_tokens], 2)  # (B, N, 1 + K, D)
            out, _ = self.decoder(tokens, coords, p.boxes, context[:, :, 0], enc, cond=cond)  # Eq. 8; context: persons
            return out
        start = gaussian_posterior_mean(self.scheduler, x_t, t, p.prior, self.prior_std)  # (B, N, K, 2) E[x_0 | x_t]
        start = self.from_signal(start, p.origin, p.size).clamp(1e-3, 1 - 1e-3)  # (B, N, K, 2) in the image
        tokens = context + self.inject(torch.cat([pose_tokens[:, :, None], kp_tokens], 2))  # (B, N, 1 + K, D)
        out, _ = self.decoder(tokens, start, p.boxes, p.hidden, enc, cond=cond)  # Eq. 8, context as ED-Pose's
        return out

    def _persons(self, humans, num: int | None = None) -> tuple[Persons, torch.Tensor]:
        """The N best persons (:class:`Persons`) and their human-to-keypoint tokens (B, N, 1 + K, D), the context."""
        hidden, boxes, h2k, logits = self.expand(humans, num or self.num_proposals)
        origin, size = self._frames(boxes)
        kp0 = prior = None
        if self.anchor == "regression":  # ED-Pose's initial regression, as RegressionKeypointHead
            kp0 = self.init_keypoints(hidden, boxes)  # (B, N, K, 2)
            prior = self.to_signal(kp0, origin, size)  # (B, N, K, 2) the prior mean, once for every sampling step
        return Persons(hidden, boxes, logits, origin, size, kp0, prior), h2k

    # -- training --------------------------------------------------------------------------------------
    def forward(self, humans, enc, targets) -> PoseOutput:
        persons, context = self._persons(humans)
        boxes, origin, size = persons.boxes, persons.origin, persons.size
        b, n, device = boxes.shape[0], boxes.shape[1], boxes.device
        use_completed = self.completion and targets.keypoints_completed is not None
        kps = targets.keypoints_completed if use_completed else targets.keypoints  # (B, M, K, 2) in [0, 1]
        x0 = []
        for i in range(b):
            # each ground-truth person goes to the detected person whose box fits it best; its pose, in that
            # person's frame, is that proposal's x_0; the other proposals are padded (Table 4)
            valid = targets.valid[i]
            rows, cols = _match_boxes(boxes[i], targets.boxes[i, valid])
            gt = self.to_signal(kps[i, valid][cols][None], origin[i, rows][None], size[i, rows][None])[0]
            gt = gt.clamp(-self.signal.scale, self.signal.scale)  # (M_i, K, 2), Eq. 4
            padded, is_real = pad_poses(gt, n, self.padding)
            order = torch.cat([rows, _complement(rows, n, device)])  # proposal of each padded row
            x = torch.empty_like(padded)
            x[order.to(device)] = padded
            x0.append(x)
        x0 = torch.stack(x0)  # (B, N, K, 2)
        num_train = self.scheduler.config.num_train_timesteps
        if self.train_timestep == "uniform":
            t = torch.randint(0, num_train, (b,), device=device)  # one t per image, uniform
        else:
            t = torch.zeros(b, dtype=torch.long, device=device)  # official code: t = 0
        x_t = q_sample(self.scheduler, x0, t, torch.randn_like(x0))  # Eq. 3-4
        out = self.denoise(x_t, t, persons, context, enc)
        if self.anchor == "box":
            return out
        return out.after(persons.logits, boxes, persons.kp0)  # the prior's mean is supervised, as ED-Pose's kp_0

    # -- inference -------------------------------------------------------------------------------------
    @property
    def max_sampling_steps(self) -> int:
        """The most sampling steps the scheduler can take: one per training timestep."""
        return int(self.scheduler.config.num_train_timesteps)

    @torch.no_grad()
    def predict(self, humans, enc, steps: int | None = None, generator: torch.Generator | None = None):
        """Sample poses; returns logits (B, M), boxes (B, M, 4), keypoints (B, M, K, 2), M = N x pooled steps."""
        steps = self.sampling_steps if steps is None else int(steps)  # checked by the model (check_steps)
        persons, context = self._persons(humans, self.inference_proposals)
        origin, size = persons.origin, persons.size
        b, n, k = persons.boxes.shape[0], persons.boxes.shape[1], self.denoiser.num_keypoints
        x_T = torch.randn((b, n, k, 2), generator=generator, device="cpu" if generator is None else generator.device)
        x_T = x_T.to(context.device, context.dtype)
        records = []

        def model_fn(x_t, t):
            out = self.denoise(x_t, t, persons, context, enc)
            records.append((out.logits[-1], out.boxes[-1], out.keypoints[-1]))
            return self.to_signal(out.keypoints[-1], origin, size)  # x_0 prediction in signal space

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


def _match_boxes(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hungarian assignment of ground-truth boxes (M, 4) to predicted boxes (N, 4), cost L1 - GIoU."""
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_convert, generalized_box_iou

    if len(gt) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=pred.device)
        return empty, empty
    with torch.no_grad():
        cost = torch.cdist(pred.float(), gt.float(), p=1) - generalized_box_iou(
            box_convert(pred.float(), "cxcywh", "xyxy"), box_convert(gt.float(), "cxcywh", "xyxy"))
        rows, cols = linear_sum_assignment(torch.nan_to_num(cost, nan=1e8).cpu().numpy())
    return (torch.as_tensor(rows, dtype=torch.long, device=pred.device),
            torch.as_tensor(cols, dtype=torch.long, device=pred.device))


def _complement(rows: torch.Tensor, n: int, device) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool, device=device)
    keep[rows] = False
    return keep.nonzero()[:, 0]
