"""The lifting task: a 2D pose (or T frames of one) and its per-joint uncertainty in, a 3D pose out; MPJPE.

Recipes ``lifting_context``, ``lifting_baseline``, ``diffpose`` and ``diffpose_video`` run through it. Data
(:class:`LiftingData`): MocapLift (the embedded default, :mod:`posediff.data.mocaplift`) or Human3.6M in
VideoPose3D's files (:mod:`posediff.data.h36m`). Validation scores the mean hypothesis: P1 (MPJPE) and P2
(P-MPJPE) in millimetres, each the mean over actions of the per-action means (the Human3.6M protocol).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .base import Task, TaskData, _int, _number, _refused

__all__ = ["LiftingData", "LiftingTask", "collate_lifting", "predict_poses", "score_on_mocaplift_test", "score_poses"]


@dataclass(frozen=True)
class LiftingData:
    """Where the 2D/3D pairs come from.

    ``kind="mocaplift"``: MocapLift made on the fly (``seed``: its placement and 2D-error draws; ``noise``,
    ``swap_prob``, ``snap_prob``: its detector model, :class:`~posediff.data.mocaplift.MocapLiftConfig`).
    ``kind="h36m"``: ``positions_3d`` and ``positions_2d`` (VideoPose3D's ``data_3d_h36m.npz`` and a
    ``data_2d_h36m_*.npz``), training subjects S1, S5-S8 every ``stride``-th frame, validation S9, S11 every
    ``val_stride``-th frame (the test subjects: Human3.6M has no validation subjects; nothing is chosen on
    them). ``train_size`` / ``val_size`` keep that many items, evenly spaced through the split (None: all).
    """

    kind: str = "mocaplift"
    seed: int = 0
    train_size: int | None = None
    val_size: int | None = None
    val_split: str = "val"  # MocapLift's split validated on: "val" or "test"
    noise: float = 0.25
    swap_prob: float = 0.03
    snap_prob: float = 0.01
    positions_3d: str = ""
    positions_2d: str = ""
    stride: int = 1
    val_stride: int = 1

    def __post_init__(self):
        bad = _refused(self, "data.", [
            ("kind", self.kind in ("mocaplift", "h36m"), "'mocaplift' or 'h36m'"),
            ("seed", _int(self.seed) and self.seed >= 0, "an integer >= 0"),
            ("train_size", self.train_size is None or (_int(self.train_size) and self.train_size >= 1),
             "None or an integer >= 1"),
            ("val_size", self.val_size is None or (_int(self.val_size) and self.val_size >= 1),
             "None or an integer >= 1"),
            ("val_split", self.val_split in ("val", "test"), "'val' or 'test'"),
            ("noise", _number(self.noise) and self.noise >= 0, "a finite number >= 0"),
            ("stride", _int(self.stride) and self.stride >= 1, "an integer >= 1"),
            ("val_stride", _int(self.val_stride) and self.val_stride >= 1, "an integer >= 1")])
        if bad:
            raise ValueError(bad)

    @classmethod
    def from_saved(cls, saved: dict) -> LiftingData:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


def collate_lifting(items: list[dict]) -> dict:
    """Items of :class:`~posediff.data.mocaplift.MocapLift` / :class:`~posediff.data.h36m.H36MLifting` → a batch:
    ``keypoints_2d`` (B, T, J, 2), ``uncertainty`` (B, T, J, K, 5) or None, ``pose_3d`` (B, J, 3) mm, ``action``."""
    batch = {"keypoints_2d": torch.stack([it["keypoints_2d"] for it in items]),
             "pose_3d": torch.stack([it["pose_3d"] for it in items]),
             "action": [it["action"] for it in items]}
    batch["uncertainty"] = (torch.stack([it["uncertainty"] for it in items]) if "uncertainty" in items[0]
                            else None)
    return batch


@torch.no_grad()
def predict_poses(model, dataset, batch_size: int = 256, device="cpu", hypotheses: int | None = None,
                  steps: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Every item's hypotheses (N, H, J, 3) mm, targets (N, J, 3) mm and actions, predicted in batches from one
    generator seeded by ``seed``."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    preds, targets, actions = [], [], []
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
        b = collate_lifting([dataset[i] for i in range(start, min(start + batch_size, n))])
        unc = b["uncertainty"].to(device) if b["uncertainty"] is not None else None
        out = model.predict(b["keypoints_2d"].to(device), unc, hypotheses=hypotheses, steps=steps, generator=gen)
        preds.append(out.cpu().double() * 1000.0)
        targets.append(b["pose_3d"].double())
        actions += b["action"]
    model.train(was_training)
    return {"hypotheses": torch.cat(preds).numpy(), "targets": torch.cat(targets).numpy(), "actions": actions}


def score_poses(hypotheses: np.ndarray, targets: np.ndarray, actions: list[str]) -> dict:
    """P1 / P2 of the mean hypothesis (per action, then their mean: the protocol), best-of-H (oracle), the
    first hypothesis alone, and the hypotheses' spread, in mm."""
    from ..evaluation.mpjpe import action_means, hypothesis_errors

    errs = hypothesis_errors(hypotheses, targets)
    p1, p2 = action_means(errs["mean_p1"], actions), action_means(errs["mean_p2"], actions)
    best = action_means(errs["best_p1"], actions)
    out = {"P1": p1["mean"], "P2": p2["mean"],
           "P1_best": best["mean"],
           "P2_best": action_means(errs["best_p2"], actions)["mean"],
           "P1_first": action_means(errs["first_p1"], actions)["mean"],
           "spread": float(errs["spread"].mean()),
           "P1_per_action": p1["per_action"], "P2_per_action": p2["per_action"],
           "P1_best_per_action": best["per_action"],
           "poses": int(len(targets)), "hypotheses": int(hypotheses.shape[1])}
    if hypotheses.shape[1] > 1 and errs["spread"].std() > 0:
        out["spread_error_corr"] = float(np.corrcoef(errs["spread"], errs["mean_p1"])[0, 1])
    return out


