"""A training run's config: the ``TrainConfig`` dataclass, config files, ``key=value`` overrides.

A config file is Python defining ``config = TrainConfig(...)``; overrides are typed by the field they set
(``lr=1`` is 1.0, ``model.FIELD=...`` by the recipe's config, ``data.FIELD=...`` by the run's data config).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path

from ..tasks.base import _int, _number, _refused
from ..tasks.multiperson import DataConfig

__all__ = ["TrainConfig", "apply_overrides", "jsonable", "load_config"]


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
    # "min:METRIC" or "max:METRIC" (e.g. "min:P1", "max:AP"): also keep the weights of the evaluation (every
    # eval_every steps, which it needs) with the best value of that metric of the task's evaluation, as
    # best.safetensors (its step and value in best.json); "": off. The evaluation reads the data config's val split.
    keep_best: str = ""

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
            ("keep_best", isinstance(self.keep_best, str) and (self.keep_best == "" or (
                self.keep_best.split(":")[0] in ("min", "max") and len(self.keep_best.split(":")) == 2
                and bool(self.keep_best.split(":")[1]))), "'' (off), 'min:METRIC' or 'max:METRIC', e.g. 'min:P1'"),
            ("recipe", isinstance(self.recipe, str) and bool(self.recipe), "a recipe name"),
            ("out", isinstance(self.out, str) and bool(self.out.strip()), "a folder")])
        if bad:
            raise ValueError(bad)
        if self.keep_best and not self.eval_every:
            raise ValueError(f"config field keep_best={self.keep_best!r} keeps the best of the evaluations made every "
                             f"eval_every steps; give eval_every > 0")


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


def _resolved(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its data config read as its recipe's task reads it (an unknown recipe: as it is)."""
    from ..tasks import get_task

    try:
        return get_task(cfg.recipe).resolve(cfg)
    except KeyError:
        return cfg


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """``key=value`` overrides: ``lr=2e-4``, ``data.num_images=200``, ``model.sampling_steps=2``. ``data.FIELD``
    is a field of the recipe's task's data config (a default config is read as that task's first)."""
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
            cfg = _resolved(cfg)
            names = {f.name for f in dataclasses.fields(cfg.data)}
            if parts[1] not in names:
                raise ValueError(f"override {item!r}: {type(cfg.data).__name__} has no field {parts[1]!r}; fields: "
                                 f"{sorted(names)}")
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
