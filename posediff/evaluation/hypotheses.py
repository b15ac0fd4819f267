"""Several hypotheses per person: what a generative head gains from S samples, and whether their spread knows
their error.

A diffusion head samples: run S times with different seeds it gives S hypotheses for each person, where a
deterministic head gives one S times. :func:`sample_hypotheses` takes S sets of COCO keypoint results for the
same images and, for each ground-truth person (labelled joints, not a crowd region):

* in each sample, the person's hypothesis is the prediction with the highest OKS to it (an oracle pairing);
* per labelled joint j, the similarity OKS sums, k_j = exp(-d_j² / (2 s² (2σ_j)²)), s² the person's OKS scale
  (the annotation's area for COCO, 0.53 of its box for CrowdPose);
* best-of-S: per joint the largest k_j among the first S samples, averaged over the joints labelled visible
  (v = 2) and occluded (v = 1) apart, and per person the largest OKS. A generative head's best-of-S rises with
  S, mostly where the image leaves the joint open (occluded); a deterministic head's stays flat;
* spread against error: per labelled joint, the spread of its S hypotheses (RMS distance to their mean) and the
  error of their mean, both / s, and their Spearman rank correlation over joints (by visibility): whether the
  samples disagree where they are wrong;
* left and right: a hypothesis is *swapped* when it fits the person better (lower mean distance over the labelled
  joints) with its left and right joints exchanged (the skeleton's flip permutation); ``swap_share`` is the share
  of swapped hypotheses, ``both_assignments`` the share of persons whose hypotheses include both assignments.
  Where the picture cannot tell left from right, a generative head can cover both; a deterministic one cannot.
  The hypothesis is the sample's prediction of highest OKS, which prefers an unswapped prediction when a sample
  holds both: the two shares are lower bounds.
"""

from __future__ import annotations

import numpy as np
import torch

from ..skeletons import get_skeleton
from .coco_eval import _check_finite, _check_keypoint_count, _load_gt, _load_results, _plain, _subset
from .errors import _PROTOCOL, _area, _by_image

__all__ = ["sample_hypotheses"]


