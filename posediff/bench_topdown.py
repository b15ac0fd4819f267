"""The top-down side of ``posediff bench``: how a top-down recipe's run is planned and scored beside one-stage runs.

A top-down recipe (``simplebaseline_tiny``, ``diffusionpose_tiny``, ...) trains on person crops of the same
training scenes, from the same starting backbone, with the preset's top-down budget (``Preset.topdown``): as many
persons seen as the one-stage recipes see (a one-stage step reads ``batch_size`` scenes of about 4.5 persons each
on SynthCrowd), in batches of crops. It is scored on the same test images with the same evaluators twice: with the
ground-truth boxes (``evals``) and with a detector's boxes (``evals_detector``; on SynthCrowd the zoo's
``edpose_tiny``, whose detections the bench writes once into ``detections/``). Latency is per image: all of an
image's persons (ground-truth boxes) in one batch, the detector's time not included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .io import write_json

__all__ = ["DETECTOR", "detector_boxes", "evaluate_topdown", "plan_topdown", "topdown_latency_ms",
           "with_detector_rows"]

log = logging.getLogger(__name__)

DETECTOR = "edpose_tiny"  # the zoo model whose boxes SynthCrowd's top-down runs are also scored with
DETECTOR_MIN_SCORE = 0.05  # its persons scoring less are not written (of its 20 per image, most score near 0)


def plan_topdown(cfg, preset, spec, recipe: str):
    """The TrainConfig of a top-down run from the one-stage plan ``cfg`` of the same recipe and seed: the preset's
    top-down TrainConfig fields (batch, learning rates) and steps (scaled by ``--train-steps`` as the one-stage
    budget is), the one-stage model overrides a top-down config has (the backbone's weights; CrowdPose's skeleton),
    then the preset's top-down ``model`` overrides (e.g. a backbone trained with the head)."""
    from .recipes.topdown import TopDownConfig

    td = preset.topdown
    if not td:
        raise ValueError(f"--recipes {recipe}: preset {preset.name!r} gives top-down recipes no budget "
                         f"(Preset.topdown); use --preset standard or full")
    scale = spec.train_steps / preset.train_steps
    steps = max(1, round(td["max_steps"] * scale))
    known = {f.name for f in dataclasses.fields(TopDownConfig)}
    model = {k: v for k, v in cfg.model.items() if k in known}
    if cfg.model.get("num_keypoints") == 14:
        model["skeleton"] = "crowdpose14"
    model.update(td.get("model", {}))
    fields = {k: v for k, v in td.items() if k not in ("model", "max_steps", "lr_drop")}
    every = round(preset.eval_every * steps / spec.train_steps) if preset.eval_every else 0
    from .tasks import get_task

    return get_task(recipe).resolve(dataclasses.replace(
        cfg, model=model, **fields, max_steps=steps,
        lr_drop=tuple(d for d in (round(s * scale) for s in td.get("lr_drop", ())) if d < steps),
        eval_every=min(max(every, 1), steps) if every else 0, ckpt_every=max(50, steps // 10)))


def _test_data(cfg, spec):
    d = cfg.data
    return dataclasses.replace(d, val_split="test" if d.kind == "synthcrowd" else d.val_split,
                               max_val_images=spec.test_images)


def detector_boxes(out: Path, cfg, spec, device) -> str | None:
    """The detection results file the top-down runs are also scored with: ``--detections`` as given, or on
    SynthCrowd the zoo's ``edpose_tiny`` over the test split (persons scoring >= ``DETECTOR_MIN_SCORE``), written
    once to ``OUT/detections/``; None for real data without ``--detections``."""
    if spec.detections:
        return spec.detections
    if cfg.data.kind != "synthcrowd":
        return None
    path = Path(out) / "detections" / f"{DETECTOR}_test.json"
    if not path.is_file():
        from .registry import create_model
        from .tasks.multiperson import build_datasets, detect_persons

        d = dataclasses.replace(_test_data(cfg, spec), max_val_images=None)
        base = dataclasses.replace(cfg, data=d)
        _, test_ds, _, _ = build_datasets(base)
        detector = create_model(DETECTOR, pretrained="synthcrowd").to(device)
        dets = detect_persons(detector, test_ds, batch_size=4, device=device, min_score=DETECTOR_MIN_SCORE,
                              progress=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(dets, path, indent=None)
        log.info("%d %s detections of the test split -> %s", len(dets), DETECTOR, path)
    return str(path)


def evaluate_topdown(record: dict, run: dict, spec, model, gts: dict, boxes: str | None, device) -> None:
    """Fill ``record["evals"]`` (ground-truth boxes) and ``record["evals_detector"]`` (the boxes of ``boxes``) at
    every wanted sampling-step count not yet evaluated; ``model(purpose)`` loads the run's model when needed."""
    from .registry import get_config
    from .tasks.multiperson import score_results
    from .tasks.topdown import crop_datasets, predict_crop_results

    cfg = run["config"]
    d = _test_data(cfg, spec)
    diffusion = record["default_steps"] is not None
    wanted = list(spec.steps) if diffusion else [None]
    if diffusion and record["default_steps"] not in wanted:
        wanted.append(record["default_steps"])
    show = set(record["showcase_ids"])
    sources = [("evals", "gt")] + ([("evals_detector", boxes)] if boxes else [])
    for key, source in sources:
        record.setdefault(key, {})
        missing = [s for s in wanted if ("-" if s is None else str(s)) not in record[key]]
        if not missing:
            continue
        _, test, _, _, ids = crop_datasets(d, get_config(cfg.recipe, **cfg.model), cfg.seed, boxes=source)
        t0 = time.time()
        by_steps = predict_crop_results(model(f"its test metrics ({key})"), test, missing, batch_size=32,
                                        device=device, nms=cfg.data.nms, seed=run["seed"], progress=True)
        seconds = round(time.time() - t0, 1)
        for steps in missing:
            results = by_steps[steps]
            record[key]["-" if steps is None else str(steps)] = dict(
                steps=steps, metrics=score_results(results, gts, ids), seconds=seconds, pass_steps=missing,
                boxes="ground truth" if source == "gt" else Path(source).name, crops=len(test),
                showcase=[r for r in results if r["image_id"] in show and r["score"] >= 0.3])
        if key == "evals_detector":
            record["detections"] = dict(file=Path(source).name, crops=len(test))
        write_json(record, Path(cfg.out) / "bench.json")
    if diffusion and "coarse_head" not in record:  # the SimpleBaseline inside the run: a paired comparison
        net = model("its coarse head's test metrics")
        if hasattr(net.head, "coarse"):
            _, test, _, _, ids = crop_datasets(d, get_config(cfg.recipe, **cfg.model), cfg.seed, boxes="gt")
            t0 = time.time()
            with net.coarse_head_only():
                results = predict_crop_results(net, test, [None], batch_size=32, device=device, nms=cfg.data.nms,
                                               seed=run["seed"], progress=True)[None]
            record["coarse_head"] = dict(metrics=score_results(results, gts, ids), boxes="ground truth",
                                         seconds=round(time.time() - t0, 1))
            write_json(record, Path(cfg.out) / "bench.json")


@torch.no_grad()
def topdown_latency_ms(model, cfg, spec, n: int, steps: int | None = None, warmup: int = 2) -> dict:
    """Milliseconds per test image: the crops of all its labelled persons (ground-truth boxes) through the model in
    one batch and decoded, over the first ``n`` test images with a person; the detector's time is not included."""
    from .data.topdown import collate_crops
    from .registry import get_config
    from .tasks.topdown import crop_datasets

    model.eval()
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _, test, _, _, ids = crop_datasets(_test_data(cfg, spec), get_config(cfg.recipe, **cfg.model), cfg.seed)
    by_image: dict[int, list[int]] = {}
    for i, inst in enumerate(test.instances):
        by_image.setdefault(inst["image_id"], []).append(i)
    batches = [collate_crops([test[i] for i in idx])[0].to(device) for idx in list(by_image.values())[:n]]
    if not batches:
        raise ValueError(f"{cfg.recipe}: no test image holds a labelled person: no latency to measure")
    gen = torch.Generator().manual_seed(0)
    for crops in batches[:warmup]:
        model.predict(crops, steps, gen)
    times = []
    for crops in batches:
        sync()
        t0 = time.perf_counter()
        model.predict(crops, steps, gen)
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return dict(median=float(np.median(times)), mean=float(np.mean(times)), images=len(batches),
                persons=int(sum(len(v) for v in list(by_image.values())[:n])), threads=torch.get_num_threads(),
                detector_included=False)


def with_detector_rows(records: list[dict]) -> list[dict]:
    """The records as the tables show them: each top-down run also as a row scored with the detector's boxes."""
    out = []
    for r in records:
        out.append(r)
        if r.get("evals_detector"):
            name = r.get("detections", {}).get("file", "detections").split("_test.json")[0]
            out.append(dict(json.loads(json.dumps(r)), recipe=f"{r['recipe']} ({name} boxes)",
                            evals=r["evals_detector"]))
    return out

