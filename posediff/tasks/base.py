"""What every task shares: the interface the engine and the bench call, and the config value checks.

A task (``../shared/DESIGN.md``, "Three families, one engine") says what a sample of its family is and how it
is scored: how to build the train and validation sets from a data config, how to batch them, how a model's
losses are computed on a batch, and how a model is evaluated. A recipe names its task
(:func:`posediff.tasks.get_task`); ``posediff train`` runs any recipe through it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

__all__ = ["Task", "TaskData"]


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


class TaskData:
    """The datasets a run trains and validates on, and what scoring them needs (``info``)."""

    def __init__(self, train, val, **info):
        self.train, self.val, self.info = train, val, info


class Task(ABC):
    """The interface; :mod:`posediff.tasks.multiperson` and :mod:`posediff.tasks.lifting` implement it."""

    name = ""
    data_config: type = object  # the task's data config dataclass
    log_keys: tuple[str, ...] = ()  # loss parts recorded in a run's history beside "loss"

    def resolve(self, cfg):
        """``cfg`` with the task's default data config when it still holds another task's default."""
        return cfg

    def check(self, cfg) -> None:
        """Refuse, before any work, a config this task cannot run (naming the field)."""
        return None  # nothing to refuse or note by default

    def check_model(self, model, cfg) -> None:
        """Refuse a model that does not fit the run's data (e.g. its joint count)."""
        return None  # nothing to refuse or note by default

    @abstractmethod
    def build(self, cfg, rank: int = 0) -> TaskData:
        """The train and validation sets of a run config (``TrainConfig``)."""

    @abstractmethod
    def collate(self, items):
        """Items of the task's datasets -> one batch."""

    @abstractmethod
    def losses(self, net, batch, device) -> dict:
        """The model's training losses on one collated batch (``"loss"`` the total)."""

    @abstractmethod
    def evaluate(self, model, data: TaskData, cfg, device, progress: bool = False) -> dict:
        """The validation metrics of ``model`` on ``data.val``."""

    @abstractmethod
    def check_zoo_run(self, meta: dict, data: dict, checkpoint) -> None:
        """Refuse, naming the field, a run whose zoo metrics this task cannot record (``meta``: the checkpoint's
        metadata, ``data``: its saved data config)."""

    @abstractmethod
    def zoo_metrics(self, model, data: dict, data_root=None, eval_size: int | None = None) -> dict:
        """The test metrics the zoo records for ``model``, trained on the saved data config ``data``
        (``posediff zoo export``)."""

    def checkpoint_meta(self, cfg) -> dict:
        """Metadata a checkpoint of this run carries besides its config."""
        return {}

    def check_checkpoint(self, meta: dict, path, action: str, cfg) -> None:
        """Refuse to ``action`` (resume, evaluate) a checkpoint whose metadata does not fit ``cfg``."""
        return None  # nothing to refuse or note by default

    def run_info(self, cfg) -> dict:
        """Fields the run's ``config.json`` records besides the config."""
        return {}

    def on_resume(self, out, cfg, step: int) -> None:
        """Notes for a resumed run (e.g. an evaluation setting that changed)."""
        return None  # nothing to refuse or note by default
