"""Training: one process or torchrun DDP, the same code.

    posediff train configs/edpose_tiny_synthcrowd.py [key=value ...] [--resume]
    torchrun --nproc_per_node N -m posediff train CONFIG [key=value ...]

AdamW with a backbone learning-rate multiplier, step decay, gradient clipping, optional EMA, AMP on GPU,
tqdm progress, periodic evaluation with ``evaluate_keypoints``, atomic checkpoints (safetensors +
training state) and exact resumption. On CPU a run is deterministic: the data order of epoch e is a
permutation seeded by (seed, e), every item's augmentation is seeded by (seed, e, index), and the global
RNG state (timesteps, noise, dropout) is saved with each checkpoint.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import runpy
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import write_json
from .checkpoint import (
    RUN_FILES,
    checkpoint_step,
    init_from,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    newest_intact,
    resume_hint,
    save_checkpoint,
)

__all__ = ["DataConfig", "TrainConfig", "load_config", "apply_overrides", "train", "train_step", "optimization",
           "epoch_loader", "build_datasets", "evaluate", "predict_results", "predict_results_at_steps", "coco_data",
           "crowdpose_data"]

log = logging.getLogger(__name__)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sizes(values, least: int = 32) -> bool:
    return isinstance(values, (tuple, list)) and len(values) > 0 and all(_int(v) and v >= least for v in values)


def _refused(cfg, prefix: str, checks: list) -> str:
    """One sentence naming every field of ``cfg`` whose check failed (``(name, ok, expected)``), or ''."""
    bad = [f"{prefix}{name} must be {expected}, got {getattr(cfg, name)!r}" for name, ok, expected in checks if not ok]
    return f"config field {'; '.join(bad)}" if bad else ""


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from.

    ``kind="synthcrowd"``: the written SynthCrowd splits under ``root`` (rendered there first if missing,
    ``num_images`` in all, ``size`` pixels, ``scene_seed``). ``kind="coco"``: ``train_images`` /
    ``train_ann`` and ``val_images`` / ``val_ann`` (COCO or CrowdPose format, by ``skeleton``).
    """

    kind: str = "synthcrowd"
    root: str = "data/synthcrowd"
    num_images: int = 2000
    size: int = 256
    scene_seed: int = 0
    skeleton: str = "coco17"
    train_images: str = ""
    train_ann: str = ""
    val_images: str = ""
    val_ann: str = ""
    val_split: str = "val"
    prior: str | None = "coco17"  # completion targets for the diffusion head
    train_scales: tuple[int, ...] = (224, 256, 288)
    crop_scales: tuple[int, ...] = (192, 224)
    crop_size: tuple[int, int] = (160, 224)
    max_size: int = 400
    # shorter side at evaluation; None: the largest training scale, as ED-Pose evaluates COCO at 800, the largest
    # of its. SynthCrowd's persons are small: on its val split the stage-4 zoo edpose_tiny scored CrowdPose AP
    # 0.239 at 256 and 0.259 at 288 (docs/benchmarks.md)
    eval_size: int | None = None
    # horizontal flips (labels swapped); None: on for photographs, off for SynthCrowd, whose renderer mirrors
    # poses itself and draws left limbs darker: a flipped picture would show that cue on the right
    flip: bool | None = None
    pixel_noise: float = 6.0
    max_val_images: int | None = None

    def __post_init__(self):
        if isinstance(self.root, os.PathLike):  # a Path is the folder it names
            object.__setattr__(self, "root", os.fspath(self.root))
        bad = _refused(self, "data.", [
            ("kind", self.kind in ("synthcrowd", "coco"), "'synthcrowd' or 'coco'"),
            ("num_images", _int(self.num_images) and self.num_images >= 1, "an integer >= 1 (scenes in all)"),
            ("size", _int(self.size) and self.size >= 32, "an integer >= 32 (pixels)"),
            ("scene_seed", _int(self.scene_seed) and self.scene_seed >= 0, "an integer >= 0"),
            ("train_scales", _sizes(self.train_scales), "one or more integers >= 32 (pixels)"),
            ("crop_scales", _sizes(self.crop_scales, least=1), "one or more integers >= 1 (pixels)"),
            ("crop_size", _sizes(self.crop_size, least=1) and len(self.crop_size) == 2
             and self.crop_size[0] <= self.crop_size[1], "(smallest, largest) integers >= 1, smallest first"),
            ("max_size", _int(self.max_size) and self.max_size >= 32, "an integer >= 32 (pixels)"),
            ("eval_size", self.eval_size is None or (_int(self.eval_size) and self.eval_size >= 32),
             "None or an integer >= 32 (pixels)"),
            ("pixel_noise", _number(self.pixel_noise) and self.pixel_noise >= 0, "a finite number >= 0"),
            ("max_val_images", self.max_val_images is None or (_int(self.max_val_images) and self.max_val_images >= 1),
             "None or an integer >= 1")])
        if bad:
            raise ValueError(bad)

    @property
    def flips(self) -> bool:
        """Whether training flips: ``flip`` as set, or by default on for photographs and off for SynthCrowd."""
        return self.flip if self.flip is not None else self.kind != "synthcrowd"

    @classmethod
    def from_saved(cls, saved: dict) -> DataConfig:
        """The data config a run recorded (``config.json``'s or a checkpoint's ``config["data"]``, JSON lists for
        tuples); fields this version does not know are left out, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})

    @property
    def eval_scale(self) -> int:
        """The shorter side images are evaluated at: ``eval_size`` as set, or the largest training scale."""
        return self.eval_size if self.eval_size is not None else max(self.train_scales)


# ED-Pose's augmentation sizes for real photographs
REAL_SIZES = dict(train_scales=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), crop_scales=(400, 500, 600),
                  crop_size=(384, 600), max_size=1333, pixel_noise=0.0)


def coco_data(root: str = "data/coco", **fields) -> DataConfig:
    """COCO 2017 in its download layout: ROOT/{train2017,val2017}/ and ROOT/annotations/person_keypoints_*.json."""
    r = Path(root)
    return DataConfig(**{**dict(kind="coco", skeleton="coco17", train_images=str(r / "train2017"),
                                train_ann=str(r / "annotations" / "person_keypoints_train2017.json"),
                                val_images=str(r / "val2017"),
                                val_ann=str(r / "annotations" / "person_keypoints_val2017.json"), **REAL_SIZES),
                         **fields})


def crowdpose_data(root: str = "data/crowdpose", **fields) -> DataConfig:
    """CrowdPose in its download layout: ROOT/images/ and ROOT/json/crowdpose_{trainval,test}.json."""
    r = Path(root)
    return DataConfig(**{**dict(kind="coco", skeleton="crowdpose14", prior=None, train_images=str(r / "images"),
                                train_ann=str(r / "json" / "crowdpose_trainval.json"), val_images=str(r / "images"),
                                val_ann=str(r / "json" / "crowdpose_test.json"), **REAL_SIZES), **fields})


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "edpose_tiny"
    model: dict = field(default_factory=dict)  # overrides of the recipe's config
    data: DataConfig = DataConfig()
    out: str = "runs/edpose_tiny"
    seed: int = 0
    batch_size: int = 4
    workers: int = 0
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    max_steps: int = 1000
    lr_drop: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    clip_grad: float = 0.1
    ema_decay: float = 0.0  # 0: no EMA
    amp: bool = True  # bfloat16 autocast, on GPU only
    eval_every: int = 0  # 0: only at the end
    ckpt_every: int = 200
    log_every: int = 10
    keep_checkpoints: int = 2

    def __post_init__(self):
        if isinstance(self.out, os.PathLike):  # a Path is the folder it names
            object.__setattr__(self, "out", os.fspath(self.out))
        zero = {"eval_every": " (0: only at the end)", "keep_checkpoints": " (0: keep them all)"}
        for name, least in (("batch_size", 1), ("max_steps", 1), ("ckpt_every", 1), ("log_every", 1),
                            ("keep_checkpoints", 0), ("workers", 0), ("eval_every", 0), ("seed", 0)):
            value = getattr(self, name)
            if not _int(value) or value < least:
                raise ValueError(f"config field {name} must be an integer >= {least}{zero.get(name, '')}, got "
                                 f"{value!r}")
        bad = _refused(self, "", [
            ("lr", _number(self.lr) and self.lr > 0, "a finite number > 0 (a learning rate)"),
            ("backbone_lr_mult", _number(self.backbone_lr_mult) and self.backbone_lr_mult >= 0,
             "a finite number >= 0 (0: the backbone does not learn)"),
            ("weight_decay", _number(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("lr_gamma", _number(self.lr_gamma) and self.lr_gamma > 0, "a finite number > 0 (the lr's factor at a "
                                                                        "drop)"),
            ("lr_drop", isinstance(self.lr_drop, (tuple, list)) and all(_int(s) and s >= 1 for s in self.lr_drop),
             "steps, integers >= 1"),
            ("clip_grad", _number(self.clip_grad) and self.clip_grad >= 0, "a finite number >= 0 (0: no clipping)"),
            ("ema_decay", _number(self.ema_decay) and 0 <= self.ema_decay < 1, "a number in [0, 1) (0: no EMA)"),
            ("recipe", isinstance(self.recipe, str) and bool(self.recipe), "a recipe name"),
            ("out", isinstance(self.out, str) and bool(self.out.strip()), "a folder")])
        if bad:
            raise ValueError(bad)


# ----------------------------------------------------------------------------------------------------
# Config files and overrides
# ----------------------------------------------------------------------------------------------------

def load_config(path) -> TrainConfig:
    """A Python config file defining ``config`` (a :class:`TrainConfig`).

    Config files compose by import: the file's folder is on ``sys.path`` while it runs, so
    ``from data_synthcrowd import data`` picks up a sibling file.
    """
    import sys
    import traceback

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    folder = path.resolve().parent
    sys.path.insert(0, str(folder))
    try:
        ns = runpy.run_path(str(path))
    except SyntaxError as err:  # the user's line, with the pointer under it
        pointer = ""
        if err.text:
            pointer = f": {err.text.strip()}" + (f" (column {err.offset})" if err.offset else "")
        raise ValueError(f"{err.filename or path}:{err.lineno}: {err.msg}{pointer}") from err
    except Exception as err:  # an error of the config's own code (a NameError, a refused field): its line
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve().parent == folder]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else str(path)
        raise ValueError(f"{where}: {type(err).__name__}: {err}") from err
    finally:
        sys.path.remove(str(folder))
    cfg = ns.get("config")
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"{path}: must define `config = TrainConfig(...)`, found {type(cfg).__name__}")
    return cfg


def _parse(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


_SCALARS = {"int": (lambda v: isinstance(v, int) and not isinstance(v, bool), int),
            "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), float),
            "bool": (lambda v: isinstance(v, bool), bool),
            "str": (lambda v: isinstance(v, str), str)}


def _typed(item: str, value: str, obj, name: str):
    """An override's value as field ``name`` of the dataclass ``obj`` declares it (``lr=1`` is 1.0; text with
    or without quotes; ``None`` where the field allows it); a value of another type or tuple length is
    refused, naming the override and the field's type."""
    annotation = str(next(f.type for f in dataclasses.fields(obj) if f.name == name))  # e.g. "tuple[int, int]"
    kinds = [k.strip() for k in annotation.split("|")]
    val = _parse(value)
    if val is None and "None" in kinds:
        return None
    base = next((k for k in kinds if k != "None"), "")
    if base == "str":
        return val if isinstance(val, str) else value  # data.root=2024 is the folder "2024"
    if base in _SCALARS and _SCALARS[base][0](val):
        return _SCALARS[base][1](val)
    if base.startswith("tuple[") and isinstance(val, (tuple, list)):
        inner = [k.strip() for k in base[len("tuple["):-1].split(",")]
        kinds_of = [inner[0]] * len(val) if inner[-1] == "..." else inner
        if len(kinds_of) == len(val) and all(_SCALARS[k][0](v) for k, v in zip(kinds_of, val)):
            return tuple(_SCALARS[k][1](v) for k, v in zip(kinds_of, val))
    example = getattr(obj, name)
    raise ValueError(f"override {item!r}: field {name} is {annotation}"
                     + (f" (now {example!r:.60})" if example not in (None, ()) else "") + f", got {value!r}")


