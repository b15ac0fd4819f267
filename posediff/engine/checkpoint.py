"""Checkpoints: weights in safetensors, training state beside them, both written atomically.

A training run's folder holds

* ``step_<step, 7 digits>.safetensors``: model weights (and ``ema.`` weights when EMA is on), with the recipe
  name, its overrides and the step in the metadata, so that :func:`load_model` rebuilds the model from
  the file alone;
* ``step_<step, 7 digits>.state.pt``: optimizer, LR schedule, RNG states, data position (for ``--resume``);
* ``last.json``: the name of the newest complete pair, written last, so an interrupted write never
  becomes the checkpoint to resume from;
* with ``keep_best``, ``best.safetensors`` (weights as a step's) and ``best.json`` (its step and metric value).

A checkpoint damaged after it was written (a truncated copy, a full disk) is named when ``--resume`` reads it,
with the newest intact one to continue from instead (:func:`resume_hint`, ``--resume-from``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..io import atomic_path, read_safetensors, write_json

__all__ = ["save_checkpoint", "save_weights", "load_checkpoint", "latest_checkpoint", "load_model", "load_init_weights",
           "init_from", "load_state", "is_intact", "newest_intact", "resume_hint", "checkpoint_step", "FORMAT",
           "RUN_FILES"]

FORMAT = "posediff.checkpoint/1"
# what a training run writes in its folder besides its checkpoints (step_N.safetensors, step_N.state.pt)
RUN_FILES = ("config.json", "history.jsonl", "result.json", "last.json", "best.json", "best.safetensors")


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def save_checkpoint(run_dir, step: int, model, recipe: str, overrides: dict, state: dict | None = None,
                    ema=None, extra_meta: dict | None = None, keep: int = 2, folder=None) -> Path:
    """Write the weights (+ EMA) and the training state of ``step``; returns the weights' path. With ``folder``
    (the run's :class:`~posediff.io.OutputFolder`) the files are claimed in its manifest before they are written,
    and only checkpoints it lists are pruned."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    if folder is not None:
        folder.claim([f"{name}.safetensors"] + ([f"{name}.state.pt"] if state is not None else []))
    weights = save_weights(run_dir / f"{name}.safetensors", step, model, recipe, overrides, ema, extra_meta)
    if state is not None:
        with atomic_path(run_dir / f"{name}.state.pt") as tmp:
            torch.save(state, tmp)
    write_json({"name": name, "step": step, "has_state": state is not None}, run_dir / "last.json")
    _prune(run_dir, keep, current=name, folder=folder)
    return weights


def save_weights(path, step: int, model, recipe: str, overrides: dict, ema=None,
                 extra_meta: dict | None = None) -> Path:
    """Write ``model``'s weights (+ ``ema.`` weights) with the metadata :func:`load_model` rebuilds it from,
    atomically; returns ``path``."""
    from safetensors.torch import save_file

    from ..registry import CONFIG_VERSION

    tensors = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    meta = {"format": FORMAT, "recipe": recipe, "overrides": json.dumps(overrides, sort_keys=True),
            "config_version": str(CONFIG_VERSION), "step": str(step), "ema": str(ema is not None)}
    meta.update({k: json.dumps(v) for k, v in (extra_meta or {}).items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _prune(run_dir: Path, keep: int, current: str, folder=None) -> None:
    """Delete all but the ``keep`` newest checkpoints (0: keep all); with ``folder``, only those it lists."""
    names = sorted({p.name.split(".")[0] for p in run_dir.glob("step_*.safetensors")
                    if folder is None or folder.owns(p.name)})
    for old in names[:-keep] if keep > 0 else []:
        if old == current:
            continue
        for suffix in (".safetensors", ".state.pt"):
            p = run_dir / f"{old}{suffix}"
            if folder is not None:
                folder.remove(p.name)
            elif p.exists():
                os.remove(p)


def latest_checkpoint(run_dir) -> tuple[Path, Path | None] | None:
    """(weights, state or None) of the newest complete checkpoint in ``run_dir``, or None."""
    pointer = Path(run_dir) / "last.json"
    if not pointer.is_file():
        return None
    try:
        info = json.loads(pointer.read_text())
        name = info["name"]
        if not (isinstance(name, str) and name.startswith("step_") and Path(name).name == name):
            raise TypeError(f"field 'name' is {name!r}, expected step_N")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{pointer}: cannot read the name of the last checkpoint ({err or type(err).__name__})"
                         ) from err
    weights = Path(run_dir) / f"{name}.safetensors"
    state = Path(run_dir) / f"{name}.state.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{pointer} names {weights.name}, which is missing")
    return weights, (state if state.is_file() else None)


def checkpoint_step(path) -> int | None:
    """The step of a checkpoint file named ``step_N.safetensors`` (or ``.state.pt``), else None."""
    stem = Path(path).name.split(".")[0]
    digits = stem[len("step_"):]
    return int(digits) if stem.startswith("step_") and digits.isdigit() else None


def load_state(path) -> dict:
    """A checkpoint's training state (``.state.pt``); a damaged file gets an error naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises RuntimeError, pickle and zip errors of its own  # noqa: BLE001
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot read the training state ({why})") from err
    if not isinstance(state, dict) or not {"step", "optimizer", "schedule", "torch_rng"} <= state.keys():
        raise ValueError(f"{path}: not a posediff training state (no step, optimizer, schedule and RNG states)")
    return state


def is_intact(weights) -> bool:
    """Whether a checkpoint's weights and its training state (``.state.pt`` beside them) both read whole."""
    weights = Path(weights)
    try:
        load_checkpoint(weights)
        load_state(weights.with_name(weights.name.replace(".safetensors", ".state.pt")))
    except (ValueError, OSError):
        return False
    return True


def newest_intact(run_dir, below: int | None = None, above: int | None = None) -> Path | None:
    """The weights of ``run_dir``'s newest checkpoint (of a step below ``below`` and above ``above``, when given)
    whose weights and training state both read, or None. Reads the files whole, newest first, until one reads:
    for the recovery of a damaged run."""
    found = sorted(((checkpoint_step(p), p) for p in Path(run_dir).glob("step_*.safetensors")
                    if checkpoint_step(p) is not None), reverse=True)
    return next((weights for step, weights in found if (below is None or step < below)
                 and (above is None or step > above) and is_intact(weights)), None)


def resume_hint(run_dir, below: int | None = None) -> str:
    """What to do when a run's checkpoint cannot be resumed: the newest intact one below step ``below`` and the
    flag that continues from it, or that none is left."""
    intact = newest_intact(run_dir, below)
    if intact is not None:
        return (f"; the newest intact checkpoint is {intact}: continue from it with --resume-from {intact} "
                f"(resume_from= in Python)")
    return "; no intact checkpoint with its training state is left: start afresh in another out= (--init can " \
           "take the weights of a checkpoint whose weights still read)"


def load_checkpoint(path) -> tuple[dict, dict, dict]:
    """(model tensors, EMA tensors, metadata) of a weights file."""
    meta, tensors = read_safetensors(path, "a posediff checkpoint")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: metadata field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    model = {k: v for k, v in tensors.items() if not k.startswith("ema.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    return model, ema, meta


def trained_overrides(meta: dict, current_sampling: bool = False) -> dict:
    """The recipe overrides that rebuild a checkpoint's model as it was trained: its own, and the defaults of its
    config version where it set none (:func:`posediff.registry.as_trained`; ``current_sampling``: changed sampling
    defaults at their current values)."""
    from ..registry import as_trained

    return as_trained(meta["recipe"], json.loads(meta.get("overrides", "{}")), int(meta.get("config_version", 0)),
                      current_sampling=current_sampling)


def load_model(path, use_ema: bool = True, current_sampling: bool = False, **overrides):
    """Rebuild the recipe a checkpoint was trained with (:func:`trained_overrides`) and load its (EMA) weights;
    returns the model in eval mode. ``current_sampling``: sampling defaults changed since the checkpoint was made
    take their current values (:data:`posediff.registry.SAMPLING_FIELDS`)."""
    from ..registry import create_model

    weights, ema, meta = load_checkpoint(path)
    kwargs = {**trained_overrides(meta, current_sampling), **overrides}
    model = create_model(meta["recipe"], **kwargs)
    state = ema if (use_ema and ema) else weights
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit recipe {meta['recipe']!r} (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.eval()


def load_init_weights(path) -> dict:
    """Tensors to initialise a model from: a posediff checkpoint's weights (as stored), a pretrained backbone
    (``posediff pretrain-backbone``, fp16 cast to float32, names ``backbone.*``) or a zoo file (with its base)."""
    meta, _ = read_safetensors(path, "init weights: a posediff checkpoint, backbone or zoo file", tensors=False)
    fmt = meta.get("format")
    if fmt == FORMAT:
        return load_checkpoint(path)[0]
    if fmt == "posediff.zoo/1":
        from ..zoo import read_zoo_file

        return read_zoo_file(path)
    if fmt == "posediff.backbone/1":
        return {k: v.float() for k, v in read_safetensors(path, "a pretrained backbone")[1].items()}
    raise ValueError(f"{path}: metadata field 'format' is {fmt!r}; expected {FORMAT!r}, 'posediff.zoo/1' or "
                     f"'posediff.backbone/1'")


def init_from(model, path) -> dict:
    """Initialise ``model`` from ``path`` (any file :func:`load_init_weights` reads) where names and shapes fit.

    Tensors the model has but the file lacks stay fresh (a new head); tensors whose shape differs (17 vs 14
    keypoints) stay fresh too. Returns the counts and the names of both kinds.
    """
    weights = load_init_weights(path)
    own = model.state_dict()
    fits = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    reshaped = sorted(k for k, v in weights.items() if k in own and own[k].shape != v.shape)
    missing, _ = model.load_state_dict(fits, strict=False)
    return {"loaded": len(fits), "fresh": sorted(missing), "shape_mismatch": reshaped,
            "unused": sorted(set(weights) - set(own))}
