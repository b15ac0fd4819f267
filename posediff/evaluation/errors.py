"""Where a model's keypoint AP goes: per-joint errors, left / right swaps, and oracle APs.

AP mixes finding persons, ranking them and placing their joints. :func:`keypoint_errors` takes them apart
on COCO-format ground truth and results (as :func:`~posediff.evaluation.evaluate_keypoints` reads them):

* every ground-truth person with labelled joints is paired with the prediction of its image that has the
  highest OKS to it; above ``min_oks`` it counts as found;
* per joint: the median distance in pixels, and relative to the person's scale (``sqrt(area)``, as OKS
  scales), over the labelled joints of found persons;
* ``swap_share``: the share of found persons whose prediction fits better (lower mean relative error) with
  its left and right joints swapped (the skeleton's flip permutation): a model that cannot tell a person's
  left from their right, or hedges between them, shows here;
* ``ap_oracle_keypoints``: AP with each prediction's joints replaced by those of the ground truth it
  overlaps best (OKS above ``min_oks``): what perfect joints on the same detections and scores would
  score; ``ap_oracle_scores``: AP with each prediction scored by its best OKS: what a perfect ranking of
  the same poses would score.
"""

from __future__ import annotations

import numpy as np
import torch

from ..skeletons import get_skeleton
from .coco_eval import _check_keypoint_count, _load_gt, _load_results, _plain, _subset, evaluate_keypoints

__all__ = ["keypoint_errors"]


def _by_image(items) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(_plain(item["image_id"]), []).append(item)
    return out


def keypoint_errors(gt, results, skeleton: str = "coco17", image_ids=None, min_oks: float = 0.1) -> dict:
    """Per-joint errors, the left / right swap share and oracle APs of ``results`` against ``gt``.

    Args:
        gt: a path or a COCO dict. results: a path or a list of COCO keypoint result dicts.
        skeleton: ``"coco17"`` or ``"crowdpose14"`` (joint names, OKS sigmas, flip permutation; the AP protocol).
        image_ids: score on these images only; None: all. min_oks: a pairing below this is not a find.

    Returns:
        dict with ``persons`` (ground-truth persons with labelled joints), ``found`` (share paired above
        ``min_oks``), ``joint_error_px`` and ``joint_error_rel`` (joint name -> median, None where no found
        person has it labelled), ``mean_error_rel`` (median over found persons of their mean relative error),
        ``swap_share``, ``AP``, ``ap_oracle_keypoints`` and ``ap_oracle_scores``.
    """
    from ..models.matcher import oks_matrix

    sk = get_skeleton(skeleton)
    dataset = "coco" if sk.name == "coco17" else "crowdpose"
    gt = _load_gt(gt)
    if image_ids is not None:
        gt = _subset(gt, {_plain(i) for i in image_ids})
    results = _load_results(results)
    _check_keypoint_count(gt, results, sk.num_joints, f"skeleton={skeleton!r}")
    images = {_plain(img["id"]) for img in gt["images"]}
    results = [r for r in results if _plain(r["image_id"]) in images]
    k, flip = sk.num_joints, list(sk.flip_index)
    sigmas = torch.as_tensor(sk.sigmas, dtype=torch.float64)
    persons = _by_image(a for a in gt["annotations"]
                        if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3]))
    preds = _by_image(results)
    px, rel, rel_swapped, labelled = [], [], [], []  # per found person, (K,) each
    oracle_kp, oracle_score = [], []
    n_persons = sum(len(v) for v in persons.values())
    for image_id in images:
        anns, dets = persons.get(image_id, []), preds.get(image_id, [])
        if not dets:
            continue
        if not anns:
            oracle_kp += dets
            oracle_score += [dict(d, score=0.0) for d in dets]
            continue
        p = torch.tensor([d["keypoints"] for d in dets], dtype=torch.float64).view(-1, k, 3)[..., :2]  # (N, K, 2)
        g = torch.tensor([a["keypoints"] for a in anns], dtype=torch.float64).view(-1, k, 3)  # (M, K, 3)
        vis = g[..., 2] > 0  # (M, K)
        areas = torch.tensor([float(a["area"]) for a in anns], dtype=torch.float64)  # (M,)
        oks = oks_matrix(p, g[..., :2], vis, areas, sigmas)  # (N, M)
        for m in range(len(anns)):
            n = int(oks[:, m].argmax())
            if oks[n, m] <= min_oks:
                continue
            scale = float(areas[m].clamp_min(1.0).sqrt())  # the person's scale, as OKS has it
            d = (p[n] - g[m, :, :2]).norm(dim=-1)  # (K,) pixels
            px.append(d.numpy())
            rel.append(d.numpy() / scale)
            rel_swapped.append((p[n][flip] - g[m, :, :2]).norm(dim=-1).numpy() / scale)
            labelled.append(vis[m].numpy())
        best = oks.max(1)  # (N,): each prediction's best OKS and its ground truth
        for n, det in enumerate(dets):
            found = bool(best.values[n] > min_oks)
            keypoints = g[int(best.indices[n])].flatten().tolist() if found else det["keypoints"]
            oracle_kp.append(dict(det, keypoints=keypoints))
            oracle_score.append(dict(det, score=float(best.values[n])))
    names = list(sk.joints)
    out = dict(persons=n_persons, found=len(px) / max(n_persons, 1))
    if px:
        e, r, v = np.stack(px), np.stack(rel), np.stack(labelled)  # (F, K) each
        out["joint_error_px"] = {names[j]: float(np.median(e[v[:, j], j])) if v[:, j].any() else None
                                 for j in range(k)}
        out["joint_error_rel"] = {names[j]: float(np.median(r[v[:, j], j])) if v[:, j].any() else None
                                  for j in range(k)}
        own = np.nanmean(np.where(v, r, np.nan), 1)  # (F,): mean relative error over labelled joints
        other = np.nanmean(np.where(v, np.stack(rel_swapped), np.nan), 1)
        out.update(mean_error_rel=float(np.median(own)), swap_share=float((other < own).mean()))
    else:
        out.update(joint_error_px=dict.fromkeys(names), joint_error_rel=dict.fromkeys(names), mean_error_rel=None,
                   swap_share=None)
    score = lambda r: evaluate_keypoints(gt, r, dataset=dataset)["AP"] if r else 0.0  # noqa: E731
    out.update(AP=score(results), ap_oracle_keypoints=score(oracle_kp), ap_oracle_scores=score(oracle_score))
    return out