def _model_value(cfg: TrainConfig, item: str, name: str, value: str):
    """A ``model.FIELD=value`` override typed by the recipe's config (``posediff.get_config``); a recipe that does
    not expose its config gets the literal as written and checks it when it builds."""
    from ..registry import get_config, get_recipe

    try:
        exposed = callable(getattr(get_recipe(cfg.recipe), "config", None))
    except KeyError as err:
        raise ValueError(f"override {item!r}: config field recipe: {err.args[0]}") from None
    if not exposed:
        return _parse(value)
    try:
        base = get_config(cfg.recipe, **cfg.model)
    except (TypeError, ValueError) as err:  # the config's own model fields, before this override
        raise ValueError(f"override {item!r}: the config's model fields {cfg.model} do not fit recipe "
                         f"{cfg.recipe}: {err}") from err
    names = {f.name for f in dataclasses.fields(base)}
    if name not in names:
        raise ValueError(f"override {item!r}: recipe {cfg.recipe} has no config field {name!r}; fields: "
                         f"{sorted(names)}")
    return _typed(item, value, base, name)


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """``key=value`` overrides: ``lr=2e-4``, ``data.num_images=200``, ``model.sampling_steps=2``."""
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        parts = key.split(".")
        if parts[0] == "model":
            if len(parts) != 2:
                raise ValueError(f"override {item!r}: use model.FIELD=value")
            cfg = dataclasses.replace(cfg, model={**cfg.model, parts[1]: _model_value(cfg, item, parts[1], value)})
        elif parts[0] == "data" and len(parts) == 2:
            names = {f.name for f in dataclasses.fields(DataConfig)}
            if parts[1] not in names:
                raise ValueError(f"override {item!r}: DataConfig has no field {parts[1]!r}; fields: {sorted(names)}")
            val = _typed(item, value, cfg.data, parts[1])
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **{parts[1]: val}))
        elif len(parts) == 1:
            names = {f.name for f in dataclasses.fields(TrainConfig)}
            if key not in names:
                raise ValueError(f"override {item!r}: TrainConfig has no field {key!r}; fields: {sorted(names)}")
            cfg = dataclasses.replace(cfg, **{key: _typed(item, value, cfg, key)})
        else:
            raise ValueError(f"override {item!r}: unknown key")
    return cfg


