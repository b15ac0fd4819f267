"""DiffusionRegPose's head (CVPR 2024, Sec. 3.2): candidate poses denoised from noise by K-SA / K-CA and ED-Pose's
keypoint decoder.

The paper's form (``anchor="paper"``, the default)
    * Candidates (Sec. 3.2.1). N_c candidate poses per image (``num_proposals``; the paper's N_i = 100) in the
      image's own frame: normalised image coordinates scaled to the signal [-ζ, ζ] (Eq. 4), so that a candidate
      is free to go to any person, several candidates to one, and one to a person the detector ranked low.
    * K-SA (Eq. 5): the K joints of each noisy candidate attend to one another, modulated by t.
    * K-CA (Eq. 7): queries from the noisy candidates, keys and values from the human-to-keypoint tokens F_H2K
      of the N best persons of the human decoder (Eq. 6). Joint k of a candidate attends to every person's joint-k
      token, keyed by where ED-Pose's initial regression put that joint; the pose token attends to the persons'
      human tokens. The attention selects: cKpts, cBox and a first score are the persons' initial keypoints,
      boxes and scores weighted by it, and the selected content is added to the candidate's tokens
      (:meth:`~posediff.models.denoisers.KeypointAttentionDenoiser.select`). The paper does not say how the N_c
      candidates relate to the detected persons. posediff gives candidate i a home, person i: a learnt bias
      (``home_bias``, from 4.0) on its attention logit, so that a candidate whose noisy pose says nothing (t near
      T) starts from its own person, as ED-Pose's group i does, and one whose noisy pose points at another person
      selects that person. Without it (``home_bias=None``) a near-pure-noise candidate starts from a blend of all
      persons: overfitting one batch of two scenes for 1000 steps, the head reached AP 0.06 free and 0.89 with the
      home bias (``benchmarks/overfit.py``, docs/recipes.md).
    * D (Eq. 8): ED-Pose's keypoint decoder refines (tokens, cKpts, cBox) layer by layer, conditioned on t, and
      scores each candidate.

    Training: the ground-truth poses (invisible joints completed by the prior, Eq. 9-12) are padded to N_c
    (``padding``) and put in a random order, noised at t ~ U{0, ..., T - 1} (Eq. 3-4); every layer's predictions,
    the coarse selection first, are matched to the ground truth as a set (Hungarian) and scored as ED-Pose's.
    Padding decides whether x_t alone can tell a candidate with a target from a padded one, which the score would
    then learn instead of the image. The default, ``"repeat_batch"`` (a posediff variant of the paper's "GT
    repeat", Table 4: 72.7 AP, as high as its default "empty"), pads with noisy copies of poses drawn uniformly
    from the whole batch's ground truth, in a random order, so padded and real candidates have one distribution:
    ‖x_t‖ or probes on x_t separate them with AUC at most 0.57 at the 4-step sampler's timesteps, against 0.75 for
    per-image "repeat" and 1.00 for "empty" (``benchmarks/padding_shortcut.py``, docs/recipes.md).

    Inference: x_T ~ N(0, I), then DDIM (``sample``) in ``sampling_steps`` steps; image features, detections and
    F_H2K are computed once, only the denoiser and the decoder repeat. ``ensemble`` decides what the steps give:
    ``"trajectory"`` (posediff's choice, the default): each candidate's pose from its last step, scored by the
    mean of its scores over the steps (the steps are pooled after rescoring, so more steps never multiply
    duplicates); ``"pool"``: every step's candidates pooled (DiffusionDet's ensemble, the official code's);
    ``"last"``: the last step's. Then pose NMS (the model's ``nms_threshold``). ``renewal`` replaces candidates
    scoring below ``renewal_threshold`` by fresh noise between steps (DiffusionDet's box renewal; a renewed
    candidate's score average starts again).

The diffusion-off control (``diffusion=False``): the same head, trained and sampled with x_t replaced by fresh
noise at t = T - 1 at every step, so that only the image decides. Against it, the bench measures what diffusion
adds beyond the extra parameters and the ensembling.

The regression anchor (``anchor="regression"``, a posediff option, the ``quick`` preset's): proposal i belongs to
person i, in that person's box enlarged by ``frame_scale``; ED-Pose's initial regression kp_0 of each person is a
Gaussian prior N(kp_0, s² I) on x_0 (s = ``prior_std``); the decoder starts from the posterior mean E[x_0 | x_t]
(kp_0 when s = 0) with ED-Pose's tokens, to which the denoiser's are added through a zero-initialised projection.
Initialised from an ED-Pose checkpoint it predicts ED-Pose's poses before it has learnt anything. Its padding
("empty") leaves the x_t shortcut open.

Official-code behaviours offered as options (``docs/recipes.md``): ``train_timestep="zero"`` (t = 0 in training),
``time_split="official"`` on the denoiser, ``ensemble="pool"`` with ``ensemble_drop_last=True``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ...diffusion import PADDING_STRATEGIES, SignalCodec, gaussian_posterior_mean, pad_poses, q_sample, sample
from ...diffusion.schedulers import Scheduler, check_scheduler, trailing_timesteps
from ..keypoint_decoder import KeypointDecoder, PoseOutput
from .common import HumanToKeypoint, InitialKeypoints

__all__ = ["DiffusionKeypointHead", "TRAIN_TIMESTEPS", "ANCHORS", "ENSEMBLES"]

TRAIN_TIMESTEPS = ("uniform", "sampling", "zero")
ANCHORS = ("paper", "regression")
ENSEMBLES = ("trajectory", "pool", "last")
PADDINGS = ("repeat_batch", *PADDING_STRATEGIES)


class Persons(NamedTuple):
    """What the head computes once per image, before any denoising pass (the N best persons)."""

    hidden: torch.Tensor  # (B, N, D) human tokens
    boxes: torch.Tensor  # (B, N, 4) cx, cy, w, h
    logits: torch.Tensor  # (B, N) the human decoder's last-layer logits
    h2k: torch.Tensor  # (B, N, 1 + K, D) human-to-keypoint tokens F_H2K (Eq. 6)
    kp0: torch.Tensor  # (B, N, K, 2) ED-Pose's initial regression
    origin: torch.Tensor | None  # (B, N, 1, 2) frame origin (anchor="regression")
    size: torch.Tensor | None  # (B, N, 1, 2) frame size (anchor="regression")
    prior: torch.Tensor | None  # (B, N, K, 2) kp0 as a signal: the prior mean of x_0 (anchor="regression")


class DiffusionKeypointHead(nn.Module):
    """Args:
        denoiser: :class:`~posediff.models.denoisers.KeypointAttentionDenoiser` (K-SA, K-CA, time), built with
            ``cross="select"`` for ``anchor="paper"`` and ``cross="own"`` for ``anchor="regression"``.
        scheduler: a diffusers scheduler from ``make_scheduler(..., prediction_type="sample")``.
        signal: the codec with the signal scale ζ (default ζ = 5).
        padding: ``"repeat_batch"`` (the default of ``anchor="paper"``, module docstring) or Table 4's ``"repeat" |
            "empty" | "noise" | "mean"`` (``"empty"``: the default of ``anchor="regression"``).
        sampling_steps: DDIM steps at inference.
        num_proposals: the paper's N_i: candidates per image (``anchor="paper"``; also the persons they select
            among) or proposals, one per person (``anchor="regression"``).
        decoder: the keypoint decoder (Eq. 8); by default 6 layers of the denoiser's width.
        completion: train on prior-completed poses (``keypoints_completed`` of the targets) when present.
        train_timestep: ``"uniform"``: t ~ U{0 .. T−1} (DiffusionDet's; the paper names no distribution),
            ``"sampling"``: one of the sampler's ``sampling_steps`` timesteps, uniformly (a posediff option), or
            ``"zero"`` (official code).
        renewal, renewal_threshold: replace low-scoring candidates by noise between sampling steps.
        ensemble: ``"trajectory" | "pool" | "last"`` (module docstring); ``ensemble_drop_last`` leaves the last
            step out of a ``"pool"``.
        eta: DDIM stochasticity.
        frame_scale: ``anchor="regression"``: each proposal's coordinates are those of its person's box enlarged
            by this factor.
        inference_proposals: candidates sampled at inference (default ``num_proposals``).
        anchor: ``"paper"`` or ``"regression"`` (module docstring).
        prior_std: s, the prior's standard deviation in signal units (``anchor="regression"``).
        diffusion: False: the diffusion-off control (module docstring).
    """

    nms = True

    def __init__(self, denoiser, scheduler: Scheduler, signal: SignalCodec | None = None, padding: str | None = None,
                 sampling_steps: int = 4, num_proposals: int = 100, decoder: KeypointDecoder | None = None,
                 completion: bool = True, train_timestep: str = "uniform",
                 renewal: bool = False, renewal_threshold: float = 0.05, ensemble: str = "trajectory",
                 ensemble_drop_last: bool = False, eta: float = 0.0, frame_scale: float = 1.25,
                 inference_proposals: int | None = None, anchor: str = "paper", prior_std: float = 0.0,
                 diffusion: bool = True):
        super().__init__()
        if anchor not in ANCHORS:
            raise ValueError(f"DiffusionKeypointHead: anchor must be one of {ANCHORS}, got {anchor!r}")
        wanted = "select" if anchor == "paper" else "own"
        if getattr(denoiser, "cross", wanted) != wanted:
            raise ValueError(f"DiffusionKeypointHead: anchor={anchor!r} needs a denoiser built with cross={wanted!r}, "
                             f"got {denoiser.cross!r}")
        if not prior_std >= 0:
            raise ValueError(f"DiffusionKeypointHead: prior_std must be >= 0, got {prior_std!r}")
        if anchor != "regression" and prior_std != 0:
            raise ValueError(f"DiffusionKeypointHead: prior_std (got {prior_std!r}) applies to anchor='regression' "
                             "only; the paper's head has no prior")
        if ensemble not in ENSEMBLES:
            raise ValueError(f"DiffusionKeypointHead: ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
        if scheduler.config.prediction_type != "sample":
            raise ValueError("DiffusionKeypointHead: the scheduler's prediction_type must be 'sample' (the keypoint "
                             "decoder predicts x_0)")
        signal = signal or SignalCodec(5.0)
        check_scheduler(scheduler, signal_scale=signal.scale if scheduler.config.clip_sample else None)
        if train_timestep not in TRAIN_TIMESTEPS:
            raise ValueError(f"DiffusionKeypointHead: train_timestep must be one of {TRAIN_TIMESTEPS}, "
                             f"got {train_timestep!r}")
        padding = padding or ("repeat_batch" if anchor == "paper" else "empty")
        if padding not in PADDINGS:
            raise ValueError(f"DiffusionKeypointHead: padding must be one of {PADDINGS}, got {padding!r}")
        if padding == "repeat_batch" and anchor != "paper":
            raise ValueError("DiffusionKeypointHead: padding='repeat_batch' pads the paper's image-frame candidates; "
                             "anchor='regression' pads in each person's frame (repeat, empty, noise or mean)")
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
        # train_timestep="sampling": the timesteps the default sampler visits, drawn from in training
        self.register_buffer("visited", torch.tensor(trailing_timesteps(
            scheduler.config.num_train_timesteps - 1, sampling_steps)), persistent=False)
        self.renewal, self.renewal_threshold = renewal, renewal_threshold
        self.ensemble, self.ensemble_drop_last, self.eta = ensemble, ensemble_drop_last, eta
        self.expand = HumanToKeypoint(denoiser.dim, denoiser.num_keypoints)
        self.init_keypoints = InitialKeypoints(denoiser.dim, denoiser.num_keypoints)  # ED-Pose's, the same weights
        self.frame_scale = float(frame_scale)
        self.inference_proposals = int(inference_proposals or num_proposals)
        self.anchor, self.prior_std, self.diffusion = anchor, float(prior_std), bool(diffusion)
        if anchor == "regression":
            self.inject = nn.Linear(denoiser.dim, denoiser.dim)  # the denoiser's tokens into ED-Pose's; zero: ignored
            nn.init.zeros_(self.inject.weight)
            nn.init.zeros_(self.inject.bias)

    # -- coordinates: the image frame (paper), or each person's enlarged box (regression anchor) -------------------
    def to_signal(self, keypoints: torch.Tensor, persons: Persons) -> torch.Tensor:
        """Normalised image keypoints (B, C, K, 2) -> the signal (Eq. 4), in the candidates' frame."""
        if self.anchor == "paper":
            return self.signal.encode(keypoints)
        return self.signal.encode((keypoints - persons.origin) / persons.size)

    def from_signal(self, x: torch.Tensor, persons: Persons) -> torch.Tensor:
        """Signal (B, C, K, 2) -> normalised image keypoints, inside the image (or the person's frame)."""
        if self.anchor == "paper":
            return self.signal.decode(x).clamp(1e-3, 1 - 1e-3)
        return (persons.origin + self.signal.decode(x) * persons.size).clamp(1e-3, 1 - 1e-3)

    # -- one denoising pass ----------------------------------------------------------------------------
    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, persons: Persons, enc) -> PoseOutput:
        """x_t (B, C, K, 2) signal, t (B,) -> per-layer predictions of x_0 (normalised image keypoints)."""
        p = persons
        coords = self.from_signal(x_t, p)  # (B, C, K, 2) in the image
        if self.anchor == "paper":
            q, cond = self.denoiser.self_attend(coords, t)  # Eq. 5
            sel = self.denoiser.select(q, coords, p.h2k, p.kp0, p.boxes, p.logits)  # Eq. 7
            out, _ = self.decoder(sel.tokens, sel.keypoints, sel.boxes, p.hidden, enc, cond=cond)  # Eq. 8
            return out.after(sel.logits, sel.boxes, sel.keypoints)  # the coarse selection is supervised too
        kp_tokens, pose_tokens, cond = self.denoiser(coords, t, p.h2k)  # K-SA, K-CA to the own person
        start = gaussian_posterior_mean(self.scheduler, x_t, t, p.prior, self.prior_std)  # (B, N, K, 2) E[x_0 | x_t]
        tokens = p.h2k + self.inject(torch.cat([pose_tokens[:, :, None], kp_tokens], 2))  # (B, N, 1 + K, D)
        out, _ = self.decoder(tokens, self.from_signal(start, p), p.boxes, p.hidden, enc, cond=cond)  # Eq. 8
        return out.after(p.logits, p.boxes, p.kp0)  # the prior's mean is supervised, as ED-Pose's kp_0

    def _persons(self, humans, num: int | None = None) -> Persons:
        """The ``num`` (default N) best persons of the human decoder, their F_H2K and ED-Pose's initial keypoints
        (:class:`Persons`)."""
        hidden, boxes, h2k, logits = self.expand(humans, num or self.num_proposals)
        kp0 = self.init_keypoints(hidden, boxes)  # (B, N, K, 2)
        if self.anchor == "paper":
            return Persons(hidden, boxes, logits, h2k, kp0, None, None, None)
        wh = (boxes[..., 2:] * self.frame_scale).clamp_min(0.02)
        origin, size = (boxes[..., :2] - wh / 2)[:, :, None], wh[:, :, None]  # (B, N, 1, 2) each
        persons = Persons(hidden, boxes, logits, h2k, kp0, origin, size, None)
        return persons._replace(prior=self.to_signal(kp0, persons))  # the prior mean, once for every step

    def _timesteps(self, b: int, device) -> torch.Tensor:
        """(B,) training timesteps: uniform, the sampler's, 0 (official code), or T - 1 for the diffusion-off
        control."""
        num_train = self.scheduler.config.num_train_timesteps
        if not self.diffusion:
            return torch.full((b,), num_train - 1, dtype=torch.long, device=device)
        if self.train_timestep == "uniform":
            return torch.randint(0, num_train, (b,), device=device)
        if self.train_timestep == "sampling":
            return self.visited[torch.randint(0, len(self.visited), (b,), device=device)].to(device)
        return torch.zeros(b, dtype=torch.long, device=device)

    # -- training --------------------------------------------------------------------------------------
    def clean_candidates(self, persons: Persons, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """x_0 (B, C, K, 2) in the signal and which candidates carry a ground-truth pose (B, C) bool.

        ``anchor="paper"``: each image's poses padded to C (``padding``) and shuffled. ``anchor="regression"``:
        each ground-truth person goes to the detected person whose box fits it best (Hungarian on box L1 -
        GIoU), in that person's frame; the other proposals are padded.
        """
        boxes = persons.boxes
        b, n, device = boxes.shape[0], self.num_proposals if self.anchor == "paper" else boxes.shape[1], boxes.device
        use_completed = self.completion and targets.keypoints_completed is not None
        kps = targets.keypoints_completed if use_completed else targets.keypoints  # (B, M, K, 2) in [0, 1]
        x0, real = [], []
        batch_poses = self.signal.encode(kps[targets.valid]).clamp(-self.signal.scale, self.signal.scale)  # (ΣM, K, 2)
        for i in range(b):
            valid = targets.valid[i]
            if self.anchor == "paper":
                gt = self.signal.encode(kps[i, valid]).clamp(-self.signal.scale, self.signal.scale)  # (M_i, K, 2)
                if self.padding == "repeat_batch" and len(batch_poses):  # the batch's poses, drawn uniformly
                    gt, _ = pad_poses(gt, min(len(gt), n), "empty") if len(gt) else (gt, None)  # at most n of its own
                    fill = batch_poses[torch.randint(0, len(batch_poses), (n - len(gt),), device=device)]
                    padded, is_real = torch.cat([gt, fill]), torch.arange(n, device=device) < len(gt)
                else:  # Table 4's strategies, per image (no pose to repeat: noise)
                    repeat = self.padding in ("repeat", "repeat_batch")
                    padded, is_real = pad_poses(gt, n, "repeat" if repeat and len(gt) else
                                                "noise" if repeat else self.padding)
                order = torch.randperm(n, device=device)  # no candidate index tells a real pose from a padded one
                x0.append(padded[order])
                real.append(is_real[order])
                continue
            rows, cols = _match_boxes(boxes[i], targets.boxes[i, valid])
            frame = persons._replace(origin=persons.origin[i, rows][None], size=persons.size[i, rows][None])
            gt = self.to_signal(kps[i, valid][cols][None], frame)[0].clamp(-self.signal.scale, self.signal.scale)
            padded, is_real = pad_poses(gt, n, self.padding)
            order = torch.cat([rows, _complement(rows, n, device)])  # proposal of each padded row
            x, r = torch.empty_like(padded), torch.empty_like(is_real)
            x[order.to(device)], r[order.to(device)] = padded, is_real
            x0.append(x)
            real.append(r)
        return torch.stack(x0), torch.stack(real)

    def noisy_candidates(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t (Eq. 3-4) of ``x0`` (B, C, K, 2) at ``t`` (B,); pure noise for the diffusion-off control."""
        noise = torch.randn_like(x0)
        return q_sample(self.scheduler, x0, t, noise) if self.diffusion else noise

    def forward(self, humans, enc, targets) -> PoseOutput:
        persons = self._persons(humans)
        x0, _ = self.clean_candidates(persons, targets)  # (B, C, K, 2)
        t = self._timesteps(x0.shape[0], x0.device)
        return self.denoise(self.noisy_candidates(x0, t), t, persons, enc)

    # -- inference -------------------------------------------------------------------------------------
    @property
    def max_sampling_steps(self) -> int:
        """The most sampling steps the scheduler can take: one per training timestep."""
        return int(self.scheduler.config.num_train_timesteps)

    @torch.no_grad()
    def predict(self, humans, enc, steps: int | None = None, generator: torch.Generator | None = None):
        """Sample poses; returns logits (B, M), boxes (B, M, 4), keypoints (B, M, K, 2): M = C candidates (M = C x
        pooled steps for ``ensemble="pool"``)."""
        steps = self.sampling_steps if steps is None else int(steps)  # checked by the model (check_steps)
        # paper: inference_proposals candidates select among all N persons; regression: one per best person
        persons = self._persons(humans, None if self.anchor == "paper" else self.inference_proposals)
        b, k = persons.boxes.shape[0], self.denoiser.num_keypoints
        c = self.inference_proposals if self.anchor == "paper" else persons.boxes.shape[1]
        gen_device = "cpu" if generator is None else generator.device
        x_T = torch.randn((b, c, k, 2), generator=generator, device=gen_device).to(persons.h2k)
        t_off = torch.full((b,), self.max_sampling_steps - 1, dtype=torch.long, device=x_T.device)
        records, score_sum, counted = [], torch.zeros(b, c, device=x_T.device), torch.zeros(b, c, device=x_T.device)

        def model_fn(x_t, t):
            if not self.diffusion:  # the control: the image alone, fresh noise at every step
                x_t, t = torch.randn(x_t.shape, generator=generator, device=gen_device).to(x_t), t_off
            out = self.denoise(x_t, t, persons, enc)
            records.append((out.logits[-1], out.boxes[-1], out.keypoints[-1]))
            score_sum.add_(out.logits[-1].float().sigmoid())
            counted.add_(1.0)
            return self.to_signal(out.keypoints[-1], persons)  # x_0 prediction in signal space

        def renew(i, t, x_next, x0_pred):
            if not self.renewal or i == steps - 1:
                return None
            low = records[-1][0].sigmoid() < self.renewal_threshold  # (B, C)
            if not bool(low.any()):
                return None
            score_sum.masked_fill_(low, 0.0)  # a renewed candidate's score average starts again
            counted.masked_fill_(low, 0.0)
            fresh = torch.randn(x_next.shape, generator=generator, device=gen_device).to(x_next)
            return torch.where(low[..., None, None], fresh, x_next)

        sample(model_fn, x_T, self.scheduler, steps, eta=self.eta, generator=generator, callback=renew)
        if self.ensemble == "trajectory":  # the last step's poses, each scored by its mean over the steps
            mean = (score_sum / counted.clamp_min(1.0)).clamp(1e-6, 1 - 1e-6)
            return torch.logit(mean).to(records[-1][0].dtype), records[-1][1], records[-1][2]
        pooled = records[-1:]
        if self.ensemble == "pool":
            pooled = records[:-1] if (self.ensemble_drop_last and len(records) > 1) else records
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
