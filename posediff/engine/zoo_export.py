"""Making zoo files: a training run's checkpoint exported as an fp16 zoo file and scored on SynthCrowd's test
split (``posediff zoo export``). Loading zoo files is :mod:`posediff.zoo`'s, which imports nothing of this.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..zoo import FORMAT, dequantize_int8, quantize_int8, read_zoo_file, tensors_digest, zoo_path

__all__ = ["export_and_score", "export_zoo", "zoo_tensors"]


def zoo_tensors(checkpoint, base: str | None = None, use_ema: bool = True,
                int8: bool = False) -> tuple[dict, dict, int]:
    """A training checkpoint's tensors in fp16 (``int8``: the large weights as int8 with per-channel scales,
    :func:`~posediff.zoo.quantize_int8`), less those equal to ``base``'s (a zoo file name): (tensors as the
    file stores them, checkpoint metadata, number left out).

    A tensor of the base that training changed is an error, since the file would then not reproduce the
    model (was the backbone frozen?).
    """
    from .checkpoint import load_checkpoint

    weights, ema, meta = load_checkpoint(checkpoint)
    state = ema if (use_ema and ema) else weights
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    dropped = 0
    if base:
        changed = []
        for k, v in read_zoo_file(zoo_path(base)).items():
            if k not in half:
                continue
            b = v.half() if v.is_floating_point() else v
            if b.shape == half[k].shape and torch.equal(b, half[k]):
                del half[k]
                dropped += 1
            else:
                changed.append(k)
        if changed:
            raise ValueError(f"{checkpoint}: {len(changed)} tensors of base {base!r} differ in the checkpoint "
                             f"(e.g. {changed[:3]}); was the backbone frozen in training?")
    if int8:
        stored = quantize_int8({k: state[k] for k in half})  # from the fp32 weights, not their fp16 rounding
        half = {k: v.half() if v.is_floating_point() else v for k, v in stored.items()}
    return half, meta, dropped


def _zoo_overrides(meta: dict, current_sampling: bool = False) -> dict:
    """A checkpoint's recipe overrides as the zoo keeps them: with the defaults changed since the checkpoint was
    made at their earlier values (:func:`posediff.registry.as_trained`; the zoo file then records this
    version; ``current_sampling``: the changed sampling defaults at their current values), without
    ``pretrained_backbone`` (zoo models load without any network) and ``context_weights`` (a zoo file holds its
    context encoder)."""
    from .checkpoint import trained_overrides

    return {k: v for k, v in trained_overrides(meta, current_sampling).items()
            if k not in ("pretrained_backbone", "context_weights")}


def export_zoo(checkpoint, out, base: str | None = None, metrics: dict | None = None,
               made_by: dict | None = None, use_ema: bool = True, int8: bool = False,
               current_sampling: bool = False) -> dict:
    """Write a training checkpoint as an fp16 (or ``int8``) zoo file (see :func:`zoo_tensors`); returns a summary.

    The recipe's overrides are kept but ``pretrained_backbone`` (zoo models load without any network);
    ``current_sampling``: sampling defaults changed since the checkpoint was made take their current values.
    """
    from safetensors.torch import save_file

    from ..io import atomic_path

    half, meta, dropped = zoo_tensors(checkpoint, base, use_ema, int8=int8)
    overrides = _zoo_overrides(meta, current_sampling)
    from ..registry import CONFIG_VERSION

    out_meta = {"format": FORMAT, "recipe": meta["recipe"], "overrides": json.dumps(overrides, sort_keys=True),
                "config_version": str(CONFIG_VERSION), "step": meta.get("step", ""),
                "metrics": json.dumps(metrics or {}), "made_by": json.dumps(made_by or {})}
    if base:
        out_meta["base"] = base
        out_meta["base_digest"] = tensors_digest(read_zoo_file(zoo_path(base)))
    with atomic_path(out) as tmp:
        save_file(half, str(tmp), metadata=out_meta)
    return {"tensors": len(half), "from_base": dropped, "bytes": Path(out).stat().st_size}


def export_and_score(run, out, base: str | None = None, data_root=None, made_by: dict | None = None,
                     eval_size: int | None = None, int8: bool = False, current_sampling: bool = False) -> dict:
    """``posediff zoo export``: score the run's last checkpoint, with its weights rounded to fp16 (or int8) as users
    get them, on the test split of the data it was trained on, as its task scores the zoo
    (:meth:`~posediff.tasks.base.Task.zoo_metrics`: SynthCrowd at ``eval_size``, by default the run's data config's;
    MocapLift for lifting runs), then write the zoo file (once) with the metrics in its metadata.
    ``current_sampling``: scored and stored with the sampling defaults changed since the run was trained at their
    current values (:data:`posediff.registry.SAMPLING_FIELDS`; the weights are the same at either)."""
    from ..io import check_output_file
    from ..registry import create_model
    from ..tasks import get_task
    from .checkpoint import latest_checkpoint, load_checkpoint

    run = Path(run)
    if run.is_dir():
        found = latest_checkpoint(run)
        if found is None:
            raise FileNotFoundError(f"{run}: no checkpoint (last.json) in this folder")
        checkpoint = found[0]
    else:
        checkpoint = run
    check_output_file(out, "--out", inputs=(checkpoint, zoo_path(base) if base else None))
    meta = load_checkpoint(checkpoint)[2]
    data = json.loads(meta.get("config", "{}")).get("data", {})
    task = get_task(meta["recipe"])
    task.check_zoo_run(meta, data, checkpoint)
    stored = dequantize_int8(zoo_tensors(checkpoint, base, int8=int8)[0])  # the weights as users will get them
    state = {**(read_zoo_file(zoo_path(base)) if base else {}),
             **{k: v.float() if v.is_floating_point() else v for k, v in stored.items()}}
    model = create_model(meta["recipe"], **_zoo_overrides(meta, current_sampling))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # a base file of another model: keys or shapes that do not fit
        raise ValueError(f"{checkpoint} with --base {base}: the weights do not make a {meta['recipe']} model "
                         f"({str(err).splitlines()[0]} ...); is the base the backbone this run was trained "
                         f"from?") from err
    metrics = task.zoo_metrics(model.eval(), data, data_root=data_root, eval_size=eval_size)
    summary = export_zoo(checkpoint, out, base=base, metrics=metrics, made_by=made_by, int8=int8,
                         current_sampling=current_sampling)
    return dict(summary, checkpoint=str(checkpoint), metrics=metrics)