def jsonable(obj) -> dict:
    """A config dataclass (or a dict) as JSON stores it: tuples become lists, paths and the like strings."""
    return json.loads(json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj, default=str))


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # of a SynthCrowd folder's num_images


def split_size(num_images: int, split: str) -> int:
    """Scenes in one split of a SynthCrowd folder of ``num_images``."""
    return max(int(round(num_images * SPLIT_FRACTIONS[split])), 1)


_SPLIT_FILES = ("coco.json", "crowdpose.json")


def synthcrowd_folder(root, flag: str = "data.root"):
    """A SynthCrowd folder as an :class:`~posediff.io.OutputFolder` (refusing a ``root`` that is a file). One
    rendered before folders had a manifest is known by its stamp and its splits' SynthCrowd annotations, whose
    files and listed images are then taken as posediff's."""
    from ..io import OutputFolder

    def rendered(folder: Path) -> list[str]:
        names = ["synthcrowd.json"] if (folder / "synthcrowd.json").is_file() else []
        for split in SPLIT_FRACTIONS:
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, KeyError):
                data = json.loads((folder / split / "coco.json").read_text())
                if str(data["info"]["description"]).startswith("SynthCrowd"):
                    names += [f"{split}/{f}" for f in _SPLIT_FILES]
                    names += [f"{split}/images/{im['file_name']}" for im in data["images"]]
        return names

    return OutputFolder(root, flag, adopt=rendered)


