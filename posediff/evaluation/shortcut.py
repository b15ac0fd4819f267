"""Can x_t alone tell a diffusion head's real candidates from its padded ones? (the person-score shortcut)

A set-prediction diffusion head pads each image's ground-truth poses to a fixed number of candidates. If the noisy
candidates x_t of padded rows differ in distribution from real ones, the person score learns that difference
instead of the image, and at inference, where every candidate comes from the same noise, it means nothing.
:func:`padding_separability` measures it as the head trains: for each timestep of its sampler, the AUC with which
‖x_t‖, a logistic probe, and gradient-boosted trees on x_t and the candidate's index (fitted on half the
candidates, scored on the other half) separate candidates that carry a ground-truth pose from padded ones.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

__all__ = ["padding_separability", "training_candidates"]


class _Stop(Exception):
    """Raised to end a training pass once the candidates are built."""


def training_candidates(model, images, mask, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0 (B, C, K, 2), which candidates carry a ground-truth pose (B, C) bool) as ``model``'s diffusion head
    builds them in its training forward pass (which is stopped there)."""
    head, seen = model.head, {}
    clean = head.clean_candidates

    def record(*args):
        seen["x0"], seen["real"] = clean(*args)
        raise _Stop

    head.clean_candidates = record
    was_training = model.training
    try:
        with contextlib.suppress(_Stop):
            model.train()(images, mask, targets)
    finally:
        del head.clean_candidates
        model.train(was_training)
    return seen["x0"], seen["real"]


@torch.no_grad()
def padding_separability(model, batches, draws: int = 4, seed: int = 0) -> dict[int, dict[str, float]]:
    """Per sampling timestep (the head's ``sampling_steps`` sampler): ``{"norm", "logistic", "trees"}`` AUCs (an AUC
    and its mirror count alike, so 0.5 is none and 1.0 complete), over ``batches`` ((images, mask, targets) as
    :func:`~posediff.data.collate` gives them), ``draws`` padding and noise draws each."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    head = model.head
    sched = type(head.scheduler).from_config(head.scheduler.config)
    sched.set_timesteps(head.sampling_steps)
    steps = [int(t) for t in sched.timesteps]
    x, y = {t: [] for t in steps}, {t: [] for t in steps}
    for images, mask, targets in batches:
        for _ in range(draws):
            x0, real = training_candidates(model, images, mask, targets)  # (B, C, K, 2), (B, C)
            b, c = real.shape
            index = torch.arange(c, dtype=x0.dtype).expand(b, c)[..., None]  # (B, C, 1)
            for t in steps:
                x_t = head.noisy_candidates(x0, torch.full((b,), t))  # as the training pass noises them
                x[t].append(torch.cat([x_t.reshape(b, c, -1), index], -1).reshape(b * c, -1))
                y[t].append(real.reshape(-1))
    out = {}
    for t in steps:
        feats, labels = torch.cat(x[t]).numpy(), torch.cat(y[t]).numpy()
        if labels.all() or not labels.any():
            kind = "real" if labels.all() else "padded"
            raise ValueError(f"padding_separability: at t = {t} every candidate is {kind}; use images with fewer "
                             f"persons than candidates")
        half = np.random.default_rng(seed).permutation(len(labels))
        fit, test = half[: len(half) // 2], half[len(half) // 2:]
        aucs = {"norm": roc_auc_score(labels, np.linalg.norm(feats[:, :-1], axis=1))}
        for name, probe in (("logistic", LogisticRegression(max_iter=2000)),
                            ("trees", HistGradientBoostingClassifier(max_iter=50, random_state=seed))):
            probe.fit(feats[fit], labels[fit])
            aucs[name] = roc_auc_score(labels[test], probe.predict_proba(feats[test])[:, 1])
        out[t] = {k: float(max(a, 1 - a)) for k, a in aucs.items()}
    return out
