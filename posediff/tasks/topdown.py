"""The top-down task: one person crop per box (ground truth or a detector's), its keypoints out; COCO keypoint AP.

Recipes ``simplebaseline`` and ``diffusionpose`` (and their ``_tiny`` forms) run through it. The images come from
the same data config as the one-stage task's (SynthCrowd, COCO, CrowdPose; :class:`TopDownData` adds what is
top-down's own). Results are scored as the top-down literature scores them: each person's score is its box's
score times the mean of its keypoint scores above 0.2, and an OKS-NMS per image (0.9) removes duplicates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import Task, TaskData, _number, _refused
from .multiperson import (
    DataConfig,
    check_synthcrowd_meta,
    check_synthcrowd_zoo_run,
    score_results,
    split_size,
    synthcrowd_meta,
    synthcrowd_test_split,
)

__all__ = ["TopDownData", "TopDownTask", "crop_datasets", "predict_crop_results", "rescore",
           "score_topdown_on_synthcrowd_test"]


@dataclass(frozen=True)
class TopDownData(DataConfig):
    """The one-stage :class:`~posediff.tasks.multiperson.DataConfig` (where the images come from) and the crops'.

    ``boxes``: the validation persons: ``"gt"`` (every labelled person's box, score 1) or a COCO detection
    results file (person boxes with ``score >= det_min_score``). ``aug_scale``, ``aug_rotation``,
    ``rotation_prob``, ``half_body_prob``: :class:`~posediff.data.topdown.CropAugment` (flips: ``flip``, and
    ``pixel_noise`` as for one-stage training). ``nms``: the OKS threshold of the per-image NMS.
    """

    boxes: str = "gt"
    det_min_score: float = 0.0
    aug_scale: float = 0.5
    aug_rotation: float = 40.0
    rotation_prob: float = 0.6
    half_body_prob: float = 0.3
    nms: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        bad = _refused(self, "data.", [
            ("boxes", isinstance(self.boxes, str) and bool(self.boxes), "'gt' or a detection results file"),
            ("det_min_score", _number(self.det_min_score), "a finite number"),
            ("aug_scale", _number(self.aug_scale) and 0 <= self.aug_scale < 1, "a number in [0, 1)"),
            ("aug_rotation", _number(self.aug_rotation) and self.aug_rotation >= 0, "a finite number >= 0"),
            ("rotation_prob", _number(self.rotation_prob) and 0 <= self.rotation_prob <= 1, "a number in [0, 1]"),
            ("half_body_prob", _number(self.half_body_prob) and 0 <= self.half_body_prob <= 1, "a number in [0, 1]"),
            ("nms", _number(self.nms) and 0 < self.nms <= 1, "a number in (0, 1] (1: no NMS)")])
        if bad:
            raise ValueError(bad)


def _model_config(cfg):
    from ..registry import get_config

    return get_config(cfg.recipe, **cfg.model)


def crop_datasets(d: TopDownData, model_cfg, seed: int = 0, rank: int = 0, boxes: str | None = None):
    """(train crops, val crops, val annotation file, metric name, val image ids) of a data config for a top-down
    model config (its input size, stride, sigma and padding); ``boxes`` overrides ``d.boxes``."""
    from ..data import CocoKeypointDataset
    from ..data.topdown import CropAugment, HeatmapCodec, PersonCrops, gt_instances, image_sizes, load_detections
    from ..skeletons import get_skeleton
    from .multiperson import data_files

    skeleton = get_skeleton(d.skeleton)
    train_images, train_ann, val_images, val_ann = data_files(d, rank)
    train_src = CocoKeypointDataset(train_images, train_ann, skeleton=skeleton)
    val_src = CocoKeypointDataset(val_images, val_ann, skeleton=skeleton)
    if d.kind == "synthcrowd":
        from ..data.synthcrowd import check_renderer

        check_renderer(train_ann, train_src.coco.dataset)
        check_renderer(val_ann, val_src.coco.dataset)
    ids = val_src.ids[: d.max_val_images] if d.max_val_images is not None else val_src.ids
    boxes = d.boxes if boxes is None else boxes
    k = skeleton.num_joints
    if boxes == "gt":
        val_inst = gt_instances(val_src.coco, ids, k)
    else:
        keep = set(ids)
        dets = load_detections(boxes, image_sizes(val_src.coco), d.det_min_score)
        val_inst = [i for i in dets if i["image_id"] in keep]
    codec = HeatmapCodec(tuple(model_cfg.input_size), model_cfg.stride, model_cfg.sigma)
    augment = CropAugment(scale=d.aug_scale, rotation=d.aug_rotation, rotation_prob=d.rotation_prob,
                          half_body_prob=d.half_body_prob, flip=d.flips, pixel_noise=d.pixel_noise)
    train = PersonCrops(train_src, gt_instances(train_src.coco, train_src.ids, k), codec, augment,
                        padding=model_cfg.padding, seed=seed)
    val = PersonCrops(val_src, val_inst, codec, None, padding=model_cfg.padding)
    metric = "coco" if skeleton.name == "coco17" else "crowdpose"
    return train, val, str(val_ann), metric, list(ids)


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Person scores (N,): box score x the mean keypoint score over joints scoring above ``threshold`` (0 if none)."""
    s = keypoints[..., 2]  # (N, K)
    above = s > threshold
    mean = np.where(above.any(1), (s * above).sum(1) / np.maximum(above.sum(1), 1), 0.0)
    return box_scores * mean


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, skeleton, threshold: float) -> np.ndarray:
    """Indices of one image's persons (keypoints (N, K, 3) image px, scores (N,), areas (N,) px²) that OKS-NMS at
    ``threshold`` keeps, best first (``threshold >= 1``: all)."""
    from ..models.postprocess import pose_nms

    if threshold >= 1 or len(keypoints) < 2:
        return np.argsort(-np.asarray(scores), kind="stable")
    kept = pose_nms(torch.as_tensor(keypoints[..., :2]), torch.as_tensor(scores), torch.as_tensor(areas),
                    torch.as_tensor(skeleton.sigmas_array()), threshold=threshold, max_det=len(keypoints))
    return kept.numpy()