def _synthcrowd_stamp(root: Path, num_images: int, size: int, scene_seed: int, hint: str) -> tuple[Path, dict]:
    """(the folder's ``synthcrowd.json``, the settings it must hold); refuses a folder stamped with others."""
    from ..data.synthcrowd import RENDERER_VERSION

    wanted = dict(num_images=num_images, size=size, scene_seed=scene_seed, renderer=RENDERER_VERSION)
    stamp = Path(root) / "synthcrowd.json"
    if stamp.is_file():
        try:
            have = {"renderer": 1, **json.loads(stamp.read_text())}  # version 1 wrote no renderer
        except (ValueError, TypeError) as err:
            raise ValueError(f"{stamp}: cannot read the SynthCrowd folder's settings ({err}); {hint}") from err
        diff = [k for k in wanted if have.get(k) != wanted[k]]
        if diff:
            fields = ", ".join(f"{'renderer version' if k == 'renderer' else 'data.' + k} {have.get(k)} (wanted "
                               f"{wanted[k]})" for k in diff)
            raise ValueError(f"{stamp}: this folder holds SynthCrowd rendered with other settings: {fields}; "
                             f"{hint}")
    return stamp, wanted


def render_synthcrowd(root, num_images: int, size: int = 256, scene_seed: int = 0,
                      splits: tuple[str, ...] = tuple(SPLIT_FRACTIONS), progress: bool = True,
                      flag: str = "data.root") -> list[dict]:
    """Render the ``splits`` of a SynthCrowd folder of ``num_images`` scenes, each split its share
    (:func:`split_size`), and, when this call renders all three, the stamp ``build_datasets`` reads, so that
    training with ``data.num_images=num_images`` uses the folder as it is (a subset of the splits writes no
    stamp). The folder is an :class:`~posediff.io.OutputFolder` (``flag`` names it in messages). Returns each
    split's summary."""
    from ..data.synthcrowd import SceneConfig, scene_file_name, write_split

    unknown = [s for s in splits if s not in SPLIT_FRACTIONS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise ValueError(f"splits must be distinct names among {list(SPLIT_FRACTIONS)}, got {list(splits)}")
    folder = synthcrowd_folder(root, flag)
    stamp, wanted = _synthcrowd_stamp(Path(root), num_images, size, scene_seed,
                                      "render into another folder or delete this one")
    folder.claim(["synthcrowd.json", *(f"{s}/{f}" for s in splits for f in _SPLIT_FILES),
                  *(f"{s}/images/{scene_file_name(i)}" for s in splits for i in range(split_size(num_images, s)))])
    summaries = [write_split(root, split, split_size(num_images, split), seed=scene_seed,
                             config=SceneConfig(size=size), progress=progress) for split in splits]
    if set(splits) == set(SPLIT_FRACTIONS):  # a subset leaves the folder unstamped: its other splits are unknown
        write_json(wanted, stamp)
    return summaries


def build_datasets(cfg: TrainConfig, rank: int = 0):
    """(train dataset, val dataset, val annotation file, metric dataset name)."""
    from ..data import CocoKeypointDataset
    from ..data.transforms import Compose, PixelNoise, RandomHorizontalFlip, eval_transforms, train_transforms
    from ..skeletons import get_skeleton

    d = cfg.data
    skeleton = get_skeleton(d.skeleton)
    prior = d.prior if (d.prior and skeleton.name == "coco17") else None
    if d.kind == "synthcrowd":
        root = Path(d.root)
        ann_name = "coco.json" if skeleton.name == "coco17" else "crowdpose.json"
        synthcrowd_folder(root)  # refuses a data.root that is a file
        stamp, _ = _synthcrowd_stamp(root, d.num_images, d.size, d.scene_seed,
                                     "point data.root elsewhere or delete the folder")
        if not stamp.is_file() or not (root / d.val_split / ann_name).is_file():
            if rank == 0:
                render_synthcrowd(root, d.num_images, d.size, d.scene_seed)
            if torch.distributed.is_initialized():
                torch.distributed.barrier()
        train_images, train_ann = root / "train" / "images", root / "train" / ann_name
        val_images, val_ann = root / d.val_split / "images", root / d.val_split / ann_name
    else:  # "coco", as DataConfig checks
        unset = [f"data.{f}" for f in ("train_images", "train_ann", "val_images", "val_ann") if not getattr(d, f)]
        if unset:
            raise ValueError(f"data.kind='coco' reads its images and annotations from data.train_images, "
                             f"data.train_ann, data.val_images and data.val_ann; {', '.join(unset)} not set")
        train_images, train_ann, val_images, val_ann = d.train_images, d.train_ann, d.val_images, d.val_ann
    tf = train_transforms(skeleton.flip_index, scales=d.train_scales, max_size=d.max_size, crop_scales=d.crop_scales,
                          crop_size=d.crop_size)
    if not d.flips:
        tf.transforms = [t for t in tf.transforms if not isinstance(t, RandomHorizontalFlip)]
    elif d.kind == "synthcrowd" and rank == 0:
        log.warning("data.flip=True on SynthCrowd: a flipped scene shows its darker left limbs on the right, so "
                    "the cue that tells left from right is lost (docs/data.md)")
    if d.pixel_noise > 0:
        tf = Compose([tf, PixelNoise(d.pixel_noise)])
    train_ds = CocoKeypointDataset(train_images, train_ann, skeleton=skeleton, transforms=tf, prior=prior,
                                   seed=cfg.seed, require_persons=True)
    val_ds = CocoKeypointDataset(val_images, val_ann, skeleton=skeleton,
                                 transforms=eval_transforms(d.eval_scale, d.max_size))
    if d.kind == "synthcrowd":
        from ..data.synthcrowd import check_renderer

        check_renderer(train_ann, train_ds.coco.dataset)
        check_renderer(val_ann, val_ds.coco.dataset)
    if d.max_val_images is not None:
        val_ds.ids = val_ds.ids[: d.max_val_images]
    metric = "coco" if skeleton.name == "coco17" else "crowdpose"
    return train_ds, val_ds, str(val_ann), metric


def synthcrowd_meta(data: DataConfig) -> dict:
    """``{"synthcrowd_renderer": version}`` for a checkpoint trained on SynthCrowd (files without it: version 1
    or other data), else ``{}``."""
    from ..data.synthcrowd import RENDERER_VERSION

    return {"synthcrowd_renderer": RENDERER_VERSION} if data.kind == "synthcrowd" else {}


def check_synthcrowd_meta(meta: dict, checkpoint, action: str) -> None:
    """Refuse to ``action`` a checkpoint (its metadata ``meta``) trained on another SynthCrowd renderer."""
    from ..data.synthcrowd import refuse_other_renderer

    refuse_other_renderer(json.loads(meta["synthcrowd_renderer"]) if "synthcrowd_renderer" in meta else None,
                          f"{checkpoint}: metadata field synthcrowd_renderer",
                          f"it cannot {action} a model trained on other pictures; train it again on this version")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """The batches of one epoch for one rank: a permutation seeded by (seed, epoch), cut into global batches
    of ``batch_size * world`` images, rank r taking every world-th image of each (incomplete ones dropped)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    global_bs = batch_size * world
    out = []
    for start in range(0, n - global_bs + 1, global_bs):
        out.append(perm[start + rank:start + global_bs:world].tolist())
    return out


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_results(model, dataset, batch_size: int = 4, device="cpu", steps: int | None = None,
                    progress: bool = False, seed: int = 0) -> list[dict]:
    """COCO keypoint results (original image pixels) for every image of ``dataset``, in batches.

    Sampling noise comes from one generator seeded by ``seed``, so a diffusion model's results repeat.
    """
    return predict_results_at_steps(model, dataset, (steps,), batch_size, device, progress, seed)[steps]


def predict_results_at_steps(model, dataset, steps: Sequence[int | None], batch_size: int = 4, device="cpu",
                             progress: bool = False, seed: int = 0) -> dict:
    """``{s: predict_results(model, dataset, steps=s, seed=seed)}`` for each sampling-step count ``s`` (None: the
    model's own), with each image's features computed once for all of them
    (:meth:`~posediff.models.OneStagePoseModel.predict_at_steps`); every count has its own generator seeded by
    ``seed``, so its results are those of its own pass."""
    from tqdm import tqdm

    from ..data import collate
    from ..evaluation import to_coco_results

    steps = list(dict.fromkeys(steps))
    was_training = model.training
    model.eval()
    results: dict = {s: [] for s in steps}
    gens = [torch.Generator(device="cpu").manual_seed(seed) for _ in steps]
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
        images, mask, targets = collate([dataset[i] for i in range(start, min(start + batch_size, n))])
        outputs = model.predict_at_steps(images.to(device), mask.to(device), steps, gens)
        ids, scales = targets.image_ids.tolist(), targets.scale_to_original.tolist()
        for s, out in zip(steps, outputs):
            results[s] += to_coco_results(ids, out, scales=scales)
    model.train(was_training)
    return results


def evaluate(model, dataset, ann_file: str, metric: str, batch_size: int = 4, device="cpu",
             steps: int | None = None, progress: bool = False) -> dict:
    """Predict over ``dataset`` in batches and score with ``evaluate_keypoints`` on its images only (a
    ``max_val_images`` subset is scored against its own ground truth, not the whole file's)."""
    from ..evaluation import evaluate_keypoints

    results = predict_results(model, dataset, batch_size, device, steps, progress)
    return evaluate_keypoints(ann_file, results, dataset=metric, image_ids=dataset.ids)


# ----------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------

def distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) under torchrun (the process group started on first use), else (0, 0, 1).

    The group waits up to two hours at a barrier: under ``posediff bench`` rank 0 evaluates a finished run
    while the others wait for the next one.
    """
    import datetime

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(hours=2))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model, lr: float, backbone_mult: float, weight_decay: float):
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(p)
    return [dict(params=rest, lr=lr, weight_decay=weight_decay),
            dict(params=backbone, lr=lr * backbone_mult, weight_decay=weight_decay)]


def build_model(cfg: TrainConfig, steps: tuple[int, ...] = (), weights: bool = True):
    """``cfg``'s model, checked against the rest of the run before anything is trained: an unknown or bad model
    override, a model whose joints are not ``data.skeleton``'s, or sampling ``steps`` (to evaluate at) that its
    diffusion head cannot take are refused naming the fields. ``weights=False`` builds without downloading
    pretrained backbone weights (a dry build that checks a plan)."""
    from ..registry import create_model
    from ..skeletons import get_skeleton

    overrides = dict(cfg.model)
    if not weights and overrides.get("pretrained_backbone"):
        overrides["pretrained_backbone"] = False
    try:
        model = create_model(cfg.recipe, **overrides)
    except (TypeError, ValueError, KeyError) as err:  # KeyError: an unknown recipe, whose message lists them
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"recipe {cfg.recipe} with model overrides {cfg.model}: {message}") from err
    joints = get_skeleton(cfg.data.skeleton).num_joints
    if getattr(model, "num_keypoints", joints) != joints:
        raise ValueError(f"recipe {cfg.recipe}: the model predicts {model.num_keypoints} joints but data.skeleton="
                         f"{cfg.data.skeleton!r} has {joints}; set model.num_keypoints={joints} (or another skeleton)")
    total = getattr(getattr(model, "head", None), "max_sampling_steps", None)  # None: a one-pass head
    if steps and total is not None and max(steps) > total:
        raise ValueError(f"sampling steps {max(steps)} (--steps): recipe {cfg.recipe} trains with num_train_timesteps="
                         f"{total}, and its scheduler cannot sample in more steps than that; ask for at most {total}")
    return model


def optimization(model, cfg: TrainConfig, device):
    """(AdamW over the trainable parameters, its lr schedule (``cfg.lr_drop``), bf16 autocast on a GPU when
    ``cfg.amp`` else None): what ``train`` steps with, and ``benchmarks/train_speed.py`` times."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.backbone_lr_mult, cfg.weight_decay))
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_drop), gamma=cfg.lr_gamma)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") else None
    return optimizer, schedule, autocast


