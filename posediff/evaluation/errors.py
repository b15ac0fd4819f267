"""Where a model's keypoint AP goes: per-joint errors, left / right swaps and collapse, and oracle APs.

AP mixes finding persons, ranking them and placing their joints. :func:`keypoint_errors` takes them apart
on COCO-format ground truth and results (as :func:`~posediff.evaluation.evaluate_keypoints` reads them):

* predictions are paired one to one with ground-truth persons as COCO's evaluation pairs them: per image,
  the best ``max_dets`` by score, in descending score order, each taking the unpaired person it overlaps
  most (OKS above ``min_oks``); OKS and the person's scale (``sqrt(area)``) are the protocol's: the
  annotation's ``area`` for COCO, 0.53 of its box for CrowdPose;
* per joint: the median distance in pixels, and relative to the person's scale, over the labelled joints
  of paired persons;
* ``swap_share``: the share of paired persons whose prediction fits better (lower mean relative error)
  with its left and right joints swapped (the skeleton's flip permutation); ``lr_spread``: the median ratio
  of the predicted to the true distance between a person's left and right joint of a pair (1: the sides
  are kept apart; near 0: the prediction collapses them onto one place, hedging between the sides);
* ``ap_oracle_keypoints``: AP with each paired prediction's labelled joints replaced by its person's: what
  perfect joints on the same detections and scores would score; ``ap_oracle_scores``: AP with each
  prediction scored by the OKS to its paired person (unpaired ones 0): what a perfect ranking of the same
  poses would score.
"""

from __future__ import annotations

import numpy as np
import torch

from ..skeletons import get_skeleton
from .coco_eval import (
    _check_finite,
    _check_keypoint_count,
    _load_gt,
    _load_results,
    _plain,
    _subset,
    evaluate_keypoints,
)

__all__ = ["keypoint_errors"]

_PROTOCOL = {"coco17": "coco", "crowdpose14": "crowdpose"}


def _by_image(items) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(_plain(item["image_id"]), []).append(item)
    return out


def _area(ann: dict, protocol: str) -> float:
    """The OKS scale² of a ground-truth person under the protocol that scores it."""
    if protocol == "crowdpose":  # faster-coco-eval's keypoints_crowd with use_area=False
        if "bbox" not in ann:
            raise ValueError(f"keypoint_errors: annotation {ann.get('id')} has no field 'bbox' (CrowdPose's OKS "
                             f"scale is 0.53 of the box)")
        return 0.53 * float(ann["bbox"][2]) * float(ann["bbox"][3])
    if "area" not in ann:
        raise ValueError(f"keypoint_errors: annotation {ann.get('id')} has no field 'area' (COCO's OKS scale)")
    return float(ann["area"])


def _pair(oks: torch.Tensor, scores: list[float], max_dets: int, min_oks: float) -> dict[int, int]:
    """COCO's greedy pairing: prediction index -> ground-truth index. oks (N, M)."""
    order = sorted(range(len(scores)), key=lambda n: -scores[n])[:max_dets]
    taken: set[int] = set()
    pairs = {}
    for n in order:
        best, m_best = min_oks, None
        for m in range(oks.shape[1]):
            if m not in taken and float(oks[n, m]) > best:
                best, m_best = float(oks[n, m]), m
        if m_best is not None:
            taken.add(m_best)
            pairs[n] = m_best
    return pairs