@torch.no_grad()
def predict_crop_results(model, dataset, steps: Sequence[int | None] = (None,), batch_size: int = 32, device="cpu",
                         nms: float = 0.9, seed: int = 0, progress: bool = False) -> dict:
    """``{s: COCO keypoint results}`` of a top-down model over every crop of ``dataset`` at each sampling-step count
    ``s`` (None: the model's own), the backbone run once per batch; each count has its own generator seeded by
    ``seed``. Persons are rescored (:func:`rescore`) and OKS-NMSed per image at ``nms``."""
    from tqdm import tqdm

    from ..data.topdown import collate_crops
    from ..models.topdown import to_image

    steps = list(dict.fromkeys(steps))
    was = model.training
    model.eval()
    gens = [torch.Generator().manual_seed(seed) for _ in steps]
    kps: dict = {s: [] for s in steps}
    ids, scores, areas = [], [], []
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
        crops, t = collate_crops([dataset[i] for i in range(start, min(start + batch_size, n))])
        maps = model.heatmaps_at_steps(crops.to(device), steps, gens)
        for s, hm in zip(steps, maps):
            kp = model.codec.decode(hm).cpu().double().numpy()  # (B, K, 3) input px
            kps[s].append(to_image(kp, t["matrix"].numpy()))
        ids.append(t["image_id"].numpy())
        scores.append(t["score"].numpy())
        areas.append(t["area"].numpy())
    model.train(was)
    if not n:
        return {s: [] for s in steps}
    ids, scores, areas = np.concatenate(ids), np.concatenate(scores), np.concatenate(areas)
    out = {}
    for s in steps:
        kp = np.concatenate(kps[s])
        person = rescore(kp, scores)
        results = []
        for image_id in np.unique(ids):
            idx = np.flatnonzero(ids == image_id)
            for i in idx[oks_nms(kp[idx], person[idx], areas[idx], model.skeleton, nms)]:
                results.append(dict(image_id=int(image_id), category_id=1,
                                    keypoints=[round(float(v), 3) for v in kp[i].reshape(-1)], score=float(person[i])))
        out[s] = results
    return out