def epoch_loader(train_ds, cfg: TrainConfig, epoch: int, start: int = 0, count: int | None = None, rank: int = 0,
                 world: int = 1):
    """(batches in this rank's ``epoch``, a DataLoader over ``count`` of them from ``start``): the epoch's own
    augmentation draws (``set_epoch``) and batch order (``epoch_batches``). A set smaller than one global batch is
    refused."""
    from ..data import collate

    train_ds.set_epoch(epoch)
    batches = epoch_batches(len(train_ds), cfg.batch_size, cfg.seed, epoch, rank, world)
    if not batches:
        raise ValueError(f"train set has {len(train_ds)} images with persons, fewer than one batch of "
                         f"{cfg.batch_size * world} (batch_size {cfg.batch_size} x {world} process(es))")
    todo = batches[start:] if count is None else batches[start:start + count]
    # items are seeded, so any number of workers gives the same data; the loader's own generator keeps it from
    # drawing on the global RNG (timesteps, noise), which a resumed run must continue exactly
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=todo, collate_fn=collate, num_workers=cfg.workers,
                                         generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
    return len(batches), loader


def train_step(net, optimizer, schedule, batch, device, clip_grad: float, autocast=None, step: int = 0) -> dict:
    """One optimisation step on ``batch`` = (images (B, 3, H, W), mask (B, H, W), targets), under ``autocast``
    when given; returns the detached losses. A non-finite loss is refused (naming ``step``) before the weights
    change. ``train`` runs its steps with it, and ``benchmarks/train_speed.py`` times it."""
    images, mask, targets = (x.to(device) for x in batch)
    net.train()
    with autocast if autocast is not None else contextlib.nullcontext():
        losses = net(images, mask, targets)
    loss = losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: loss is {float(loss)}; "
                                 f"parts: { {k: float(v) for k, v in losses.items()} }")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad)
    optimizer.step()
    schedule.step()
    return {k: v.detach() for k, v in losses.items()}


