"""COCO and CrowdPose keypoint metrics through well-kept engines.

* ``dataset="coco"``: pycocotools ``COCOeval(iouType="keypoints")``, the reference implementation.
* ``dataset="crowdpose"``: faster-coco-eval ``COCOeval_faster(iouType="keypoints_crowd")`` with the
  CrowdPose sigmas and ``use_area=False``, which reproduces xtcocotools / crowdpose-api
  ("keypoints_crowd") to 1e-12 (``tests/integration/test_coco_eval.py``) and, unlike the xtcocotools
  wheel, works with numpy 2. AP_E / AP_M / AP_H are the APs on images with crowd index (the file's
  ``images[].crowdIndex``) in [0, 0.2), [0.2, 0.8) and [0.8, 1], the bounds crowdpose-api scores with
  (``get_type_result(first=0.2, second=0.8)``); the CrowdPose paper's text gives 0.1 for the first.

Results are COCO result dicts: ``{"image_id", "category_id": 1, "keypoints": [x, y, score] * K,
"score"}``. :class:`KeypointEvaluator` collects them from model outputs batch by batch.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..io import write_json
from ..skeletons import COCO17, CROWDPOSE14

__all__ = ["evaluate_keypoints", "KeypointEvaluator", "write_coco_results", "to_coco_results",
           "COCO_KEYS", "CROWDPOSE_KEYS", "results_to_crowdpose14"]

log = logging.getLogger(__name__)

COCO_KEYS = ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR", "AR50", "AR75", "AR_M", "AR_L")
CROWDPOSE_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_E", "AP_M", "AP_H")


def _path_or_object(obj, what: str, default_where: str):
    """A JSON path (read) or an in-memory object (deep-copied, so the caller's is never modified)."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.is_file():
            raise FileNotFoundError(f"evaluate_keypoints: {what} file {path} not found")
        with open(path) as f:
            return json.load(f), str(path)
    if isinstance(obj, dict):
        return copy.deepcopy(obj), default_where
    try:
        return copy.deepcopy(list(obj)), default_where
    except TypeError:  # neither a mapping nor a sequence: the caller reports it
        return obj, default_where


def _plain(image_id):
    """numpy / torch integer ids as Python ints (JSON ids are ints); anything else as it is."""
    return int(image_id) if hasattr(image_id, "__index__") else image_id


def _subset(gt: dict, keep: set) -> dict:
    """The images whose id is in ``keep`` and their annotations (a new dict; the lists' items are shared)."""
    return dict(gt, images=[im for im in gt["images"] if im.get("id") in keep],
                annotations=[a for a in gt["annotations"] if a.get("image_id") in keep])


# what the scorers read of each ground-truth person (CrowdPose files have no area: it is scored without)
_GT_FIELDS = ("id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox", "iscrowd")


def _load_gt(gt, dataset: str = "crowdpose") -> dict:
    gt, where = _path_or_object(gt, "ground-truth", "ground truth dict")
    if not isinstance(gt, dict):
        raise ValueError(f"evaluate_keypoints: {where} is not a COCO dict")
    for field in ("images", "annotations", "categories"):
        if not isinstance(gt.get(field), list):
            raise ValueError(f"evaluate_keypoints: {where} has no list field {field!r} (not COCO format)")
    needed = _GT_FIELDS + (("area",) if dataset == "coco" else ())
    for a in gt["annotations"]:
        missing = [f for f in needed if f not in a]
        if missing:
            raise ValueError(f"evaluate_keypoints: {where} annotation id {a.get('id')} (image_id "
                             f"{a.get('image_id')}) has no field {missing[0]!r}; {dataset} keypoint ground truth "
                             f"needs {', '.join(needed)}")
    return gt


def _load_results(results) -> list[dict]:
    results, where = _path_or_object(results, "results", "results")
    if not isinstance(results, list):
        raise ValueError(f"evaluate_keypoints: {where} must be a list of COCO result dicts")
    for i, r in enumerate(results):
        for field in ("image_id", "keypoints", "score"):
            if field not in r:
                raise ValueError(f"evaluate_keypoints: {where}[{i}] has no field {field!r}")
        r.setdefault("category_id", 1)
    return results


def _check_keypoint_count(gt: dict, results: list[dict], k: int, where: str,
                          caller: str = "evaluate_keypoints") -> None:
    for i, r in enumerate(results):
        if len(r["keypoints"]) != 3 * k:
            raise ValueError(f"{caller}: results[{i}] field 'keypoints' has {len(r['keypoints'])} "
                             f"values, expected {3 * k} for {where}")


def _check_finite(results: list[dict], caller: str = "evaluate_keypoints") -> None:
    """Refuse a result whose keypoints or score are not finite numbers: pycocotools counts a NaN similarity as a
    match (a NaN pose would score AP 1), so a model's NaN must never reach a metric."""
    if not results:
        return
    try:
        values = np.asarray([r["keypoints"] for r in results], dtype=np.float64)  # (R, 3K)
        scores = np.asarray([r["score"] for r in results], dtype=np.float64)  # (R,)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{caller}: results' fields 'keypoints' and 'score' must hold numbers ({err})") from err
    bad = ~np.isfinite(values).all(1) | ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        field = "score" if not np.isfinite(scores[i]) else "keypoints"
        raise ValueError(f"{caller}: results[{i}] (image_id {results[i]['image_id']}) has a non-finite {field} "
                         f"({results[i][field] if field == 'score' else 'NaN or inf among its values'}); "
                         f"{int(bad.sum())} of {len(results)} results are not finite")


def evaluate_keypoints(gt, results, dataset: str = "coco", verbose: bool = False,
                       image_ids=None) -> dict[str, float]:
    """COCO or CrowdPose keypoint AP / AR.

    Args:
        gt: ground truth, a path or a COCO dict (CrowdPose: with ``images[].crowdIndex``).
        results: a path or a list of COCO keypoint result dicts.
        dataset: ``"coco"`` (keys :data:`COCO_KEYS`) or ``"crowdpose"`` (keys :data:`CROWDPOSE_KEYS`).
        verbose: print the engine's summary table.
        image_ids: score on these images only (the others' persons would count as missed); None: all.
            ``gt`` itself is never changed.

    Returns:
        dict of floats; all zero (with a warning) when there are no results.
    """
    if dataset not in ("coco", "crowdpose"):
        raise ValueError(f"evaluate_keypoints: dataset must be 'coco' or 'crowdpose', got {dataset!r}")
    keep = None if image_ids is None else {_plain(i) for i in image_ids}
    # a dict is subset before _load_gt's copy, so that only the kept part is copied; a file after it is read
    early = keep is not None and isinstance(gt, dict) and all(isinstance(gt.get(f), list)
                                                              for f in ("images", "annotations"))
    gt = _load_gt(_subset(gt, keep) if early else gt, dataset)
    if keep is not None and not early:
        gt = _subset(gt, keep)
    results = _load_results(results)
    keys = COCO_KEYS if dataset == "coco" else CROWDPOSE_KEYS
    skeleton = COCO17 if dataset == "coco" else CROWDPOSE14
    _check_keypoint_count(gt, results, skeleton.num_joints, f"dataset={dataset!r}")
    _check_finite(results)
    if not results:
        log.warning("evaluate_keypoints: no results to evaluate; every metric is 0")
        return dict.fromkeys(keys, 0.0)
    known = {img["id"] for img in gt["images"]}
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        among = "the images of image_ids" if image_ids is not None else "the ground truth"
        raise ValueError(f"evaluate_keypoints: results name image ids that are not among {among}: "
                         f"{sorted(unknown, key=repr)[:5]}")
    gt.setdefault("info", {})
    gt.setdefault("licenses", [])
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        if dataset == "coco":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(results)
            ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
            ev.params.kpt_oks_sigmas = skeleton.sigmas_array()
        else:
            for img in gt["images"]:
                if "crowdIndex" not in img:
                    raise ValueError(f"evaluate_keypoints: image {img.get('id')} has no field 'crowdIndex' "
                                     f"(CrowdPose ground truth needs it)")
            from faster_coco_eval import COCO, COCOeval_faster

            coco_gt = COCO(gt)
            coco_dt = coco_gt.loadRes(results)
            ev = COCOeval_faster(coco_gt, coco_dt, iouType="keypoints_crowd",
                                 kpt_oks_sigmas=list(skeleton.sigmas), use_area=False,
                                 print_function=print if verbose else (lambda *a, **k: None))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = np.asarray(ev.stats, dtype=np.float64)
    return {k: float(v) for k, v in zip(keys, stats[: len(keys)])}


def to_coco_results(image_ids: Sequence[int], outputs: Sequence[dict], scales: Sequence | None = None,
                    min_score: float = 0.0) -> list[dict]:
    """Model outputs (one dict per image with ``keypoints`` (N, K, 3) and ``scores`` (N,)) -> COCO results.

    ``scales``, if given, are per-image (sx, sy) factors from the model's input pixels back to the original
    image (original = input * scale).
    """
    results = []
    for b, (image_id, out) in enumerate(zip(image_ids, outputs, strict=True)):
        kp = np.asarray(_numpy(out["keypoints"]), dtype=np.float64).copy()  # (N, K, 3)
        scores = np.asarray(_numpy(out["scores"]), dtype=np.float64).reshape(-1)  # (N,)
        if kp.ndim != 3 or kp.shape[-1] != 3 or kp.shape[0] != scores.shape[0]:
            raise ValueError(f"to_coco_results: output {b} must have keypoints (N, K, 3) and scores (N,), got "
                             f"{kp.shape} and {scores.shape}")
        if scales is not None:
            sx, sy = scales[b]
            kp[..., 0] *= sx
            kp[..., 1] *= sy
        for person, score in zip(kp, scores):
            if score < min_score:
                continue
            results.append(dict(image_id=int(image_id), category_id=1,
                                keypoints=[round(float(v), 3) for v in person.reshape(-1)], score=float(score)))
    return results


def results_to_crowdpose14(results: Sequence[dict]) -> list[dict]:
    """COCO-17 keypoint results -> CrowdPose-14 results (``coco17_to_crowdpose14``: limbs copied, neck and head
    top derived). Every predicted joint counts as labelled; joint scores do not enter OKS, so 1 is written."""
    from ..skeletons import coco17_to_crowdpose14

    out = []
    for r in results:
        if len(r["keypoints"]) != 51:
            raise ValueError(f"results_to_crowdpose14: result for image {r.get('image_id')} has "
                             f"{len(r['keypoints'])} values, expected 51 (COCO-17)")
        kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(17, 3).copy()
        kp[:, 2] = 2.0
        cp = coco17_to_crowdpose14(kp)
        cp[:, 2] = 1.0
        out.append(dict(r, keypoints=[round(float(v), 3) for v in cp.reshape(-1)]))
    return out


def _numpy(x):
    import torch

    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def write_coco_results(results: Iterable[dict], path: str | os.PathLike) -> None:
    """Write COCO keypoint results as JSON, atomically."""
    write_json(list(results), path, indent=None)


class KeypointEvaluator:
    """Collects model outputs batch by batch, then evaluates them in one go.

    >>> ev = KeypointEvaluator(gt_json, dataset="crowdpose")
    >>> for images, targets in loader:
    ...     ev.update(targets.image_ids, model(images), scales=targets.scale_to_original)
    >>> ev.compute()["AP"]
    """

    def __init__(self, gt, dataset: str = "coco", min_score: float = 0.0):
        self.gt = _load_gt(gt, dataset)
        self.dataset = dataset
        self.min_score = min_score
        self.results: list[dict] = []

    def update(self, image_ids: Sequence[int], outputs: Sequence[dict], scales: Sequence | None = None) -> None:
        self.results.extend(to_coco_results(image_ids, outputs, scales, self.min_score))

    def compute(self, verbose: bool = False) -> dict[str, float]:
        return evaluate_keypoints(self.gt, self.results, dataset=self.dataset, verbose=verbose)

    def save(self, path: str | os.PathLike) -> None:
        write_coco_results(self.results, path)