def score_on_mocaplift_test(model, seed: int = 0, size: int | None = None, progress: bool = False) -> dict:
    """P1 / P2 (mean hypothesis, per action then mean), best-of-N and spread of a lifting ``model`` on MocapLift's
    test split (``seed``: its placement and 2D draws; ``size``: the first poses only), in mm."""
    from ..data.mocaplift import MocapLift

    ds = MocapLift("test", seed=seed, frames=model.frames, size=size)
    pred = predict_poses(model, ds, batch_size=256, progress=progress)
    scores = score_poses(pred["hypotheses"], pred["targets"], pred["actions"])
    return dict(scores, test_split=dict(dataset="mocaplift", split="test", seed=seed, poses=len(ds)))


class LiftingTask(Task):
    """2D → 3D: MocapLift or Human3.6M, scored by MPJPE."""

    name = "lifting"
    data_config = LiftingData
    log_keys = ("pose", "context")

    def resolve(self, cfg):
        from ..tasks.multiperson import DataConfig

        if isinstance(cfg.data, DataConfig) and cfg.data == DataConfig():  # the default: this task's own
            return dataclasses.replace(cfg, data=LiftingData())
        return cfg

    def check(self, cfg) -> None:
        if not isinstance(cfg.data, LiftingData):
            raise ValueError(f"recipe {cfg.recipe} is a lifting recipe: its data config must be a LiftingData "
                             f"(MocapLift or Human3.6M), got {type(cfg.data).__name__}")
        if cfg.data.kind == "h36m":
            unset = [f"data.{f}" for f in ("positions_3d", "positions_2d") if not getattr(cfg.data, f)]
            if unset:
                raise ValueError(f"data.kind='h36m' reads VideoPose3D's files from data.positions_3d and "
                                 f"data.positions_2d; {', '.join(unset)} not set")

    def check_model(self, model, cfg) -> None:
        from ..registry import get_config

        lc = get_config(cfg.recipe, **cfg.model)
        if lc.head != "none" and lc.freeze_context and not lc.context_weights:
            raise ValueError(f"recipe {cfg.recipe}: its context encoder is frozen (model.freeze_context=True) but "
                             f"no pretrained one is given (model.context_weights); train lifting_context first "
                             f"and give its checkpoint, or set model.freeze_context=False to train both")

    def _frames(self, cfg) -> int:
        from ..registry import get_config

        return int(get_config(cfg.recipe, **cfg.model).frames)

    def build(self, cfg, rank: int = 0) -> TaskData:
        d = cfg.data
        frames = self._frames(cfg)
        if d.kind == "mocaplift":
            from ..data.mocaplift import MocapLift, MocapLiftConfig

            look = MocapLiftConfig(noise=d.noise, swap_prob=d.swap_prob, snap_prob=d.snap_prob)
            train = MocapLift("train", seed=d.seed, frames=frames, config=look, size=d.train_size)
            val = MocapLift(d.val_split, seed=d.seed, frames=frames, config=look, size=d.val_size)
        else:
            from ..data.h36m import H36MLifting

            train = H36MLifting(d.positions_3d, d.positions_2d, "train", stride=d.stride, frames=frames)
            val = H36MLifting(d.positions_3d, d.positions_2d, "test", stride=d.val_stride, frames=frames)
            train.set_epoch = lambda epoch: None  # fixed detections: nothing changes between epochs
            if d.val_size is not None:  # evenly spaced: every subject, action and camera represented
                keep = np.linspace(0, len(val.index) - 1, min(d.val_size, len(val.index))).round().astype(np.int64)
                val.index = [val.index[i] for i in keep]
        return TaskData(train, val)

    def collate(self, items):
        return collate_lifting(items)

    def losses(self, net, batch, device) -> dict:
        unc = batch["uncertainty"].to(device) if batch["uncertainty"] is not None else None
        return net(batch["keypoints_2d"].to(device), batch["pose_3d"].to(device) / 1000.0, unc)

    def evaluate(self, model, data: TaskData, cfg, device, progress: bool = False) -> dict:
        pred = predict_poses(model, data.val, batch_size=max(cfg.batch_size, 64), device=device, progress=progress)
        scores = score_poses(pred["hypotheses"], pred["targets"], pred["actions"])
        return {k: v for k, v in scores.items() if not isinstance(v, dict)}

    def check_zoo_run(self, meta: dict, data: dict, checkpoint) -> None:
        if data.get("kind") != "mocaplift":
            raise ValueError(f"{checkpoint}: config field data.kind is {data.get('kind')!r}; the zoo records lifting "
                             f"metrics on MocapLift's test split, so it takes runs trained on MocapLift")

    def zoo_metrics(self, model, data: dict, data_root=None, eval_size: int | None = None) -> dict:
        return score_on_mocaplift_test(model, seed=int(data.get("seed", 0)))