def run_folder(out, flag: str = "out="):
    """A training run's folder as an :class:`~posediff.io.OutputFolder`. One an earlier posediff wrote without a
    manifest is known by its ``last.json``, ``result.json`` or ``config.json`` (each checked for posediff's
    fields); its run files, checkpoints and the bench's ``bench.json`` are then taken as posediff's."""
    from ..io import OutputFolder

    def trained(folder: Path) -> list[str]:
        for name, keys in (("last.json", {"name", "step"}), ("result.json", {"steps", "seconds", "config"}),
                           ("config.json", {"config", "machine"})):
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                if keys <= json.loads((folder / name).read_text()).keys():
                    return [*RUN_FILES, "bench.json", *(p.name for p in folder.glob("step_*")
                                                         if checkpoint_step(p) is not None)]
        return []

    return OutputFolder(out, flag, adopt=trained)


def _run_files(out: Path) -> list[str]:
    """The files a run writes in ``out``: its records, and the checkpoints there now (which it may prune)."""
    return [*RUN_FILES, *(p.name for p in sorted(out.glob("step_*")) if checkpoint_step(p) is not None)]


def _resume_point(out: Path, resume: bool, resume_from) -> tuple[Path, Path | None] | None:
    """(weights, state) to continue from: ``resume_from`` (a checkpoint of the run folder, checked; later damaged
    checkpoints are removed, a later intact one refuses it), else the folder's last; None for a new run."""
    if resume_from is None:
        try:
            found = latest_checkpoint(out)
        except (ValueError, FileNotFoundError) as err:
            if not resume:
                raise FileExistsError(f"{out}: holds a training run already, whose last.json is damaged ({err}); "
                                      f"pass --resume to continue it, or another out= to start afresh") from err
            raise type(err)(f"{err}{resume_hint(out)}") from err
        if found is not None and not resume:  # before anything is rendered or built
            raise FileExistsError(f"{out}: holds a training run already ({found[0].name}); pass --resume "
                                  f"(resume=True) to continue it, or another out= (or delete the folder) to start "
                                  f"afresh")
        return found
    chosen = Path(resume_from)
    if not chosen.is_file() and (out / chosen).is_file():
        chosen = out / chosen
    step = checkpoint_step(chosen)
    if not chosen.is_file() or step is None or not chosen.name.endswith(".safetensors") \
            or chosen.resolve().parent != out.resolve():
        raise ValueError(f"--resume-from {resume_from}: expected a checkpoint step_N.safetensors of the run folder "
                         f"{out}")
    newer = newest_intact(out, above=step)
    if newer is not None:
        raise ValueError(f"--resume-from {resume_from}: {newer.name} is a later intact checkpoint of {out}; "
                         f"--resume continues from the newest, and a run from an earlier step starts in another out= "
                         f"(--init {chosen})")
    return chosen, chosen.with_name(chosen.name.replace(".safetensors", ".state.pt"))