def sample_hypotheses(gt, samples, skeleton: str = "coco17", image_ids=None,
                      counts: tuple[int, ...] = (1, 2, 4, 8, 16), min_score: float = 0.0) -> dict:
    """Best-of-S similarity and spread against error of S samples' results (module docstring).

    Args:
        gt: a path or a COCO dict. samples: a list of S result lists (or paths), one per sampling run, over the
            same images. skeleton: ``"coco17"`` or ``"crowdpose14"`` (the protocol, its sigmas and OKS scale).
        image_ids: these images only; None: all of ``gt``'s. counts: the S to report, each at most
            ``len(samples)``. min_score: predictions scoring less are no hypothesis.

    Returns:
        dict: ``persons`` (ground-truth persons scored), ``counts``, ``best_oks`` / ``visible`` / ``occluded``
        (one mean per count: the person's best OKS, the joints' best similarity by visibility), ``joints``
        ({"visible": n, "occluded": n}), ``spread_rel`` / ``error_rel`` (medians over labelled joints, with all
        samples), ``spread_error_spearman`` ({"visible", "occluded", "all"}: None where every spread is 0, as
        for a deterministic head), ``swap_share`` and ``both_assignments`` (module docstring).
    """
    from scipy.stats import spearmanr

    from ..models.matcher import oks_matrix

    if skeleton not in _PROTOCOL:
        raise ValueError(f"sample_hypotheses: skeleton must be one of {sorted(_PROTOCOL)}, got {skeleton!r}")
    if not samples:
        raise ValueError("sample_hypotheses: no samples given")
    counts = tuple(sorted(set(int(c) for c in counts)))
    if not counts or counts[0] < 1 or counts[-1] > len(samples):
        raise ValueError(f"sample_hypotheses: counts must lie in 1..{len(samples)} (the samples given), got {counts}")
    sk, protocol = get_skeleton(skeleton), _PROTOCOL[skeleton]
    gt = _load_gt(gt, protocol)
    if image_ids is not None:
        gt = _subset(gt, {_plain(i) for i in image_ids})
    k = sk.num_joints
    by_sample = []
    for s, results in enumerate(samples):
        results = _load_results(results)
        _check_keypoint_count(gt, results, k, f"skeleton={skeleton!r}", caller=f"sample_hypotheses: sample {s}")
        _check_finite(results, caller=f"sample_hypotheses: sample {s}")
        by_sample.append(_by_image(r for r in results if float(r["score"]) >= min_score))
    sigmas = torch.as_tensor(sk.sigmas, dtype=torch.float64)
    var = (2 * sigmas) ** 2  # (K,)
    persons = _by_image(a for a in gt["annotations"]
                        if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3]))
    flip = list(sk.flip_index)
    sims, oks_best, flags, spread, error = [], [], [], [], []  # per person: (S, K), (S,), (K,), (K,), (K,)
    swapped = []  # per person: (S,) 1 swapped, 0 not, NaN no hypothesis
    for image_id in sorted(persons, key=repr):
        anns = persons[image_id]
        g = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).view(-1, k, 3)  # (M, K, 3)
        vis = g[..., 2] > 0  # (M, K)
        areas = torch.tensor([_area(a, protocol) for a in anns], dtype=torch.float64).clamp_min(1.0)  # (M,)
        picked = torch.full((len(samples), len(anns), k, 2), float("nan"), dtype=torch.float64)  # (S, M, K, 2)
        best = torch.zeros(len(samples), len(anns), dtype=torch.float64)  # (S, M)
        for s, preds in enumerate(by_sample):
            dets = preds.get(image_id, [])
            if not dets:
                continue
            p = torch.tensor([d["keypoints"] for d in dets], dtype=torch.float64).view(-1, k, 3)  # (N, K, 3)
            oks = oks_matrix(p[..., :2], g[..., :2], vis, areas, sigmas)  # (N, M)
            best[s], n = oks.max(0)  # (M,) each: the hypothesis of every person in sample s
            picked[s] = p[n, :, :2]
        d2 = ((picked - g[None, :, :, :2]) ** 2).sum(-1)  # (S, M, K)
        d2_flipped = ((picked[:, :, flip] - g[None, :, :, :2]) ** 2).sum(-1)  # (S, M, K) sides exchanged
        labelled = vis[None].double()  # (1, M, K)
        as_is = (d2.sqrt() * labelled).sum(-1)  # (S, M), NaN without a hypothesis
        exchanged = (d2_flipped.sqrt() * labelled).sum(-1)
        swap = torch.where(torch.isnan(as_is), float("nan"), (exchanged < as_is).double())  # (S, M)
        sim = torch.exp(-d2 / (2 * areas[None, :, None] * var)).nan_to_num(0.0)  # (S, M, K); no hypothesis: 0
        centre = picked.nanmean(0)  # (M, K, 2) the mean hypothesis
        scale = areas.sqrt()[:, None]  # (M, 1)
        for m in range(len(anns)):
            sims.append(sim[:, m].numpy())
            oks_best.append(best[:, m].numpy())
            flags.append(g[m, :, 2].numpy())
            swapped.append(swap[:, m].numpy())
            spread.append((((picked[:, m] - centre[m]) ** 2).sum(-1).nanmean(0).sqrt() / scale[m]).numpy())
            error.append(((centre[m] - g[m, :, :2]).norm(dim=-1) / scale[m]).numpy())
    out = dict(persons=len(sims), counts=list(counts))
    if not sims:
        return out
    sim, ok, v = np.stack(sims), np.stack(oks_best), np.stack(flags)  # (P, S, K), (P, S), (P, K)
    sp, er = np.stack(spread), np.stack(error)  # (P, K) each
    visible, occluded = v == 2, v == 1
    out["best_oks"] = [float(ok[:, :c].max(1).mean()) for c in counts]
    for name, mask in (("visible", visible), ("occluded", occluded)):
        out[name] = [float(sim[:, :c].max(1)[mask].mean()) if mask.any() else None for c in counts]
    out["joints"] = dict(visible=int(visible.sum()), occluded=int(occluded.sum()))
    labelled = (v > 0) & np.isfinite(sp) & np.isfinite(er)
    out["spread_rel"] = float(np.median(sp[labelled])) if labelled.any() else None
    out["error_rel"] = float(np.median(er[labelled])) if labelled.any() else None
    corr = {}
    for name, mask in (("visible", visible), ("occluded", occluded), ("all", v > 0)):
        keep = mask & labelled
        a, b = sp[keep], er[keep]
        corr[name] = float(spearmanr(a, b).statistic) if keep.sum() > 2 and np.ptp(a) > 0 and np.ptp(b) > 0 else None
    out["spread_error_spearman"] = corr
    sw = np.stack(swapped)  # (P, S)
    seen = np.isfinite(sw)
    out["swap_share"] = float(np.nanmean(sw)) if seen.any() else None
    several = seen.sum(1) >= 2
    out["both_assignments"] = float(np.mean([np.nanmin(r) == 0 and np.nanmax(r) == 1 for r in sw[several]])) \
        if several.any() else None
    return out