def score_topdown_on_synthcrowd_test(model, root=None, num_images: int = 400, size: int = 256, scene_seed: int = 0,
                                     boxes: str = "gt", det_min_score: float = 0.0, nms: float = 0.9,
                                     steps: int | None = None, progress: bool = False) -> dict:
    """COCO-17 and CrowdPose-14 metrics of a top-down ``model`` on a SynthCrowd test split
    (:func:`synthcrowd_test_split`), its persons from the ground-truth boxes (``boxes="gt"``) or a detection
    results file (boxes scoring at least ``det_min_score``); ``nms``: the per-image OKS-NMS threshold."""
    from ..data import CocoKeypointDataset
    from ..data.synthcrowd import RENDERER_VERSION
    from ..data.topdown import PersonCrops, gt_instances, image_sizes, load_detections

    with synthcrowd_test_split(root, num_images, size, scene_seed, progress) as (root, gts):
        src = CocoKeypointDataset(str(root / "test" / "images"), gts["crowdpose" if model.num_keypoints == 14
                                                                      else "coco"], skeleton=model.skeleton)
        k = model.num_keypoints
        inst = (gt_instances(src.coco, src.ids, k) if boxes == "gt"
                else load_detections(boxes, image_sizes(src.coco), det_min_score))
        crops = PersonCrops(src, inst, model.codec, padding=model.padding)
        results = predict_crop_results(model, crops, (steps,), device=next(model.parameters()).device, nms=nms,
                                       progress=progress)[steps]
        metrics = score_results(results, gts, [int(i) for i in src.ids])
    return dict(metrics, test_split=dict(images=len(src.ids), size=size, scene_seed=scene_seed, persons=len(inst),
                                         boxes="ground truth" if boxes == "gt" else Path(boxes).name, nms=nms,
                                         renderer=RENDERER_VERSION))


class TopDownTask(Task):
    """Person crops in, their keypoints out, scored by COCO / CrowdPose keypoint AP over the images."""

    name = "topdown"
    data_config = TopDownData
    log_keys = ("heatmap", "coarse")

    def resolve(self, cfg):
        if type(cfg.data) is DataConfig:  # a one-stage data config: the same images, top-down's defaults
            return dataclasses.replace(cfg, data=TopDownData(**dataclasses.asdict(cfg.data)))
        return cfg

    def check(self, cfg) -> None:
        if not isinstance(cfg.data, TopDownData):
            raise ValueError(f"recipe {cfg.recipe} is a top-down recipe: its data config must be a TopDownData "
                             f"(or a DataConfig, read as one), got {type(cfg.data).__name__}")

    def check_model(self, model, cfg) -> None:
        from ..skeletons import get_skeleton

        joints = get_skeleton(cfg.data.skeleton).num_joints
        if model.num_keypoints != joints:
            raise ValueError(f"recipe {cfg.recipe}: the model predicts {model.num_keypoints} joints but data.skeleton="
                             f"{cfg.data.skeleton!r} has {joints}; set model.skeleton={cfg.data.skeleton!r}")

    def build(self, cfg, rank: int = 0) -> TaskData:
        train, val, ann, metric, ids = crop_datasets(cfg.data, _model_config(cfg), cfg.seed, rank)
        return TaskData(train, val, ann_file=ann, metric=metric, image_ids=ids)

    def collate(self, items):
        from ..data.topdown import collate_crops

        return collate_crops(items)

    def losses(self, net, batch, device) -> dict:
        crops, t = batch
        return net(crops.to(device), {k: v.to(device) for k, v in t.items()})

    def evaluate(self, model, data: TaskData, cfg, device, progress: bool = False) -> dict:
        from ..evaluation import evaluate_keypoints

        results = predict_crop_results(model, data.val, batch_size=max(cfg.batch_size, 32), device=device,
                                       nms=cfg.data.nms, progress=progress)[None]
        return evaluate_keypoints(data.info["ann_file"], results, dataset=data.info["metric"],
                                  image_ids=data.info["image_ids"])

    def check_zoo_run(self, meta: dict, data: dict, checkpoint) -> None:
        check_synthcrowd_zoo_run(meta, data, checkpoint)

    def zoo_metrics(self, model, data: dict, data_root=None, eval_size: int | None = None) -> dict:
        td = TopDownData.from_saved(data)
        return score_topdown_on_synthcrowd_test(model, root=data_root or td.root,
                                                num_images=split_size(td.num_images, "test"), size=td.size,
                                                scene_seed=td.scene_seed, nms=td.nms)

    def checkpoint_meta(self, cfg) -> dict:
        return synthcrowd_meta(cfg.data)

    def check_checkpoint(self, meta: dict, path, action: str, cfg) -> None:
        if cfg.data.kind == "synthcrowd":
            check_synthcrowd_meta(meta, path, action)