def _drop_later_checkpoints(out: Path, folder, step: int) -> None:
    """After ``--resume-from`` step ``step``: of the later checkpoints (none intact), the files that do not read
    go, weights that still read stay until the run writes that step again (said so), and last.json names
    ``step``'s checkpoint."""
    for p in sorted(out.glob("step_*")):
        later = checkpoint_step(p)
        if later is None or later <= step:
            continue
        try:
            load_checkpoint(p) if p.name.endswith(".safetensors") else load_state(p)
        except (ValueError, OSError):
            if folder.remove(p.name):
                log.warning("%s: removed %s, a damaged file after the checkpoint this run continues from", out, p.name)
        else:
            log.warning("%s: %s still reads; this run replaces it when it reaches step %d (copy it elsewhere to "
                        "keep it)", out, p.name, later)
    write_json({"name": f"step_{step:07d}", "step": step, "has_state": True}, out / "last.json")


def train(cfg: TrainConfig, resume: bool = False, init: str | None = None, progress: bool = True,
          resume_from: str | None = None) -> dict:
    """Run (or continue) a training run; returns the final metrics and the loss history.

    The run folder (``cfg.out``) is an :class:`~posediff.io.OutputFolder`: a folder holding files of the same names
    that posediff did not write is refused before anything runs. ``resume`` continues from the folder's last
    checkpoint; ``resume_from`` (implies ``resume``) from the named one, e.g. when the last is damaged.
    """
    from tqdm import tqdm

    from ..env import machine_info

    rank, local, world = distributed()
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    folder = run_folder(out)
    folder.check(_run_files(out))  # a folder of the user's own files is refused before anything runs
    if cfg.data.kind == "synthcrowd":
        synthcrowd_folder(cfg.data.root)  # refuses a data.root that is a file now, not after the model is built
    resume = resume or resume_from is not None
    resume_point = _resume_point(out, resume, resume_from)
    _seed_all(cfg.seed)
    model = build_model(cfg).to(device)  # before the data: bad model settings are refused before any rendering
    train_ds, val_ds, val_ann, metric = build_datasets(cfg, rank)
    if init and not resume_point:
        done = init_from(model, init)
        log.info("initialised from %s: %d tensors loaded, %d fresh, %d of another shape, %d unused", init,
                 done["loaded"], len(done["fresh"]), len(done["shape_mismatch"]), len(done["unused"]))
    if rank == 0:  # the run folder is made once the run can start: a refused call leaves none
        folder.claim(_run_files(out))  # and the temporary files of a killed write are removed
    if world > 1 and not resume_point:  # each process its own timesteps, noise and padding (resume restores them)
        torch.manual_seed(cfg.seed + 1_000_003 * rank)
    optimizer, schedule, autocast = optimization(model, cfg, device)
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    step, epoch, pos, history, seconds_before = 0, 0, 0, [], 0.0
    if resume:
        if resume_point is None:
            log.warning("--resume: no checkpoint in %s; starting afresh", out)
        else:
            weights_path, state_path = resume_point
            try:
                weights, ema_w, meta = load_checkpoint(weights_path)
                if state_path is None or not state_path.is_file():
                    raise FileNotFoundError(f"{weights_path}: its training state (.state.pt) is missing")
                state = load_state(state_path)
            except (ValueError, FileNotFoundError) as err:
                raise type(err)(f"{err}{resume_hint(out, checkpoint_step(weights_path))}") from err
            if cfg.data.kind == "synthcrowd":
                check_synthcrowd_meta(meta, weights_path, "resume")
            cpu_rngs = state["torch_rng"] if isinstance(state["torch_rng"], list) else [state["torch_rng"]]  # per rank
            saved_world = len(cpu_rngs)
            if saved_world != world:
                raise ValueError(f"{state_path}: this run trained on {saved_world} process(es), this call has {world}; "
                                 f"the data order and RNG states are per process, so resume it with {saved_world}")
            model.load_state_dict(weights)
            if ema is not None and ema_w:
                ema.module.load_state_dict(ema_w)  # the average so far, and how many updates it holds
                ema.n_averaged.fill_(int(state.get("ema_updates", state["step"])))
            asked_lrs = list(schedule.base_lrs)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            step, epoch, pos = state["step"], state["epoch"], state["pos"]
            _follow_asked_schedule(schedule, asked_lrs, cfg, step, state_path)
            _warn_if_evaluation_size_changed(out / "config.json", cfg.data, step)
            torch.set_rng_state(cpu_rngs[rank])
            if device.type == "cuda" and state.get("cuda_rng") and state["cuda_rng"][rank] is not None:
                torch.cuda.set_rng_state(state["cuda_rng"][rank])  # timesteps and noise are drawn on the GPU
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["python_rng"])
            history = [h for h in state["history"] if h["step"] <= step]
            seconds_before = float(state.get("seconds", 0.0))  # training time of the earlier calls
            if resume_from is not None and rank == 0:
                _drop_later_checkpoints(out, folder, step)
            log.info("resumed %s at step %d", out, step)
    if rank == 0:  # after the checks above: a refused --resume leaves the run's record as it was
        write_json(dict(config=jsonable(cfg), eval_size=cfg.data.eval_scale, machine=machine_info(), world_size=world),
                   out / "config.json")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)

    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.recipe}", disable=not progress or rank != 0)
    last_eval = {}
    t_start = time.time()
    while step < cfg.max_steps:
        epoch_len, loader = epoch_loader(train_ds, cfg, epoch, pos, cfg.max_steps - step, rank, world)
        for batch in loader:
            losses = train_step(net, optimizer, schedule, batch, device, cfg.clip_grad, autocast, step)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            pos += 1
            record = {"step": step, "loss": float(losses["loss"]),
                      **{k: float(v) for k, v in losses.items() if k in ("class", "keypoints", "oks", "aux_heatmap")}}
            history.append(record)
            bar.update(1)
            if step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{record['loss']:.3f}", kpt=f"{record.get('keypoints', 0):.3f}")
            if cfg.eval_every and step % cfg.eval_every == 0 and rank == 0:
                last_eval = evaluate(ema.module if ema is not None else model, val_ds, val_ann, metric,
                                     cfg.batch_size, device)
                history[-1]["eval"] = last_eval
                log.info("step %d: %s", step, last_eval)
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                rngs = _gather_rng_states(world)
                if rank == 0:
                    _checkpoint(cfg, out, step, epoch, pos, model, ema, optimizer, schedule, history, rngs,
                                seconds_before + time.time() - t_start, folder)
                if world > 1:
                    torch.distributed.barrier()
        if pos >= epoch_len:
            epoch, pos = epoch + 1, 0
    bar.close()
    # seconds: training time over every call that made this run (an interrupted run adds up its parts)
    result = {"steps": step, "seconds": round(seconds_before + time.time() - t_start, 1), "history": history}
    if rank == 0:
        if not last_eval or history[-1].get("eval") is None:
            last_eval = evaluate(ema.module if ema is not None else model, val_ds, val_ann, metric,
                                 cfg.batch_size, device)
        result["metrics"] = last_eval
        write_json(dict(result, config=jsonable(cfg)), out / "result.json")
        _write_history(out, history)
    if world > 1:
        torch.distributed.barrier()
    return result