def keypoint_errors(gt, results, skeleton: str = "coco17", image_ids=None, min_oks: float = 0.1,
                    max_dets: int = 20) -> dict:
    """Per-joint errors, left / right swaps and collapse, and oracle APs of ``results`` against ``gt``.

    Args:
        gt: a path or a COCO dict (CrowdPose: with ``images[].crowdIndex``). results: a path or a list of COCO
            keypoint result dicts, with the skeleton's joints.
        skeleton: ``"coco17"`` (COCO protocol) or ``"crowdpose14"`` (CrowdPose protocol): joint names, OKS
            sigmas, flip permutation.
        image_ids: score on these images only; None: all. min_oks: the least OKS of a pairing.
        max_dets: predictions per image considered, by score (COCO's keypoint protocol: 20).

    Returns:
        dict with ``persons`` (ground-truth persons with labelled joints, not crowd regions), ``found`` (the
        share paired), ``joint_error_px`` and ``joint_error_rel`` (joint name -> median, None where no paired
        person has it labelled), ``mean_error_rel`` (median over paired persons of their mean relative error),
        ``swap_share``, ``lr_spread``, ``AP``, ``ap_oracle_keypoints`` and ``ap_oracle_scores``.
    """
    from ..models.matcher import oks_matrix

    if skeleton not in _PROTOCOL:
        raise ValueError(f"keypoint_errors: skeleton must be one of {sorted(_PROTOCOL)} (a protocol with OKS "
                         f"sigmas), got {skeleton!r}")
    sk, protocol = get_skeleton(skeleton), _PROTOCOL[skeleton]
    gt = _load_gt(gt, protocol)
    if image_ids is not None:
        gt = _subset(gt, {_plain(i) for i in image_ids})
    results = _load_results(results)
    _check_keypoint_count(gt, results, sk.num_joints, f"skeleton={skeleton!r}", caller="keypoint_errors")
    _check_finite(results, caller="keypoint_errors")
    images = {_plain(img["id"]) for img in gt["images"]}
    if image_ids is None:
        unknown = {_plain(r["image_id"]) for r in results} - images
        if unknown:
            raise ValueError(f"keypoint_errors: results name image ids that are not in the ground truth: "
                             f"{sorted(unknown)[:5]}")
    results = [r for r in results if _plain(r["image_id"]) in images]
    k, flip = sk.num_joints, list(sk.flip_index)
    left = [j for j in range(k) if flip[j] > j]  # one joint of each left / right pair
    sigmas = torch.as_tensor(sk.sigmas, dtype=torch.float64)
    persons = _by_image(a for a in gt["annotations"]
                        if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3]))
    preds = _by_image(results)
    px, px_swapped, labelled, scales, spread = [], [], [], [], []  # per paired person: (K,), (K,), (K,), scale
    oracle_kp, oracle_score = [], []
    n_persons = sum(len(v) for v in persons.values())
    for image_id in images:
        anns, dets = persons.get(image_id, []), preds.get(image_id, [])
        if not dets:
            continue
        p = torch.tensor([d["keypoints"] for d in dets], dtype=torch.float64).view(-1, k, 3)  # (N, K, 3)
        pairs = {}
        if anns:
            g = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).view(-1, k, 3)  # (M, K, 3)
            vis = g[..., 2] > 0  # (M, K)
            areas = torch.tensor([_area(a, protocol) for a in anns], dtype=torch.float64)  # (M,)
            oks = oks_matrix(p[..., :2], g[..., :2], vis, areas, sigmas)  # (N, M)
            pairs = _pair(oks, [float(d["score"]) for d in dets], max_dets, min_oks)
        for n, det in enumerate(dets):
            m = pairs.get(n)
            if m is None:
                oracle_kp.append(det)
                oracle_score.append(dict(det, score=0.0))
                continue
            scales.append(float(areas[m].clamp_min(1.0).sqrt()))  # the person's scale, as OKS has it
            px.append((p[n, :, :2] - g[m, :, :2]).norm(dim=-1).numpy())  # (K,) pixels
            px_swapped.append((p[n, flip, :2] - g[m, :, :2]).norm(dim=-1).numpy())
            labelled.append(vis[m].numpy())
            both = [j for j in left if vis[m, j] and vis[m, flip[j]]]
            true_lr = (g[m, both, :2] - g[m, [flip[j] for j in both], :2]).norm(dim=-1)  # (P,)
            pred_lr = (p[n, both, :2] - p[n, [flip[j] for j in both], :2]).norm(dim=-1)
            keep = true_lr > 1.0  # pairs whose sides the truth keeps apart
            spread += (pred_lr[keep] / true_lr[keep]).tolist()
            perfect = torch.where(vis[m, :, None], g[m, :, :2], p[n, :, :2])  # labelled joints replaced
            oracle_kp.append(dict(det, keypoints=torch.cat([perfect, p[n, :, 2:]], -1).flatten().tolist()))
            oracle_score.append(dict(det, score=float(oks[n, m])))
    names = list(sk.joints)
    out = dict(persons=n_persons, found=len(px) / max(n_persons, 1))
    if px:
        e, v = np.stack(px), np.stack(labelled)  # (F, K) each
        s = np.asarray(scales)[:, None]  # (F, 1)
        r = e / s  # (F, K) relative to each person's scale
        out["joint_error_px"] = {names[j]: float(np.median(e[v[:, j], j])) if v[:, j].any() else None
                                 for j in range(k)}
        out["joint_error_rel"] = {names[j]: float(np.median(r[v[:, j], j])) if v[:, j].any() else None
                                  for j in range(k)}
        own = np.nanmean(np.where(v, r, np.nan), 1)  # (F,): mean relative error over labelled joints
        other = np.nanmean(np.where(v, np.stack(px_swapped) / s, np.nan), 1)
        out.update(mean_error_rel=float(np.median(own)), swap_share=float((other < own).mean()),
                   lr_spread=float(np.median(spread)) if spread else None)
    else:
        out.update(joint_error_px=dict.fromkeys(names), joint_error_rel=dict.fromkeys(names), mean_error_rel=None,
                   swap_share=None, lr_spread=None)
    score = lambda res: evaluate_keypoints(gt, res, dataset=protocol)["AP"] if res else 0.0  # noqa: E731
    out.update(AP=score(results), ap_oracle_keypoints=score(oracle_kp), ap_oracle_scores=score(oracle_score))
    return out
