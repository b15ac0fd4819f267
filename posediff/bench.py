"""``posediff bench``: a head-to-head of pose recipes, trained on the same data with the same budget and
seeds, scored on the same test split. The same code runs as ``python benchmarks/head_to_head.py``.

    posediff bench --preset quick                       # SynthCrowd, from the zoo, 9-12 min on 2 CPU cores (budget 15)
    posediff bench --preset standard --seeds 0 1 2      # the four 2D recipes from the pretrained backbone (hours)
    posediff bench --preset full --dataset crowdpose --data-root /data/crowdpose   # ResNet-50, for a GPU
    posediff bench --dataset mocaplift --preset quick    # lifting recipes: posediff.bench_lifting

Protocols (``--preset``):

* ``quick``: the paper's protocol from the zoo. ``diffusion_regpose_tiny`` starts from the zoo's
  ``edpose_tiny`` (SynthCrowd) with its new blocks (the denoiser and the projection of its tokens) fresh,
  and ``edpose_tiny`` is trained on from the same checkpoint for the same number of steps, with the same
  seeds and data order.
* ``standard``: the one-stage and the top-down recipes from the pretrained SynthCrowd backbone with the same
  budget (the fair protocol; the zoo's ``edpose_tiny`` began with the same 7,000 steps, the first of its five
  stages); top-down runs see the same persons as crops (:mod:`posediff.bench_topdown`) and are scored with
  ground-truth boxes and with the zoo ``edpose_tiny``'s.
* ``full``: the ResNet-50 recipes from ImageNet weights (timm ``pretrained=True``), sized for GPUs.

In ``quick`` ``diffusion_regpose_tiny`` is anchored to ED-Pose's regression (``anchor="regression"``,
``prior_std=0``; ``Preset.recipe_overrides``, docs/recipes.md); ``standard`` and ``full`` use the paper's head,
and ``--recipes ... diffusion_regpose_tiny_control`` adds its diffusion-off control.

The output folder holds ``results.json`` (every run: recipe, seed, metrics per sampling step, latency,
parameters, training time; with the config, versions and machine), ``report.md`` (the tables, the plots,
the protocol), ``plots/*.png`` and ``predictions.png`` (the recipes side by side on the hardest test
images). Each run lives in ``runs/RECIPE/seedS``: training resumes from its last checkpoint and every
finished evaluation is kept, so an interrupted bench continues where it stopped and recomputes nothing. A
finished and evaluated run's records (``bench.json``, and ``result.json``) stand without its checkpoints: a bench
folder can be carried (committed, or copied to another machine) without its weights and still report.

On SynthCrowd the models are trained on COCO-17 labels (the Gaussian completion prior is a COCO-17
prior); their predictions are also converted to CrowdPose-14 (``coco17_to_crowdpose14``, the rule the
SynthCrowd CrowdPose file is made with) and scored by the CrowdPose protocol, which gives AP per crowd
level (AP_E / AP_M / AP_H). The table shows the CrowdPose-format metrics, results.json has both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .io import write_json
from .models.utils import attributes_set
from .tasks import task_name
from .tasks.multiperson import ground_truth, score_results

__all__ = ["Preset", "PRESETS", "BenchSpec", "run_bench", "write_report", "main", "TABLE_KEYS"]

log = logging.getLogger(__name__)

# the table's columns, by the format of the data's ground truth
TABLE_KEYS = {"crowdpose": ("AP", "AP50", "AP75", "AR", "AP_E", "AP_M", "AP_H"),
              "coco": ("AP", "AP50", "AP75", "AP_M", "AP_L")}


@dataclass(frozen=True)
class Preset:
    """One protocol: model size, training budget, what ``--init zoo`` means, the evaluation."""

    name: str
    recipes: tuple[str, ...]
    train_steps: int
    lr: float
    lr_drop: tuple[int, ...] = ()
    batch_size: int = 4
    seeds: tuple[int, ...] = (0,)
    sampling_steps: tuple[int, ...] = (1, 2, 4)
    zoo: str = "backbone"  # --init zoo: "edpose_tiny" (the zoo model), "backbone" (SynthCrowd), "imagenet" (timm)
    freeze_backbone: bool = True  # with a pretrained backbone
    eval_every: int = 0  # training curve on the val split (0: end only)
    curve_images: int = 100  # val images for the training curve
    test_images: int | None = None  # None: the whole test split
    latency_images: int = 20
    synthcrowd_images: int = 4000  # scenes rendered in all (80/10/10 train/val/test)
    real_sizes: dict = field(default_factory=dict)  # DataConfig fields for COCO / CrowdPose images
    recipe_overrides: dict = field(default_factory=dict)  # recipe -> model overrides for that recipe's runs
    # several hypotheses per person: best-of-S over this many test images (0: not measured), S up to the last count
    hypotheses_images: int = 0
    hypotheses_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    # the pose-NMS OKS thresholds a diffusion run is scored at on its val split (curve_images), to choose one by
    nms_thresholds: tuple[float, ...] = ()
    # top-down runs' TrainConfig fields (batch_size, lr, max_steps, lr_drop): posediff.bench_topdown; {}: none offered
    topdown: dict = field(default_factory=dict)


# quick's diffusion head is anchored to ED-Pose's regression (docs/recipes.md): it starts from the zoo's edpose_tiny
# and trains 100 steps. The paper's head scored 21.7 AP there (seed 0;
# docs/results/bench/quick_synthcrowd/paper_head_seed0.json),
# under the preset's target of 30 (likely: its fresh denoiser's tokens are added to ED-Pose's; not measured).
# The overrides are the regression head as quick measured it, its pose-NMS threshold included
_ANCHORED = {"diffusion_regpose_tiny": {"anchor": "regression", "prior_std": 0.0, "ensemble": "pool",
                                        "renewal": True, "nms_threshold": 0.9}}
_CPU_SIZES = dict(train_scales=(256, 288, 320), crop_scales=(224, 256), crop_size=(192, 288), max_size=512)

PRESETS: dict[str, Preset] = {
    # 100 steps and 2 sampling-step counts keep it within the 15 min budget on 2 cores (368 s on a fresh clone,
    # docs/benchmarks.md); 150 steps and (1, 2, 4) once took 16.8 min on a slow day of that machine
    "quick": Preset("quick", ("edpose_tiny", "diffusion_regpose_tiny"), train_steps=100, lr=1e-4, seeds=(0, 1),
                    sampling_steps=(1, 4), zoo="edpose_tiny", eval_every=50, curve_images=40, real_sizes=_CPU_SIZES,
                    recipe_overrides=_ANCHORED),
    # the paper's head (anchor="paper"), and its diffusion-off control with --recipes diffusion_regpose_tiny_control
    # top-down: the persons the one-stage runs see (7000 steps x 4 scenes x 4.55 persons on SynthCrowd's train split)
    # in batches of 32 crops, SimpleBaseline's Adam lr (1e-3) for the head and the backbone, which trains (frozen,
    # its stride-32 level of a 128x96 crop is 4x3 cells: 0.06 val AP after 500 steps against 1.2; docs/recipes.md),
    # the drop at the same 80%
    "standard": Preset("standard", ("edpose_tiny", "diffusion_regpose_tiny", "simplebaseline_tiny",
                                    "diffusionpose_tiny"), train_steps=7000, lr=2e-4,
                       lr_drop=(5600,), seeds=(0, 1, 2), sampling_steps=(1, 2, 4, 8), zoo="backbone",
                       eval_every=1000, curve_images=200, real_sizes=_CPU_SIZES, hypotheses_images=100,
                       nms_thresholds=(0.5, 0.6, 0.7, 0.8, 0.9),
                       topdown=dict(batch_size=32, lr=1e-3, backbone_lr_mult=1.0, max_steps=4000, lr_drop=(3200,),
                                    model={"freeze_backbone": False})),
    # 60 epochs of COCO's 56,599 keypoint images at 8 GPUs x batch 8 (ED-Pose's schedule; lr drop at epoch 55)
    # top-down: mmpose's SimpleBaseline schedule, 210 epochs of COCO's 149,813 persons in global batches of 512
    # (batch_size is per process: 64 x 8 GPUs), Adam lr 5e-4, drops at epochs 170 and 200
    "full": Preset("full", ("edpose", "diffusion_regpose"), train_steps=53000, lr=1e-4, lr_drop=(48600,),
                   batch_size=8, seeds=(0, 1, 2), sampling_steps=(1, 2, 4, 8), zoo="imagenet", freeze_backbone=False,
                   eval_every=10000, curve_images=500, latency_images=50,
                   topdown=dict(batch_size=64, lr=5e-4, backbone_lr_mult=1.0, max_steps=61446,
                                lr_drop=(49742, 58520))),
}


@dataclass(frozen=True)
class BenchSpec:
    """What the command line asks for; ``None`` fields take the preset's value."""

    preset: str = "quick"
    recipes: tuple[str, ...] | None = None
    dataset: str = "synthcrowd"
    data_root: str | None = None
    seeds: tuple[int, ...] | None = None
    steps: tuple[int, ...] | None = None  # sampling steps to evaluate
    init: str = "zoo"  # zoo | scratch | PATH
    out: str | None = None
    train_steps: int | None = None
    test_images: int | None = None
    workers: int = 0
    overrides: tuple[str, ...] = ()  # key=value applied to every run's TrainConfig (``posediff train`` syntax)
    detections: str | None = None  # top-down runs are also scored with these boxes (COCO detection results)
    report_only: bool = False  # report the finished runs among recipes x seeds; train none
    retime: bool = False  # measure every run's latency again in this call (one machine, one load)
    rescore: bool = False  # score again the runs trained before a sampling default changed, at the current one

    def resolved(self) -> tuple[Preset, BenchSpec]:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.dataset not in ("synthcrowd", "coco", "crowdpose"):
            raise ValueError(f"--dataset must be synthcrowd, coco or crowdpose, got {self.dataset!r}")
        if self.dataset != "synthcrowd" and not self.data_root:
            raise ValueError(f"--dataset {self.dataset} needs --data-root (the folder of the real data)")
        p = PRESETS[self.preset]
        spec = dataclasses.replace(
            self, recipes=tuple(self.recipes or p.recipes), seeds=tuple(self.seeds if self.seeds else p.seeds),
            steps=tuple(sorted(set(self.steps or p.sampling_steps))),
            out=self.out or f"runs/bench/{self.preset}_{self.dataset}",
            train_steps=p.train_steps if self.train_steps is None else self.train_steps,
            test_images=self.test_images if self.test_images is not None else p.test_images)
        from .registry import list_models

        unknown = [r for r in spec.recipes if r not in list_models()]
        if unknown:
            raise ValueError(f"--recipes: unknown {unknown}; available: {list_models()}")
        if any(s < 1 for s in spec.steps):
            raise ValueError(f"--steps must be positive integers, got {spec.steps}")
        if spec.train_steps < 1:
            raise ValueError(f"--train-steps must be at least 1, got {spec.train_steps}")
        if spec.test_images is not None and spec.test_images < 1:
            raise ValueError(f"--test-images must be at least 1, got {spec.test_images}")
        if len(set(spec.seeds)) != len(spec.seeds) or min(spec.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {spec.seeds}")
        if len(set(spec.recipes)) != len(spec.recipes):
            raise ValueError(f"--recipes must be distinct, got {spec.recipes}")
        if spec.workers < 0:
            raise ValueError(f"--workers must be 0 (load in the main process) or more, got {spec.workers}")
        if spec.detections is not None and not Path(spec.detections).is_file():
            raise ValueError(f"--detections {spec.detections}: no such file (expected COCO detection results)")
        for item in spec.overrides:
            flag = _BENCH_OWNED.get(item.split("=", 1)[0])
            if flag:
                raise ValueError(f"--set {item}: the bench sets this field for each run; use {flag} instead")
        return p, spec


# TrainConfig fields each run's plan sets itself; ``--set`` may not change them behind the folder's stamp
_BENCH_OWNED = {"recipe": "--recipes", "seed": "--seeds", "out": "--out", "max_steps": "--train-steps"}


# ----------------------------------------------------------------------------------------------------
# Planning: one TrainConfig per (recipe, seed)
# ----------------------------------------------------------------------------------------------------

def _data_config(preset: Preset, spec: BenchSpec):
    from .tasks.multiperson import DataConfig, coco_data, crowdpose_data

    if spec.dataset == "synthcrowd":
        return DataConfig(kind="synthcrowd", root=spec.data_root or "data/synthcrowd",
                          num_images=preset.synthcrowd_images, size=256, skeleton="coco17",
                          max_val_images=preset.curve_images)
    make = coco_data if spec.dataset == "coco" else crowdpose_data
    return dataclasses.replace(make(spec.data_root), max_val_images=preset.curve_images, **preset.real_sizes)


def _init(preset: Preset, spec: BenchSpec) -> tuple[str | None, dict]:
    """(weights file to start from or None, model overrides) for ``--init``."""
    if spec.init == "scratch":
        return None, {}
    if spec.init != "zoo":
        if not Path(spec.init).is_file():
            raise FileNotFoundError(f"--init {spec.init}: no such file (expected zoo, scratch or a weights file)")
        return spec.init, {"freeze_backbone": preset.freeze_backbone}
    from .zoo import PRETRAINED, zoo_path

    if preset.zoo == "imagenet":
        return None, {"pretrained_backbone": True}
    if preset.zoo == "edpose_tiny":
        return str(zoo_path(PRETRAINED[("edpose_tiny", "synthcrowd")])), {"freeze_backbone": preset.freeze_backbone}
    return str(zoo_path("resnet18_synthcrowd_heatmaps.safetensors")), {"freeze_backbone": preset.freeze_backbone}


def plan_runs(preset: Preset, spec: BenchSpec) -> list[dict]:
    """One TrainConfig per (recipe, seed); every recipe is built once, without weights, so that settings it would
    refuse (``--set model.*``, ``--steps``) are refused before the first run trains."""
    from .engine.config import TrainConfig, apply_overrides
    from .engine.train import build_model

    data = _data_config(preset, spec)
    init, model = _init(preset, spec)
    if spec.dataset == "crowdpose":
        model = dict(model, num_keypoints=14)
    runs = []
    for recipe in spec.recipes:
        for seed in spec.seeds:
            out = Path(spec.out) / "runs" / recipe / f"seed{seed}"
            cfg = TrainConfig(recipe=recipe, model=dict(model, **preset.recipe_overrides.get(recipe, {})),
                              data=data, out=str(out), seed=seed,
                              batch_size=preset.batch_size, workers=spec.workers, lr=preset.lr,
                              max_steps=spec.train_steps,
                              lr_drop=tuple(s for s in preset.lr_drop if s < spec.train_steps),
                              eval_every=min(preset.eval_every, spec.train_steps) if preset.eval_every else 0,
                              ckpt_every=max(50, spec.train_steps // 10), keep_checkpoints=1)
            if task_name(recipe) == "topdown":
                from .bench_topdown import plan_topdown

                cfg = plan_topdown(cfg, preset, spec, recipe)
            cfg = apply_overrides(cfg, list(spec.overrides))
            runs.append(dict(recipe=recipe, seed=seed, config=cfg, init=init))
        build_model(cfg, steps=spec.steps, weights=False)  # a dry build: settings a run would only trip on later
    return runs


# ----------------------------------------------------------------------------------------------------
# One run: train (or continue), then evaluate at every sampling step not yet evaluated
# ----------------------------------------------------------------------------------------------------

def finished_runs(runs: list[dict], out: Path) -> list[dict]:
    """The planned runs that finished training and have a record (``--report-only``); the others are listed."""
    def finished(run: dict) -> bool:
        folder = Path(run["config"].out)
        return _trained_steps(folder) == run["config"].max_steps and (folder / "bench.json").is_file()

    done, left = [], []
    for r in runs:
        (done if finished(r) else left).append(r)
    report_only_check(out, done, [f"{r['recipe']} seed {r['seed']}" for r in left])
    return done


def _trained_steps(folder: Path) -> int | None:
    """The steps a run folder was trained for: its result.json's, or (a folder carried without it) its record's."""
    for name, key in (("result.json", "steps"), ("bench.json", "train_steps")):
        try:
            steps = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError):
            continue
        if steps:
            return steps
    return None


def report_only_check(out: Path, done: list, left: list[str]) -> None:
    """``--report-only``: refuse a folder with nothing finished among what was asked; name what is left out."""
    if not done:
        raise ValueError(f"--report-only: {out} holds no finished run of the recipes and seeds asked for")
    if left:
        print(f"--report-only: not finished, left out of the report: {', '.join(left)}", flush=True)


def _same_json(a, b) -> bool:
    """Equal as a stamp file stores them (tuples and lists alike)."""
    return json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)


def _test_set(cfg, spec: BenchSpec):
    """(dataset, {format: ground-truth file}) of the split the bench scores on."""
    from .tasks.multiperson import build_datasets

    d = cfg.data
    if d.kind == "synthcrowd":
        d = dataclasses.replace(d, val_split="test", max_val_images=spec.test_images)
    else:
        d = dataclasses.replace(d, max_val_images=spec.test_images)
    _, test_ds, ann, metric = build_datasets(dataclasses.replace(cfg, data=d))
    gts = {metric: ann}
    if d.kind == "synthcrowd":
        from .data.synthcrowd import check_renderer

        gts["crowdpose"] = str(Path(d.root) / "test" / "crowdpose.json")
        check_renderer(gts["crowdpose"], ground_truth(gts["crowdpose"]))
    return test_ds, gts


def showcase_ids(gts: dict, image_ids: list[int], n: int = 3) -> list[int]:
    """The hardest images: highest crowd index (CrowdPose ground truth), else most persons."""
    keep = set(image_ids)
    if "crowdpose" in gts:
        gt = ground_truth(str(gts["crowdpose"]))
        ranked = sorted((im for im in gt["images"] if im["id"] in keep),
                        key=lambda im: (-im.get("crowdIndex", 0.0), im["id"]))
        return [im["id"] for im in ranked[:n]]
    gt = ground_truth(str(next(iter(gts.values()))))
    count: dict[int, int] = {}
    for a in gt["annotations"]:
        if a["image_id"] in keep and a.get("num_keypoints", 0) > 0:
            count[a["image_id"]] = count.get(a["image_id"], 0) + 1
    return sorted(count, key=lambda i: (-count[i], i))[:n]


@torch.no_grad()
def latency_ms(model, dataset, n: int, steps: int | None = None, warmup: int = 2) -> dict:
    """Milliseconds per image, batch 1, over the first ``n`` test images (after ``warmup`` passes), on the
    model's device (CUDA synchronised around each pass)."""
    from .data import collate

    model.eval()
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n = min(n, len(dataset))
    items = [tuple(x.to(device) for x in collate([dataset[i]])[:2]) for i in range(n)]
    gen = torch.Generator().manual_seed(0)
    kwargs = dict(steps=steps, generator=gen) if steps is not None else dict(generator=gen)
    for images, mask in items[:warmup]:
        model(images, mask, **kwargs)
    times = []
    for images, mask in items:
        sync()
        t0 = time.perf_counter()
        model(images, mask, **kwargs)
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return dict(median=float(np.median(times)), mean=float(np.mean(times)), images=n,
                threads=torch.get_num_threads())


def _is_diffusion(model) -> bool:
    return hasattr(model.head, "sampling_steps")


def _eval_key(steps: int | None) -> str:
    """A run's evaluations are kept under their sampling steps ("4"), a one-pass recipe's under "-"."""
    return "-" if steps is None else str(steps)


def run_one(run: dict, spec: BenchSpec) -> dict:
    """Train (resuming) and evaluate one (recipe, seed); everything finished is kept in ``bench.json``."""
    from .engine.checkpoint import latest_checkpoint, load_model
    from .engine.train import distributed, run_folder, train
    from .tasks.multiperson import predict_results_at_steps

    cfg, out = run["config"], Path(run["config"].out)
    rank, local, _ = distributed()
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    folder = run_folder(out, "--out")
    folder.check(["bench.json"])
    record_path = out / "bench.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    done = out / "result.json"
    result = json.loads(done.read_text()) if done.is_file() else None
    if _trained_steps(out) != cfg.max_steps:
        log.info("training %s seed %d (%d steps) in %s", run["recipe"], run["seed"], cfg.max_steps, out)
        train(cfg, resume=latest_checkpoint(out) is not None, init=run["init"])
        result = json.loads(done.read_text())
    if rank != 0:  # under torchrun every rank trains; rank 0 alone evaluates and reports
        return {}
    folder.claim(["bench.json"])
    if result is not None:
        record.update(recipe=run["recipe"], seed=run["seed"], init=run["init"], train_steps=result["steps"],
                      history=[dict(step=h["step"], **{k: h["eval"][k] for k in ("AP", "AP50", "AP75")})
                               for h in result["history"] if h.get("eval")],
                      final_val=result.get("metrics", {}))
        record["train_seconds"] = result["seconds"]  # over every call that trained it (train() adds them up)
    record.setdefault("evals", {})
    if spec.rescore:
        _rescore(record, run)

    loaded = []

    def model(purpose: str):  # loaded only for what is not recorded: a finished run's records stand without weights
        if not loaded:
            found, why = _weights(out)
            if found is None:
                raise FileNotFoundError(f"{out}: the run is trained ({done.name}) but has no checkpoint left to "
                                        f"compute {purpose} ({why}); restore its weights, or its complete "
                                        f"bench.json from where the folder was carried")
            sampling = (record.get("scored_sampling") or {}).get("fields", {})  # what the records were scored at
            loaded.append(load_model(found[0], **sampling).to(device))
        return loaded[0]

    if "params_M" not in record or "default_steps" not in record:
        m = model("its parameter count")
        record["params_M"] = round(sum(p.numel() for p in m.parameters()) / 1e6, 2)
        record["default_steps"] = int(m.head.sampling_steps) if _is_diffusion(m) else None
    record["batch_size"] = cfg.batch_size
    if spec.retime and "latency_ms" in record:
        if _weights(out)[0] is not None:
            record.pop("latency_ms")  # measured again below, as every run of this call is
        else:
            log.warning("--retime: %s seed %d has no weights here; its recorded latency stays (the report names "
                        "where it was measured)", run["recipe"], run["seed"])
    if task_name(run["recipe"]) == "topdown":
        return _run_topdown(record, run, spec, model, device)
    diffusion = record["default_steps"] is not None
    test_ds, gts = _test_set(cfg, spec)
    image_ids = [int(i) for i in test_ds.ids]
    record["test_images"] = len(image_ids)
    wanted = list(spec.steps) if diffusion else [None]
    if diffusion and record["default_steps"] not in wanted:
        wanted.append(record["default_steps"])
    show = showcase_ids(gts, image_ids)
    record["showcase_ids"] = show
    missing = [s for s in wanted if _eval_key(s) not in record["evals"]]
    if missing:  # one pass for every missing step count: the image features are computed once
        t0 = time.time()
        purpose = f"its test metrics (sampling steps {', '.join(map(_eval_key, missing))})"
        by_steps = predict_results_at_steps(model(purpose), test_ds, missing, batch_size=4, device=device,
                                            progress=True, seed=run["seed"])
        seconds = round(time.time() - t0, 1)
        for steps in missing:
            key, results = _eval_key(steps), by_steps[steps]
            metrics = score_results(results, gts, image_ids)
            record["evals"][key] = dict(steps=steps, metrics=metrics, seconds=seconds, pass_steps=missing,
                                        showcase=[r for r in results if r["image_id"] in show and r["score"] >= 0.3])
            log.info("%s seed %d steps %s: %s", run["recipe"], run["seed"], key,
                     {k: round(v, 3) for k, v in metrics[_table_format(gts)].items()})
        write_json(record, record_path)
    if "latency_ms" not in record:
        from .env import machine_info

        record["latency_ms"] = latency_ms(model("its latency"), test_ds, PRESETS[spec.preset].latency_images,
                                          steps=record["default_steps"])
        record["machine"] = machine_info()  # where the latency was measured: a carried folder mixes machines
        write_json(record, record_path)
    preset = PRESETS[spec.preset]
    wanted = [k for k in ("hypotheses", "lr_alike") if preset.hypotheses_images and k not in record
              and (k == "hypotheses" or spec.dataset == "synthcrowd")]
    try:
        sampler = model("its samples") if wanted else None
    except FileNotFoundError as err:  # a carried run without weights: the rest of its records still report
        log.warning("%s seed %d: several hypotheses not measured: %s", run["recipe"], run["seed"], err)
        wanted = []
    if "hypotheses" in wanted:
        record["hypotheses"] = hypotheses(sampler, test_ds, gts, preset, run["seed"], record["default_steps"], device)
        write_json(record, record_path)
    if "lr_alike" in wanted:
        record["lr_alike"] = lr_alike(sampler, cfg, preset, run["seed"], record["default_steps"], device)
        write_json(record, record_path)
    if preset.nms_thresholds and diffusion and "nms_sweep" not in record:
        try:
            record["nms_sweep"] = nms_sweep(model("its NMS sweep"), cfg, preset, run["seed"], device)
            write_json(record, record_path)
        except FileNotFoundError as err:
            log.warning("%s seed %d: NMS sweep not measured: %s", run["recipe"], run["seed"], err)
    sweep = record.get("nms_sweep")
    if sweep and float(sweep["best"]) != sweep["model_threshold"] and "nms_chosen" not in record:
        try:  # the test split at the threshold val chose, beside the run's own
            record["nms_chosen"] = nms_chosen(model("its test metrics at the val-chosen NMS threshold"), test_ds,
                                              gts, image_ids, float(sweep["best"]), record["default_steps"],
                                              run["seed"], device)
            write_json(record, record_path)
        except FileNotFoundError as err:
            log.warning("%s seed %d: test at the val-chosen NMS threshold not measured: %s", run["recipe"],
                        run["seed"], err)
    return record


def _weights(out: Path) -> tuple[tuple | None, str]:
    """A run folder's latest checkpoint (:func:`~posediff.engine.checkpoint.latest_checkpoint`) or None, and why
    there is none."""
    from .engine.checkpoint import latest_checkpoint

    try:
        found = latest_checkpoint(out)
    except FileNotFoundError as err:  # last.json names weights that were not carried
        return None, str(err)
    return found, "no last.json"


# What a sampling field can change in a run's record: dropped by --rescore, measured again from the weights (the
# coarse head's scores, which no sampling field alters, stay; so do the training records, the val curve included,
# which were sampled as trained)
_SAMPLED = ("evals", "evals_detector", "detections", "latency_ms", "machine", "hypotheses", "lr_alike", "nms_sweep",
            "nms_chosen")


def _rescore(record: dict, run: dict) -> None:
    """``--rescore``: a run trained before a sampling default of its recipe changed
    (:data:`posediff.registry.SAMPLING_FIELDS`; the weights are the same at either value) drops what it scored at
    the earlier value, to be measured again at the current one; ``record["scored_sampling"]`` names the fields, their
    values and the config version, and whatever the run measures later loads its weights with those values. A run
    without weights here keeps its records; one rescored at the current values already is left as it is."""
    from .engine.checkpoint import trained_overrides
    from .io import read_safetensors
    from .registry import CONFIG_VERSION, get_config

    found, _ = _weights(Path(run["config"].out))
    if found is None:
        log.warning("--rescore: %s seed %d has no weights here; its records stay as scored", run["recipe"],
                    run["seed"])
        return
    meta, _ = read_safetensors(found[0], "a posediff checkpoint", tensors=False)
    trained, now = trained_overrides(meta), trained_overrides(meta, current_sampling=True)
    fields = sorted(set(trained) - set(now))  # sampling fields the run was trained at an earlier default of
    if not fields:
        return
    current = get_config(meta["recipe"], **now)
    scored = dict(config_version=CONFIG_VERSION, fields={k: getattr(current, k) for k in fields})
    if (record.get("scored_sampling") or {}).get("fields") == scored["fields"]:  # rescored already
        return
    log.info("--rescore: %s seed %d, trained at %s, scored again at %s", run["recipe"], run["seed"],
             {k: trained[k] for k in fields}, scored["fields"])
    for key in _SAMPLED:
        record.pop(key, None)
    record.update(evals={}, scored_sampling=scored)


def _run_topdown(record: dict, run: dict, spec: BenchSpec, model, device) -> dict:
    """A top-down run's test metrics (ground-truth boxes and the detector's) and latency
    (:mod:`posediff.bench_topdown`); ``model(purpose)`` loads its weights when something is missing."""
    from .bench_topdown import detector_boxes, evaluate_topdown, topdown_latency_ms
    from .env import machine_info

    cfg = run["config"]
    test_ds, gts = _test_set(cfg, spec)
    image_ids = [int(i) for i in test_ds.ids]
    record.update(task="topdown", test_images=len(image_ids), showcase_ids=showcase_ids(gts, image_ids))
    evaluate_topdown(record, run, spec, model, gts, detector_boxes(Path(spec.out), cfg, spec, device), device)
    if "latency_ms" not in record:
        record["latency_ms"] = topdown_latency_ms(model("its latency"), cfg, spec, PRESETS[spec.preset].latency_images,
                                                  steps=record["default_steps"])
        record["machine"] = machine_info()
    write_json(record, Path(cfg.out) / "bench.json")
    return record


def nms_sweep(model, cfg, preset: Preset, seed: int, device) -> dict:
    """Val AP (the model's own format, ``preset.curve_images`` val images, the recipe's sampling steps) at each
    pose-NMS OKS threshold of ``preset.nms_thresholds``: what a threshold suited to the persons' size is chosen
    by. The model's own threshold is restored."""
    from .tasks.multiperson import build_datasets, evaluate

    _, val_ds, val_ann, metric = build_datasets(cfg)
    out = {}
    for threshold in preset.nms_thresholds:
        with attributes_set(model, nms_threshold=float(threshold)):
            out[f"{threshold:g}"] = evaluate(model, val_ds, val_ann, metric, batch_size=4, device=device)["AP"]
    return dict(val_ap=out, images=len(val_ds), format=metric, model_threshold=model.nms_threshold,
                best=max(out, key=lambda k: out[k]))


def nms_chosen(model, test_ds, gts: dict, image_ids: list[int], threshold: float, steps: int | None, seed: int,
               device) -> dict:
    """Test metrics at the recipe's sampling steps with the pose-NMS ``threshold`` that val chose
    (:func:`nms_sweep`); the model's own threshold is restored."""
    from .tasks.multiperson import predict_results_at_steps

    with attributes_set(model, nms_threshold=float(threshold)):
        results = predict_results_at_steps(model, test_ds, [steps], batch_size=4, device=device, progress=True,
                                           seed=seed)[steps]
    return dict(threshold=threshold, steps=steps, metrics=score_results(results, gts, image_ids))


def hypotheses(model, test_ds, gts: dict, preset: Preset, seed: int, steps: int | None, device) -> dict:
    """Several hypotheses per person (:func:`~posediff.evaluation.hypotheses.sample_hypotheses`) over the first
    ``preset.hypotheses_images`` test images, in the model's own format."""
    import copy

    subset = copy.copy(test_ds)
    subset.ids = test_ds.ids[: preset.hypotheses_images]
    fmt = next(iter(gts))  # the model's own format (the val metric)
    return _sampled(model, subset, ground_truth(str(gts[fmt])), _SKELETONS[fmt], preset.hypotheses_counts, seed,
                    steps, device)


def lr_alike(model, cfg, preset: Preset, seed: int, steps: int | None, device) -> dict:
    """The left / right case: ``preset.hypotheses_images`` test scenes drawn with both sides alike
    (``SceneConfig(left_shade=1.0)``), so that the picture leaves each person's left / right assignment open;
    whether the samples cover both (``swap_share``, ``both_assignments``)."""
    from .data.synthcrowd import SceneConfig, SynthCrowdDataset
    from .data.transforms import eval_transforms

    d = cfg.data
    ds = SynthCrowdDataset(preset.hypotheses_images, "test", skeleton=d.skeleton, scene_seed=d.scene_seed,
                           config=SceneConfig(size=d.size, left_shade=1.0),
                           transforms=eval_transforms(d.eval_scale, d.max_size))
    out = _sampled(model, ds, ds.ground_truth(), d.skeleton, (max(preset.hypotheses_counts),), seed, steps, device)
    return {k: out.get(k) for k in ("persons", "images", "samples", "steps", "swap_share", "both_assignments",
                                    "best_oks")}


def _sampled(model, ds, gt: dict, skeleton: str, counts, seed: int, steps: int | None, device) -> dict:
    """S = max(counts) sampling runs of ``model`` over ``ds`` (seeds ``seed`` x 1000 + s; a one-pass model once,
    its hypotheses the same S times), summarised by :func:`~posediff.evaluation.hypotheses.sample_hypotheses`."""
    from .evaluation.hypotheses import sample_hypotheses
    from .tasks.multiperson import predict_results

    count = max(counts)
    runs = count if steps is not None else 1
    samples = [predict_results(model, ds, batch_size=4, device=device, steps=steps, seed=seed * 1000 + s)
               for s in range(runs)]
    out = sample_hypotheses(gt, samples * (count // runs), skeleton=skeleton, image_ids=[int(i) for i in ds.ids],
                            counts=counts)
    return dict(out, images=len(ds.ids), samples=runs, steps=steps)


_SKELETONS = {"coco": "coco17", "crowdpose": "crowdpose14"}


def _table_format(gts: dict) -> str:
    return "crowdpose" if "crowdpose" in gts else next(iter(gts))


# ----------------------------------------------------------------------------------------------------
# The whole bench
# ----------------------------------------------------------------------------------------------------

# what the bench writes in its --out folder (besides the run folders under runs/, each a training run's own)
PLOTS = ("ap_vs_train_step.png", "ap_vs_sampling_steps.png", "ap_per_crowd_level.png", "best_of_samples.png")
BENCH_FILES = ("bench_config.json", "results.json", "report.md", "predictions.png", *(f"plots/{p}" for p in PLOTS),
               "detections/edpose_tiny_test.json")  # the boxes top-down runs are also scored with (bench_topdown)


def bench_folder(out):
    """The bench's ``--out`` as an :class:`~posediff.io.OutputFolder` (one an earlier posediff wrote without a
    manifest is known by its ``bench_config.json``, and its files taken as posediff's)."""
    from .io import OutputFolder

    def benched(folder: Path) -> list[str]:
        try:
            return list(BENCH_FILES) if "preset" in json.loads((folder / "bench_config.json").read_text()) else []
        except (OSError, ValueError, TypeError):
            return []

    return OutputFolder(out, "--out", adopt=benched)


def run_bench(spec: BenchSpec, command: str | None = None) -> dict:
    from . import __version__
    from .bench_topdown import with_detector_rows
    from .engine.config import jsonable
    from .engine.train import distributed
    from .env import machine_info
    from .tasks.multiperson import DataConfig

    preset, spec = spec.resolved()
    rank, _, world = distributed()
    out = Path(spec.out)
    folder = bench_folder(out)
    folder.check(BENCH_FILES)  # before anything is planned or trained
    runs = plan_runs(preset, spec)
    if spec.report_only:
        runs = finished_runs(runs, out)
    from .data.synthcrowd import RENDERER_VERSION

    wanted = dict(preset=preset.name, dataset=spec.dataset, recipes=list(spec.recipes), init=spec.init,
                  train_steps=spec.train_steps, test_images=spec.test_images, overrides=list(spec.overrides),
                  data=dict({f.name: getattr(runs[0]["config"].data, f.name) for f in dataclasses.fields(DataConfig)},
                            flip=runs[0]["config"].data.flips, eval_size=runs[0]["config"].data.eval_scale),
                  synthcrowd_renderer=RENDERER_VERSION if spec.dataset == "synthcrowd" else None,
                  detections=spec.detections)
    stamp = out / "bench_config.json"
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        if isinstance(have.get("data"), dict) and have["data"].get("flip", False) is None:  # stamped unresolved
            have["data"]["flip"] = DataConfig(kind=have["data"].get("kind", "synthcrowd")).flips
        diff = []
        for k in wanted:
            if k == "recipes":  # not the protocol: a folder's runs may be benched in several calls
                wanted[k] = list(dict.fromkeys([*have.get(k, []), *wanted[k]]))
            elif k == "data" and isinstance(have.get(k), dict):
                diff += [f"data.{f} {have[k].get(f)!r} (wanted {v!r})" for f, v in wanted[k].items()
                         if not _same_json(have[k].get(f), v)]
            elif not _same_json(have.get(k), wanted[k]):
                diff.append(f"{k} {have.get(k)!r} (wanted {wanted[k]!r})")
        if diff:
            raise ValueError(f"{stamp}: this folder holds a bench run with other settings: {'; '.join(diff)}; use "
                             f"another --out or delete the folder")
    if rank == 0:
        folder.claim(BENCH_FILES)
        write_json(jsonable(wanted), stamp)
    t0 = time.time()
    records = []
    for i, run in enumerate(runs):
        if rank == 0:
            print(f"[{i + 1}/{len(runs)}] {run['recipe']} seed {run['seed']}", flush=True)
        records.append(run_one(run, spec))
        if world > 1:
            torch.distributed.barrier()  # the others wait while rank 0 evaluates
    if rank != 0:
        return {}
    test_ds, gts = _test_set(runs[0]["config"], spec)
    fmt = _table_format(gts)
    val_metric = next(iter(gts))  # the model's own format, which build_datasets validates in
    results = dict(
        bench=dict(dataclasses.asdict(spec), table_format=fmt, val_metric=val_metric, command=command,
                   synthcrowd_renderer=wanted["synthcrowd_renderer"], eval_size=wanted["data"]["eval_size"]),
        preset=dataclasses.asdict(preset),
        config={f"{r['recipe']}/seed{r['seed']}": jsonable(r["config"]) for r in runs},
        runs=[_public(r, fmt) for r in with_detector_rows(records)],
        summary=summarise(with_detector_rows(records), fmt),
        wall_seconds_this_call=round(time.time() - t0, 1),
        machine=machine_info(), posediff=__version__, date=time.strftime("%Y-%m-%d %H:%M"))
    write_json(results, out / "results.json")
    write_report(out, results, records, gts, test_ds)
    print(format_table(results))
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}")
    return results


def _public(record: dict, fmt: str) -> dict:
    """A run as results.json shows it: metrics at the recipe's default sampling steps, and per step."""
    key = _eval_key(record["default_steps"])
    return dict(recipe=record["recipe"], seed=record["seed"], metrics=record["evals"][key]["metrics"][fmt],
                metrics_all_formats=record["evals"][key]["metrics"], sampling_steps=record["default_steps"],
                per_sampling_steps={k: v["metrics"][fmt] for k, v in record["evals"].items() if k != "-"},
                latency_ms=record["latency_ms"], params_M=record["params_M"], train_steps=record["train_steps"],
                train_seconds=record["train_seconds"], init=record["init"], test_images=record["test_images"],
                curve=record["history"], final_val=record.get("final_val", {}), machine=record.get("machine"),
                task=record.get("task", "multiperson"), batch_size=record.get("batch_size"),
                boxes=record["evals"][key].get("boxes"),
                hypotheses=record.get("hypotheses"), lr_alike=record.get("lr_alike"), nms_sweep=record.get("nms_sweep"),
                scored_sampling=record.get("scored_sampling"),
                nms_chosen=dict(record["nms_chosen"], metrics=record["nms_chosen"]["metrics"][fmt])
                if record.get("nms_chosen") else None,
                coarse_head=record["coarse_head"]["metrics"][fmt] if record.get("coarse_head") else None)


def summarise(records: list[dict], fmt: str) -> dict:
    """Per recipe: mean and std (over seeds) of every metric, latency and parameters."""
    out: dict[str, dict] = {}
    for recipe in dict.fromkeys(r["recipe"] for r in records):
        mine = [_public(r, fmt) for r in records if r["recipe"] == recipe]
        row = {"seeds": [m["seed"] for m in mine]}
        for k in mine[0]["metrics"]:
            row[k] = _mean_std([m["metrics"][k] for m in mine])
        row["latency_ms"] = _mean_std([m["latency_ms"]["median"] for m in mine])
        row["params_M"] = mine[0]["params_M"]
        row["sampling_steps"] = mine[0]["sampling_steps"]
        row.update(task=mine[0]["task"], boxes=mine[0]["boxes"], train_steps=mine[0]["train_steps"],
                   batch_size=mine[0]["batch_size"], train_minutes=_mean_std([m["train_seconds"] / 60 for m in mine]))
        steps = sorted({int(k) for m in mine for k in m["per_sampling_steps"]})
        row["per_sampling_steps"] = {  # mean over the seeds evaluated at that many steps
            str(s): {k: _mean_std([m["per_sampling_steps"][str(s)][k] for m in mine
                                   if str(s) in m["per_sampling_steps"]])["mean"] for k in mine[0]["metrics"]}
            for s in steps}
        hyp = [m["hypotheses"] for m in mine if m.get("hypotheses") and m["hypotheses"].get("persons")]
        hyp = [h for h in hyp if h["counts"] == hyp[0]["counts"]]  # runs measured alike (one preset's counts)
        if hyp:
            row["hypotheses"] = dict(counts=hyp[0]["counts"], seeds=len(hyp), **{
                k: [_mean_std([h[k][i] for h in hyp if h[k][i] is not None]) for i in range(len(hyp[0]["counts"]))]
                for k in ("best_oks", "visible", "occluded")},
                spread_error_spearman=_mean_std([h["spread_error_spearman"]["all"] for h in hyp
                                                 if h["spread_error_spearman"]["all"] is not None], least=None))
        paired = [m for m in mine if m.get("coarse_head") and m["boxes"] == "ground truth"]
        if paired:  # the diffusion head against the coarse head it refines, seed by seed
            row["vs_coarse_head"] = {k: _mean_std([m["metrics"][k] - m["coarse_head"][k] for m in paired], least=None)
                                     for k in ("AP", "AP_H")}
            row["coarse_head"] = {k: _mean_std([m["coarse_head"][k] for m in paired]) for k in ("AP", "AP_H")}
        alike = [m["lr_alike"] for m in mine if m.get("lr_alike") and m["lr_alike"].get("persons")]
        if alike:
            row["lr_alike"] = {k: _mean_std([a[k] for a in alike if a[k] is not None])
                               for k in ("swap_share", "both_assignments")}
        out[recipe] = row
    return out


def _mean_std(values, least: float | None = 0.0) -> dict:
    """Mean and sample std over seeds of the values >= ``least`` (the evaluators' -1, no image of that kind, is
    left out; None: every value counts)."""
    vals = np.array([v for v in values if least is None or v >= least], dtype=np.float64)
    if len(vals) == 0:
        return dict(mean=None, std=None)
    return dict(mean=float(vals.mean()), std=float(vals.std(ddof=1)) if len(vals) > 1 else None)


def _pm(v: dict, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
    """A mean ± std over seeds, times ``scale`` (``signed``: a difference, with its sign)."""
    if v["mean"] is None:
        return "n/a"
    mean = f"{scale * v['mean']:{'+' if signed else ''}.{digits}f}"
    if v["std"] is None:  # one seed
        return mean
    return f"{mean} ± {scale * v['std']:.{digits}f}"


def format_table(results: dict) -> str:
    """The markdown table: metrics (×100) mean ± std over seeds, latency, parameters."""
    fmt = results["bench"]["table_format"]
    keys = TABLE_KEYS[fmt]
    topdown = any(row.get("task") == "topdown" for row in results["summary"].values())
    head = ["recipe", *(["persons from"] if topdown else []), "steps", *keys, "latency (ms/img)", "params (M)",
            *(["training (steps × batch)"] if topdown else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for recipe, row in results["summary"].items():
        persons = ["the image" if row.get("task", "multiperson") == "multiperson" else (row.get("boxes") or "?")]
        budget = [f"{row['train_steps']} × {row['batch_size'] or '?'} "
                  f"{'crops' if row.get('task') == 'topdown' else 'scenes'}"]
        cells = [recipe, *(persons if topdown else []), str(row["sampling_steps"] or "-"),
                 *(_pm(row[k]) for k in keys), _pm(row["latency_ms"], 1.0, 0), f"{row['params_M']:.1f}",
                 *(budget if topdown else [])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Report and plots
# ----------------------------------------------------------------------------------------------------

def _plots(out: Path, results: dict, records: list[dict], fmt: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import save_figure

    (out / "plots").mkdir(exist_ok=True)
    made = {}

    def save(fig, name):
        save_figure(fig, out / "plots" / name, bbox_inches="tight")
        made[name] = f"plots/{name}"

    recipes = list(results["summary"])
    colours = dict(zip(recipes, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    # 1. AP against training step (val split), each seed thin, mean thick
    fig, ax = plt.subplots(figsize=(6, 4))
    for recipe in recipes:
        curves = [r["history"] for r in records if r["recipe"] == recipe and r["history"]]
        for c in curves:
            ax.plot([h["step"] for h in c], [100 * h["AP"] for h in c], color=colours[recipe], alpha=0.3, lw=1)
        if curves:
            n = min(len(c) for c in curves)
            ax.plot([h["step"] for h in curves[0][:n]], [100 * np.mean([c[i]["AP"] for c in curves]) for i in range(n)],
                    color=colours[recipe], lw=2, marker="o", label=recipe)
    ax.set(xlabel="training step (from the starting weights)",
           ylabel=f"val AP ({results['bench']['val_metric']}, ×100)", title="AP during training")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend()
    else:  # no run validated during training (eval_every=0)
        ax.text(0.5, 0.5, "no validation during training", ha="center", va="center", transform=ax.transAxes)
    save(fig, PLOTS[0])
    # 2. AP against sampling steps
    fig, ax = plt.subplots(figsize=(6, 4))
    for recipe, row in results["summary"].items():
        if row["per_sampling_steps"]:
            s = sorted(int(k) for k in row["per_sampling_steps"])
            ap = [row["per_sampling_steps"][str(k)]["AP"] for k in s]
            ax.plot(s, [np.nan if v is None else 100 * v for v in ap], marker="o", color=colours[recipe], label=recipe)
        else:
            ax.axhline(100 * row["AP"]["mean"], ls="--", color=colours[recipe], label=f"{recipe} (one pass)")
    ax.set(xlabel="DDIM sampling steps", ylabel=f"test AP ({fmt}, ×100)", title="AP against sampling steps")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, PLOTS[1])
    # 3. AP per crowd level (CrowdPose format) or per person size (COCO)
    levels = ("AP_E", "AP_M", "AP_H") if fmt == "crowdpose" else ("AP_M", "AP_L")
    names = {"AP_E": "easy", "AP_M": "medium" if fmt == "crowdpose" else "medium persons", "AP_H": "hard",
             "AP_L": "large persons"}
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(recipes)
    for j, (recipe, row) in enumerate(results["summary"].items()):
        x = np.arange(len(levels)) + (j - (len(recipes) - 1) / 2) * width
        ax.bar(x, [np.nan if row[k]["mean"] is None else 100 * row[k]["mean"] for k in levels], width,
               yerr=[100 * (row[k]["std"] or 0.0) for k in levels], color=colours[recipe], label=recipe, capsize=3)
    ax.set_xticks(np.arange(len(levels)), [f"{names[k]}\n({k})" for k in levels])
    ax.set(ylabel="test AP (×100)", title="AP per crowd level" if fmt == "crowdpose" else "AP per person size")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    save(fig, PLOTS[2])
    # 4. best-of-S similarity on visible and occluded joints, against the number of samples S
    hyp = {r: row["hypotheses"] for r, row in results["summary"].items() if row.get("hypotheses")}
    if hyp:
        fig, ax = plt.subplots(figsize=(6, 4))
        for recipe, h in hyp.items():
            for key, style in (("visible", "-"), ("occluded", "--")):
                mean = [np.nan if v["mean"] is None else v["mean"] for v in h[key]]
                ax.plot(h["counts"], mean, style, marker="o", color=colours[recipe], label=f"{recipe}, {key}")
        ax.set(xlabel="samples per image S", ylabel="best-of-S keypoint similarity (OKS term)",
               title="Several hypotheses per person")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, PLOTS[3])
    return made


def predictions_png(out: Path, records: list[dict], gts: dict, fmt: str, test_ds) -> str | None:
    """Ground truth and each recipe's predictions (its first seed; score >= 0.3) side by side on the hardest
    test images (``test_ds`` knows where the image files are)."""
    from PIL import Image, ImageDraw

    from .io import atomic_path
    from .viz import draw_poses

    first = {}
    for r in records:
        first.setdefault(r["recipe"], r)
    shown = [r["evals"][_eval_key(r["default_steps"])]["showcase"] for r in first.values()]
    gt_path = gts[fmt]
    gt = ground_truth(str(gt_path))
    k = len(gt["categories"][0]["keypoints"])
    by_id = {im["id"]: im for im in gt["images"]}
    rows = []
    for image_id in next(iter(first.values()))["showcase_ids"]:
        info = by_id[image_id]
        img = test_ds.read_image(image_id)
        zoom = max(1.0, 320 / img.shape[1])  # small scenes are drawn larger
        img = np.asarray(Image.fromarray(img).resize((round(img.shape[1] * zoom), round(img.shape[0] * zoom)),
                                                     Image.BILINEAR))
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id and a.get("num_keypoints", 1) > 0]
        gt_kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, k, 3)
        gt_kp[..., :2] *= zoom
        cells = [draw_poses(img, gt_kp, "crowdpose14" if k == 14 else "coco17")]
        for s in shown:
            kp = np.array([p["keypoints"] for p in s if p["image_id"] == image_id], dtype=np.float64)
            if len(kp):
                kp = kp.reshape(len(kp), -1, 3)
                kp[..., :2] *= zoom
                kp[..., 2] = 2.0  # draw every joint of a kept person, solid
                cells.append(draw_poses(img, kp, "coco17" if kp.shape[1] == 17 else "crowdpose14"))
            else:
                cells.append(img)
        crowd = f", crowd index {info['crowdIndex']:.2f}" if "crowdIndex" in info else ""
        rows.append((f"test image {image_id}{crowd}", cells))
    if not rows:
        return None
    boxes = {name: r["evals"][_eval_key(r["default_steps"])].get("boxes") for name, r in first.items()}
    titles = ["ground truth", *(f"{name} (seed {r['seed']}" + (f", {boxes[name]} boxes)" if boxes[name] else ")")
                                for name, r in first.items())]
    h, w = rows[0][1][0].shape[:2]
    pad, top = 6, 22
    sheet = Image.new("RGB", (len(titles) * (w + pad) + pad, len(rows) * (h + top + pad) + pad + top), "white")
    draw = ImageDraw.Draw(sheet)
    for c, t in enumerate(titles):
        draw.text((pad + c * (w + pad) + 4, 4), t, fill=(0, 0, 0))
    for r, (label, cells) in enumerate(rows):
        y = top + pad + r * (h + top + pad)
        draw.text((pad + 4, y), label, fill=(60, 60, 60))
        for c, cell in enumerate(cells):
            tile = Image.fromarray(np.asarray(cell, dtype=np.uint8)).resize((w, h))
            sheet.paste(tile, (pad + c * (w + pad), y + top - 6))
    with atomic_path(out / "predictions.png") as tmp:
        sheet.save(tmp, format="PNG")
    return "predictions.png"


def write_report(out: Path, results: dict, records: list[dict], gts: dict, test_ds) -> None:
    from .io import atomic_path

    fmt = results["bench"]["table_format"]
    plots = _plots(out, results, records, fmt)
    png = predictions_png(out, records, gts, fmt, test_ds)
    b, p = results["bench"], results["preset"]
    m = results["machine"]
    seeds = ", ".join(str(s) for s in b["seeds"])
    n_test = results["runs"][0]["test_images"]
    n_latency = results["runs"][0]["latency_ms"]["images"]
    lines = [f"# posediff bench: `{b['preset']}` on {b['dataset']}", "",
             f"{results['date']}; {_machine_name(m)}; torch {m['torch']}, posediff {results['posediff']}.", ""]
    if b.get("command"):
        lines += ["```", b["command"], "```", ""]
    what = ("CrowdPose-format metrics (COCO-17 predictions converted to CrowdPose-14); AP_E / AP_M / AP_H are the "
            "APs on images of easy (crowd index < 0.2), medium and hard (≥ 0.8) crowding, the bounds of the "
            "official CrowdPose evaluator") if (
        fmt == "crowdpose" and b["dataset"] == "synthcrowd") else f"{fmt.upper()} metrics"
    over = f"mean ± std over seeds {seeds}" if len(b["seeds"]) > 1 else f"seed {seeds}"
    at = f", shorter side {b['eval_size']} px" if b.get("eval_size") else ""
    lines += [f"## Results: test split ({n_test} images{at}), {over}", "",
              f"{what}. All metrics ×100: AP is the average precision over OKS thresholds 0.50, 0.55, …, 0.95 "
              f"(AP50, AP75: at 0.5 and 0.75), AR the average recall over the same thresholds. Latency: median "
              f"milliseconds per image over {n_latency} test images, then the mean ± std of those medians over seeds "
              f"(one-stage: the image at batch 1; top-down: the crops of its labelled persons in one batch, the "
              f"detector not included); diffusion recipes at their default number of sampling steps (column "
              f"*steps*).", "",
              format_table(results), ""]
    lines += _other_machines(results)
    lines += _rescored(results)
    lines += _verdict(results, fmt)
    steps_rows = {r: row["per_sampling_steps"] for r, row in results["summary"].items() if row["per_sampling_steps"]}
    if steps_rows:
        all_steps = sorted({int(s) for v in steps_rows.values() for s in v})
        lines += ["## AP against sampling steps", "", "Mean over seeds, ×100.", "",
                  "| recipe | " + " | ".join(f"{s} step{'s' if s > 1 else ''}" for s in all_steps) + " |",
                  "|---|" + "---|" * len(all_steps)]
        for r, v in steps_rows.items():
            lines.append(f"| {r} | " + " | ".join(
                f"{100 * v[str(s)]['AP']:.1f}" if str(s) in v and v[str(s)]["AP"] is not None else "-"
                for s in all_steps) + " |")
        lines += ["", *_steps_gain(results), f"![AP against sampling steps]({plots['ap_vs_sampling_steps.png']})", ""]
    lines += _coarse_head_section(results)
    lines += _hypotheses_section(results, plots)
    lines += _nms_section(results)
    lines += ["## AP per crowd level" if fmt == "crowdpose" else "## AP per person size", "",
              f"![AP per level]({plots['ap_per_crowd_level.png']})", "",
              "## Training", "",
              *_budgets(results), "",
              f"Validation AP on {p['curve_images']} val images during training:", "",
              f"![AP against training step]({plots['ap_vs_train_step.png']})", "",
              f"| recipe | seed | training time (s) | final val AP ({b['val_metric']}, ×100) |", "|---|---|---|---|"]
    for r in results["runs"]:
        if r.get("boxes") not in (None, "ground truth"):  # the same run scored with a detector's boxes
            continue
        last = f"{100 * r['final_val']['AP']:.1f}" if r["final_val"].get("AP") is not None else "-"
        lines.append(f"| {r['recipe']} | {r['seed']} | {r['train_seconds']:.0f} | {last} |")
    if png:
        lines += ["", "## Predictions on the hardest test images", "",
                  "Ground truth, then each recipe (its first seed; persons scoring ≥ 0.3), on the test images with the "
                  "highest crowd index (most persons where there is none).", "", f"![predictions]({png})"]
    lines += ["", "## Protocol", "", _protocol(b, p), "",
              "Every number here is in `results.json` beside this file (per run, per sampling step, both metric "
              "formats), with the full training config, versions and machine.", ""]
    with atomic_path(out / "report.md") as tmp:
        Path(tmp).write_text("\n".join(lines))


def _steps_gain(results: dict) -> list[str]:
    """Does sampling longer cost AP? Per diffusion recipe (a detector-box row is its own, named so), seed by seed:
    AP at its most sampling steps minus AP at one step, ×100."""
    gains: dict[str, list] = {}
    for r in results["runs"]:
        per = r["per_sampling_steps"]
        steps = sorted(int(s) for s in per)
        if len(steps) < 2 or steps[0] != 1 or per["1"].get("AP") is None or per[str(steps[-1])].get("AP") is None:
            continue
        gain = 100 * (per[str(steps[-1])]["AP"] - per["1"]["AP"])
        gains.setdefault(r["recipe"], []).append((r["seed"], steps[-1], gain))
    if not gains:
        return []
    parts = []
    for name, g in gains.items():
        each = " / ".join(f"{d:+.1f}" for _, _, d in g).replace("-", "−")
        mean = _pm(_mean_std([d for _, _, d in g], least=None), scale=1.0, signed=True).replace("-", "−")
        seeds = f"seeds {', '.join(str(s) for s, _, _ in g)}; mean {mean}" if len(g) > 1 else f"seed {g[0][0]}"
        parts.append(f"{name}, {g[0][1]} steps against 1: {each} ({seeds})")
    return ["**More sampling steps against one**, AP difference ×100 seed by seed: " + "; ".join(parts) + ".", ""]


def _coarse_head_section(results: dict) -> list[str]:
    """DiffusionPose against the coarse heatmap head it refines, scored alone from the same run (a SimpleBaseline
    trained in the same run: the difference is free of the seed's spread between two runs)."""
    rows = {r: row for r, row in results["summary"].items() if row.get("vs_coarse_head")}
    if not rows:
        return []
    lines = ["## The denoiser against its own coarse head", "",
             "Each DiffusionPose run scored again with its coarse heatmap head alone (ground-truth boxes): "
             "SimpleBaseline's head, trained in the same run. Differences taken run by run, mean ± std over "
             "seeds, ×100.", "", "| recipe | coarse head AP | AP − coarse head's | AP_H − coarse head's |",
             "|---|---|---|---|"]
    for recipe, row in rows.items():
        d = row["vs_coarse_head"]
        lines.append(f"| {recipe} | {_pm(row['coarse_head']['AP'])} | {_pm(d['AP'], signed=True)} | "
                     f"{_pm(d['AP_H'], signed=True)} |")
    return lines + [""]


def _hypotheses_section(results: dict, plots: dict) -> list[str]:
    """The report's table of best-of-S similarity by visibility, and the spread-error correlation."""
    hyp = {r: row["hypotheses"] for r, row in results["summary"].items() if row.get("hypotheses")}
    if not hyp:
        return []
    first = next(r["hypotheses"] for r in results["runs"] if r.get("hypotheses"))
    counts = next(iter(hyp.values()))["counts"]
    lines = ["## Several hypotheses per person", "",
             f"Each recipe sampled the first {first['images']} test images {max(counts)} times (seeds seed x 1000 + "
             f"s; a one-pass recipe once, its hypotheses all the same); for each ground-truth person the "
             f"prediction of highest OKS in a sample is its hypothesis. Best-of-S: per labelled joint the largest "
             f"keypoint similarity (OKS's term, 1 = exact) among the first S samples, averaged over visible and "
             f"occluded joints; mean over seeds. Spread-error: Spearman correlation over joints between the "
             f"spread of the hypotheses and the error of their mean (do the samples disagree where they are "
             f"wrong?).", "",
             "| recipe | joints (seeds) | " + " | ".join(f"S = {c}" for c in counts) + " | spread-error |",
             "|---|---|" + "---|" * len(counts) + "---|"]
    tasks = {r["recipe"]: r.get("task", "multiperson") for r in results["runs"]}
    for recipe, row in results["summary"].items():
        h = row.get("hypotheses")
        if h is None and tasks.get(recipe) == "topdown":  # the section is about one-stage sampling
            continue
        if h is None:  # e.g. runs carried without their weights
            lines.append(f"| {recipe} | not measured | " + " | ".join("-" for _ in counts) + " | - |")
            continue
        corr = h["spread_error_spearman"]
        for key in ("visible", "occluded"):
            cells = ["-" if v["mean"] is None else f"{v['mean']:.3f}" for v in h[key]]
            tail = ("n/a" if corr["mean"] is None else f"{corr['mean']:.2f}") if key == "visible" else ""
            lines.append(f"| {recipe} | {key} ({h['seeds']} seed{'s' if h['seeds'] > 1 else ''}) | "
                         + " | ".join(cells) + f" | {tail} |")
    if "best_of_samples.png" in plots:
        lines += ["", f"![best of S]({plots['best_of_samples.png']})"]
    alike = {r: row["lr_alike"] for r, row in results["summary"].items() if row.get("lr_alike")}
    if alike:
        n = next(r["lr_alike"]["images"] for r in results["runs"] if r.get("lr_alike"))
        lines += ["", f"**Left and right drawn alike.** {n} test scenes rendered with both sides in one colour "
                  f"(`SceneConfig(left_shade=1.0)`), so the picture leaves each person's left / right assignment "
                  f"open; {max(counts)} samples each. Swapped: the share of hypotheses that fit their person better "
                  f"with left and right exchanged; both: the share of persons whose samples include both "
                  f"assignments (a one-pass recipe: 0). Mean ± std over seeds, ×100.", "",
                  "| recipe | swapped | both assignments |", "|---|---|---|"]
        lines += [f"| {r} | {_pm(a['swap_share'])} | {_pm(a['both_assignments'])} |" for r, a in alike.items()]
    return lines + [""]


def _nms_section(results: dict) -> list[str]:
    """Val AP of each diffusion run at each pose-NMS threshold (how the threshold is chosen)."""
    runs = [r for r in results["runs"] if r.get("nms_sweep")]
    if not runs:
        return []
    thresholds = list(runs[0]["nms_sweep"]["val_ap"])
    first = runs[0]["nms_sweep"]
    lines = ["## Pose-NMS threshold", "",
             f"Val AP ({first['format']}, {first['images']} val images, ×100) of each diffusion run at each pose-NMS "
             "OKS threshold; then the test split's AP (the table's format, the recipe's sampling steps) at the run's "
             "own threshold and at the one val chose.", "",
             "| recipe | seed | " + " | ".join(thresholds) + " | best | test AP: own threshold | test AP: val's |",
             "|---|---|" + "---|" * len(thresholds) + "---|---|---|"]
    for r in runs:
        sweep, chosen = r["nms_sweep"], r.get("nms_chosen")
        own = r["metrics"].get("AP")
        if chosen:
            at_best = f"{100 * chosen['metrics']['AP']:.1f}"
        else:
            at_best = "(the same)" if float(sweep["best"]) == sweep["model_threshold"] else "not measured"
        lines.append(f"| {r['recipe']} | {r['seed']} | "
                     + " | ".join(f"{100 * sweep['val_ap'][t]:.1f}" if t in sweep["val_ap"] else "-"
                                  for t in thresholds)
                     + f" | {sweep['best']} | "
                     + (f"{100 * own:.1f} ({sweep['model_threshold']:g})" if own is not None else "-")
                     + f" | {at_best} |")
    return lines + [""]


def _machine_name(m: dict) -> str:
    return f"{m['cpu']} ({m['cpus']} CPUs, {m['torch_threads']} torch threads)" + (
        f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")


def _other_machines(results: dict) -> list[str]:
    """A line per run whose latency was measured on another machine than the one this report names (a carried
    folder); runs recorded before bench.json kept the machine are not named."""
    here = _machine_name(results["machine"])
    other = [f"{r['recipe']} seed {r['seed']}: {_machine_name(r['machine'])}" for r in results["runs"]
             if r.get("machine") and _machine_name(r["machine"]) != here]
    return ["Latency measured on another machine: " + "; ".join(other) + ".", ""] if other else []


def _rescored(results: dict) -> list[str]:
    """A line naming the runs scored at sampling defaults changed since they were trained (``--rescore``)."""
    by: dict[str, list] = {}
    for r in results["runs"]:
        s = r.get("scored_sampling")
        if s and r.get("boxes") in (None, "ground truth"):  # a run once, not again for the detector's boxes
            what = ", ".join(f"{k}={v!r}" for k, v in s["fields"].items())
            by.setdefault(f"{r['recipe']} at config version {s['config_version']}'s {what}", []).append(r["seed"])
    if not by:
        return []
    return ["Scored from their weights at a sampling default changed since they were trained (`--rescore`): " +
            "; ".join(f"{k} (seed{'s' if len(v) > 1 else ''} {', '.join(map(str, v))})" for k, v in by.items()) +
            "; their validation curves (Training) stay as sampled in training.", ""]


def _verdict(results: dict, fmt: str) -> list[str]:
    """A sentence each: does the diffusion recipe beat the baseline, and its diffusion-off control, overall and in
    the hardest crowds."""
    rows = results["summary"]

    def kind(r):  # a row's family and persons: its task and boxes, and the recipe without a boxes suffix
        return rows[r].get("task", "multiperson"), rows[r].get("boxes"), r.split(" (")[0]

    out = []
    for d in rows:
        task, boxes, recipe = kind(d)
        if rows[d]["sampling_steps"] is None or recipe.endswith("_control"):
            continue
        base = [r for r in rows if rows[r]["sampling_steps"] is None and kind(r)[:2] == (task, boxes)]
        if base:
            out += _difference(rows, d, base[0], fmt, "Diffusion against the baseline")
        control = [r for r in rows if kind(r) == (task, boxes, f"{recipe}_control")]
        if control:
            out += _difference(rows, d, control[0], fmt, "Diffusion against its diffusion-off control")
    return out


def _difference(rows: dict, a: str, b: str, fmt: str, title: str) -> list[str]:
    d, e = rows[a], rows[b]
    out = []
    for key, what in (("AP", "overall"), ("AP_H", "in hard crowds")) if fmt == "crowdpose" else (("AP", "overall"),):
        if d[key]["mean"] is None or e[key]["mean"] is None:
            continue
        delta = 100 * (d[key]["mean"] - e[key]["mean"])
        signed = f"{delta:+.1f}".replace("-", "−")  # the minus sign, as in the sentence's "−"
        if d[key]["std"] is None or e[key]["std"] is None:
            reading = "one seed: more seeds show the spread"
        else:
            noise = 100 * max(d[key]["std"], e[key]["std"])
            verdict = "within the seed spread" if abs(delta) <= noise else ("better" if delta > 0 else "worse")
            reading = f"{verdict}; seed std up to {noise:.1f}"
        out.append(f"{what}: {a} − {b} = {signed} AP ({reading})")
    return [f"**{title}**, " + "; ".join(out) + ".", ""] if out else []


def _budgets(results: dict) -> list[str]:
    """Each recipe's training budget per seed, from its runs' configs (one-stage and top-down ones differ)."""
    lines = ["| recipe | steps | batch | lr | backbone | from |", "|---|---|---|---|---|---|"]
    seen = set()
    for key, cfg in results["config"].items():
        recipe = key.rsplit("/", 1)[0]
        if recipe in seen:
            continue
        seen.add(recipe)
        topdown = task_name(recipe) == "topdown"
        frozen = cfg["model"].get("freeze_backbone", not topdown)
        lines.append(f"| {recipe} | {cfg['max_steps']:,} | {cfg['batch_size']} {'crops' if topdown else 'images'} | "
                     f"{cfg['lr']:g} | {'frozen' if frozen else 'trained'} | `--init {results['bench']['init']}` |")
    return lines


def _protocol(b: dict, p: dict) -> str:
    if b["preset"] == "quick" and b["init"] == "zoo" and b["dataset"] == "synthcrowd" and all(
            r.endswith("_tiny") for r in b["recipes"]):
        return ("The paper's protocol from the zoo: both recipes start from the zoo's `edpose_tiny` (trained on the "
                "SynthCrowd train split with a frozen SynthCrowd-pretrained ResNet-18). `diffusion_regpose_tiny` "
                "loads every block they share (backbone, encoder, human decoder, ED-Pose's initial keypoint "
                "regression, keypoint decoder) and trains its new denoiser (K-SA, K-CA, time embedding, and the "
                "projection of its tokens into the keypoint decoder, zero at first) from scratch; anchored to "
                "ED-Pose's regression (`anchor=\"regression\"`, the preset's choice, docs/recipes.md), it starts "
                "where edpose is. `edpose_tiny` is trained on for the same steps, seeds and data order. The "
                "backbone stays frozen. The test split's poses come from COCO "
                "persons never used for training scenes.")
    if b["init"] == "zoo" and p["zoo"] == "edpose_tiny":
        return ("Every recipe starts from the zoo's `edpose_tiny` (SynthCrowd) where names and shapes fit; every other "
                "tensor is fresh. They train for the same steps, seeds and data order.")
    if b["init"] == "zoo" and p["zoo"] == "imagenet":
        return ("Every recipe starts from timm's ImageNet weights for the backbone, every other block fresh, and "
                "trains with the same seeds and data (budgets under Training).")
    if b["init"] == "zoo" and p["zoo"] == "backbone":
        topdown = [r for r in b["recipes"] if task_name(r) == "topdown"]
        return ("The fair protocol: every recipe starts from the SynthCrowd-pretrained ResNet-18 "
                "(`posediff/assets/zoo/resnet18_synthcrowd_heatmaps.safetensors`) with every other block fresh, "
                "and trains with the same seeds on the same training scenes"
                + (": the one-stage recipes keep the backbone frozen and see the same images in the same order; "
                   f"the top-down ones ({', '.join(topdown)}) train it with their head, as SimpleBaseline trains, "
                   "on crops of the same persons, as many person-crops as the one-stage runs see persons "
                   "(budgets under Training)." if topdown else
                   ", kept frozen, for the same steps and data order."))
    return (f"Every recipe starts from `--init {b['init']}` and trains with the same seeds and data (budgets under "
            f"Training).")


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                        help="quick: from the zoo, ~15 min on 2 CPU cores; standard: from the pretrained backbone "
                             "(hours on CPU); full: ResNet-50 recipes, for GPUs")
    parser.add_argument("--recipes", nargs="+", help="recipes to compare (default: the preset's pair)")
    parser.add_argument("--dataset", default=None, choices=["synthcrowd", "coco", "crowdpose", "mocaplift", "h36m"],
                        help="default: synthcrowd for one-stage recipes, mocaplift for lifting ones "
                             "(posediff.bench_lifting)")
    parser.add_argument("--data-root", help="SynthCrowd folder (rendered there if missing; default data/synthcrowd), "
                                            "or the COCO / CrowdPose folder")
    parser.add_argument("--seeds", nargs="+", type=int, help="training seeds (default: the preset's)")
    parser.add_argument("--steps", nargs="+", type=int, help="DDIM sampling steps to evaluate (AP against steps)")
    parser.add_argument("--init", default="zoo", help="zoo (the preset's starting weights), scratch, or a weights file")
    parser.add_argument("--out", help="output folder (default runs/bench/PRESET_DATASET); a rerun continues it")
    parser.add_argument("--train-steps", type=int, help="training steps per run (default: the preset's)")
    parser.add_argument("--test-images", type=int, help="score on the first N test images only (default: all)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--detections", help="a COCO detection results file of the test images: top-down runs are "
                                             "also scored with its boxes (default on SynthCrowd: the zoo's "
                                             "edpose_tiny's)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="training-config overrides for every run, as for posediff train (data.num_images=500)")
    parser.add_argument("--retime", action="store_true",
                        help="measure every run's latency (lifting: speed) again in this call, so that the table's "
                             "timings share one machine and one load (needs the runs' weights)")
    parser.add_argument("--rescore", action="store_true",
                        help="score again, from their weights, the runs trained before a sampling default of their "
                             "recipe changed (the pose-NMS threshold, DiffusionPose's start), at the current default: "
                             "test metrics, latency and the other sampled measurements, on this machine (runs without "
                             "weights keep their records); the report names them")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs of --out that finished (of --recipes and --seeds); "
                             "a finished run's missing measurements are still taken")


def _is_lifting(args: argparse.Namespace) -> bool:
    """Whether the call benches lifting recipes (by ``--dataset``, else by its recipes)."""
    if args.dataset is not None:
        return args.dataset in ("mocaplift", "h36m")
    return bool(args.recipes) and all(task_name(r) == "lifting" for r in args.recipes)


def spec_from_args(args: argparse.Namespace) -> BenchSpec:
    return BenchSpec(preset=args.preset, recipes=tuple(args.recipes) if args.recipes else None,
                     dataset=args.dataset or "synthcrowd",
                     data_root=args.data_root, seeds=tuple(args.seeds) if args.seeds else None,
                     steps=tuple(args.steps) if args.steps else None, init=args.init, out=args.out,
                     train_steps=args.train_steps, test_images=args.test_images, workers=args.workers,
                     overrides=tuple(args.set), detections=args.detections, report_only=args.report_only,
                     retime=args.retime, rescore=args.rescore)


def run_from_args(args: argparse.Namespace, command: str) -> int:
    """What ``posediff bench`` and ``benchmarks/head_to_head.py`` do with their parsed arguments."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if _is_lifting(args):
        from .bench_lifting import run_lifting_bench

        unused = [flag for flag, given in (("--steps", args.steps), ("--init", args.init != "zoo"),
                                           ("--rescore", args.rescore)) if given]
        if unused:
            raise ValueError(f"{' and '.join(unused)}: not options of the lifting bench, whose presets set its "
                             f"sampling sweeps and train every head on a frozen lifting_context of their own (and no "
                             f"lifting recipe's sampling default has changed)")

        run_lifting_bench(args.recipes, args.preset, args.dataset or "mocaplift", args.data_root, args.seeds, args.out,
                          args.train_steps, args.test_images, args.workers, tuple(args.set), command=command.strip(),
                          report_only=args.report_only, retime=args.retime)
        return 0
    run_bench(spec_from_args(args), command=command.strip())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posediff bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args, "posediff bench " + shlex.join(sys.argv[1:] if argv is None else argv))