def _warn_if_evaluation_size_changed(config_path: Path, data: DataConfig, step: int) -> None:
    """A resumed run validates at ``data.eval_scale``; say so when its earlier calls validated at another size
    (``config.json``'s ``eval_size``, or before that was written, its data config's ``eval_size``)."""
    if not config_path.is_file():
        return
    saved = json.loads(config_path.read_text())
    before = saved.get("eval_size")
    if before is None:
        before = DataConfig.from_saved(saved.get("config", {}).get("data", {})).eval_scale
    if before != data.eval_scale:
        log.warning("%s: this run validated at %s px up to step %d and validates at %d px from now on, so "
                    "history.jsonl mixes the two; pass data.eval_size=%s to keep the earlier size", config_path,
                    before, step, data.eval_scale, before)


def _follow_asked_schedule(schedule, asked_lrs: list[float], cfg: TrainConfig, step: int, state_path) -> None:
    """On resume, make the learning-rate schedule the command asks for, or refuse clearly.

    The saved scheduler state would otherwise win silently over ``lr``, ``lr_gamma`` and ``lr_drop``. The
    learning rates and the drops already behind ``step`` cannot change (the steps are taken); drops after it
    follow the command, so a finished run can be extended with a later drop.
    """
    if len(asked_lrs) != len(schedule.base_lrs) or not all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(asked_lrs, schedule.base_lrs)):
        raise ValueError(f"{state_path}: this run trained with base learning rates {schedule.base_lrs}, the command "
                         f"asks for {asked_lrs} (lr={cfg.lr}, backbone_lr_mult={cfg.backbone_lr_mult}); a resumed "
                         f"run keeps its lr: start a new out= folder with --init instead")
    done = sorted(m for m in schedule.milestones.elements() if m <= step)
    asked_done = sorted(m for m in cfg.lr_drop if m <= step)
    if done != asked_done or (done and not math.isclose(schedule.gamma, cfg.lr_gamma)):
        raise ValueError(f"{state_path}: this run dropped its learning rate at steps {done} (x{schedule.gamma} each) "
                         f"up to step {step}; the command asks for lr_drop={tuple(cfg.lr_drop)}, lr_gamma="
                         f"{cfg.lr_gamma}. Drops before step {step} cannot change; later ones can")
    schedule.milestones = Counter(cfg.lr_drop)  # drops after `step` follow the command
    schedule.gamma = cfg.lr_gamma


def _write_history(out: Path, history: list[dict]) -> None:
    from ..io import atomic_path

    with atomic_path(out / "history.jsonl") as tmp, open(tmp, "w") as f:
        for h in history:
            f.write(json.dumps(h) + "\n")


def _gather_rng_states(world: int) -> list[tuple]:
    """Every rank's (CPU RNG state, CUDA RNG state or None), for an exact resume."""
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None)
    if world == 1:
        return [rng]
    states = [None] * world
    torch.distributed.all_gather_object(states, rng)
    return states


def _checkpoint(cfg, out, step, epoch, pos, model, ema, optimizer, schedule, history, rngs, seconds, folder=None):
    state = dict(step=step, epoch=epoch, pos=pos, optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                 seconds=seconds, torch_rng=[r[0] for r in rngs], cuda_rng=[r[1] for r in rngs],
                 numpy_rng=np.random.get_state(), python_rng=random.getstate(), history=history,
                 ema_updates=int(ema.n_averaged) if ema is not None else None)
    save_checkpoint(out, step, model, cfg.recipe, cfg.model, state=state, ema=ema.module if ema is not None else None,
                    extra_meta={"config": jsonable(cfg), **synthcrowd_meta(cfg.data)}, keep=cfg.keep_checkpoints,
                    folder=folder)
    _write_history(out, history)

