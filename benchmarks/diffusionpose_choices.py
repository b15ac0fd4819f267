"""DiffusionPose's choices where the paper is silent, measured on one short fixed budget.

Every variant trains for the same steps from the same SynthCrowd backbone (trained with the head), on the same
SynthCrowd crops, seed and data order (``configs/*_tiny_synthcrowd.py`` with ``--steps``), and is scored on the
same validation scenes with ground-truth boxes (CrowdPose-format AP of the COCO-17 predictions, as the bench
reports). Every diffusion row samples from the coarse estimate noised to ``start_timestep`` (``start="coarse"``,
the recipe's start before config version 4, pinned here so that the rows stay comparable). Variants
(``--variants``; default all):

* ``simplebaseline``: ``simplebaseline_tiny``, the head DiffusionPose's coarse head is;
* ``default``: where the choices start: ``diffusionpose_tiny`` (coordinates diffused, ζ = 2, structure guidance)
  with the U-Net's Ĥ_0 taken outright and its loss reaching the features (``residual=False,
  detach_features=False``); every variant below but the last changes one thing of it;
* ``control``: ``diffusionpose_tiny_control`` of the same, x_t replaced by fresh noise (the image alone);
* ``no_guidance``: ``guidance=False`` (the condition is the features alone);
* ``pixels``: ``space="pixels"`` (the heatmap diffused, Feng et al. ICCV 2023);
* ``scale1``: ``signal_scale=1.0``;
* ``detached``: ``detach_features=True`` (the denoiser's loss does not reach the backbone and the neck);
* ``coarse_start``: ``train_start="coarse"`` (x_t from the coarse estimate in training; a posediff option);
* ``residual``, ``residual_control``: ``residual=True`` (Ĥ_0 = the coarse heatmap + the U-Net's correction), with
  diffusion and in the diffusion-off control; ``residual_detached``: ``residual=True, detach_features=True``, the
  recipe's defaults as chosen by this measurement.

Sampling choices need no training: the ``default`` variant is also scored at every ``--starts`` timestep
(``start_timestep``; 999 is pure noise) and ``--sampling-steps``, and its coarse head alone.

Run: ``OMP_NUM_THREADS=1 python benchmarks/diffusionpose_choices.py --steps 1000 --out
docs/results/diffusionpose_choices.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from posediff.env import machine_info
from posediff.io import save_result, write_json
from posediff.models.utils import attributes_set

BASE = {"residual": False, "detach_features": False}
VARIANTS = {
    "simplebaseline": ("simplebaseline_tiny", {}),
    # the configuration the choices start from: the U-Net's Ĥ_0 outright, its loss reaching the features
    "default": ("diffusionpose_tiny", dict(BASE)),
    "control": ("diffusionpose_tiny_control", dict(BASE)),
    "no_guidance": ("diffusionpose_tiny", {**BASE, "guidance": False}),
    "pixels": ("diffusionpose_tiny", {**BASE, "space": "pixels"}),
    "scale1": ("diffusionpose_tiny", {**BASE, "signal_scale": 1.0}),
    "detached": ("diffusionpose_tiny", {**BASE, "detach_features": True}),
    "coarse_start": ("diffusionpose_tiny", {**BASE, "train_start": "coarse"}),
    "residual": ("diffusionpose_tiny", {**BASE, "residual": True}),
    "residual_control": ("diffusionpose_tiny_control", {**BASE, "residual": True}),
    "residual_detached": ("diffusionpose_tiny", {"residual": True, "detach_features": True}),  # the recipe's choice
    # the paper's unknowns, each changed alone from the recipe's choice (T = 1000, cosine ᾱ, the coarse estimate
    # noised to 500 as every row here samples, mask σ 2, limb half-width 1 cell)
    "T100": ("diffusionpose_tiny", {"residual": True, "detach_features": True, "num_train_timesteps": 100,
                                    "start_timestep": 50}),
    "linear_beta": ("diffusionpose_tiny", {"residual": True, "detach_features": True, "beta_schedule": "linear"}),
    "mask_sigma1": ("diffusionpose_tiny", {"residual": True, "detach_features": True, "mask_sigma": 1.0}),
    "mask_sigma4": ("diffusionpose_tiny", {"residual": True, "detach_features": True, "mask_sigma": 4.0}),
    "limb_width2": ("diffusionpose_tiny", {"residual": True, "detach_features": True, "limb_width": 2.0}),
}
# Inference-only options, scored on another variant's trained run (training is the same): name -> (run, options)
SCORED_FROM = {
    "default_blend": ("default", {"blend": True}),
    "control_blend": ("control", {"blend": True}),
    "detached_blend": ("detached", {"blend": True}),
    "detached_sum": ("detached", {"residual": True}),  # H_coarse + Ĥ_0: the blend's heatmaps doubled
}


def localisation(model, dataset) -> dict:
    """How far the labelled joints' predictions lie from their labels on the val crops (ground-truth boxes), in
    input pixels (the crops are 128 high): a measure of the heatmaps alone, free of the person scores that AP
    ranks by."""
    import torch

    from posediff.data.topdown import collate_crops

    errors = []
    gen = torch.Generator().manual_seed(0)
    for start in range(0, len(dataset), 64):
        crops, t = collate_crops([dataset[i] for i in range(start, min(start + 64, len(dataset)))])
        kp = model.predict(crops, None, gen)  # (B, K, 3) input px
        err = (kp[..., :2] - t["keypoints"][..., :2]).norm(dim=-1)  # (B, K)
        errors.append(err[t["keypoints"][..., 2] > 0])
    e = torch.cat(errors)
    return {"median_error_px": round(float(e.median()), 3), "mean_error_px": round(float(e.mean()), 3),
            "pck_4px": round(float((e < 4).float().mean()), 4), "pck_8px": round(float((e < 8).float().mean()), 4)}


def score(model, data, cfg, **head) -> dict:
    """Val AP (CrowdPose format) and localisation of ``model`` with its head's attributes set to ``head`` for
    this call."""
    from posediff.tasks.multiperson import score_results
    from posediff.tasks.topdown import predict_crop_results

    with attributes_set(model.head, **head):
        results = predict_crop_results(model, data.val, batch_size=64, nms=cfg.data.nms)[None]
        where = localisation(model, data.val)
    gts = {"coco": data.info["ann_file"], "crowdpose": str(Path(data.info["ann_file"]).with_name("crowdpose.json"))}
    m = score_results(results, gts, data.info["image_ids"])["crowdpose"]
    return {**{k: m[k] for k in ("AP", "AP50", "AP75", "AR", "AP_E", "AP_M", "AP_H")}, **where}


def main() -> None:
    from posediff.engine.checkpoint import latest_checkpoint, load_model
    from posediff.engine.config import apply_overrides, load_config
    from posediff.engine.train import train
    from posediff.tasks import get_task
    from posediff.zoo import zoo_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-images", type=int, default=200)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *SCORED_FROM])
    ap.add_argument("--starts", nargs="+", type=int, default=[0, 250, 500, 999])
    ap.add_argument("--sampling-steps", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--runs", default="runs/diffusionpose_choices")
    ap.add_argument("--out", default=None)
    ap.add_argument("--rescore", action="store_true", help="score again the variants already scored at this setting")
    args = ap.parse_args()
    init = str(zoo_path("resnet18_synthcrowd_heatmaps.safetensors"))
    rows = {}
    setting = dict(steps=args.steps, seed=args.seed, val_images=args.val_images, starts=args.starts,
                   sampling_steps=args.sampling_steps)
    for name in args.variants:
        cache = Path(args.runs) / f"{name}.row.json"  # a variant scored at this setting is not scored again
        if cache.is_file() and not args.rescore:
            kept = json.loads(cache.read_text())
            if kept.get("setting") == setting:
                rows[name] = kept["row"]
                print(name, rows[name]["val"], "(kept)", flush=True)
                continue
        run, infer = SCORED_FROM.get(name, (name, {}))
        recipe, model = VARIANTS[run]
        base = "diffusionpose_tiny" if recipe.startswith("diffusionpose") else recipe
        cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{base}_synthcrowd.py")
        cfg = dataclasses.replace(cfg, recipe=recipe, model={**cfg.model, **model}, out=str(Path(args.runs) / run),
                                  seed=args.seed, max_steps=args.steps, lr_drop=(int(args.steps * 0.8),),
                                  ckpt_every=max(args.steps // 4, 1), eval_every=0)
        cfg = apply_overrides(cfg, [f"data.max_val_images={args.val_images}"])
        t0 = time.time()
        result = train(cfg, resume=latest_checkpoint(cfg.out) is not None, init=init)
        row = {"recipe": recipe, "overrides": {**model, **infer}, "train_seconds": result["seconds"]}
        if infer:
            row["trained_as"] = run
        pinned = {"start": "coarse"} if recipe.startswith("diffusionpose") else {}  # the start these rows were made at
        net = load_model(latest_checkpoint(cfg.out)[0], **pinned, **infer).eval()
        data = get_task(recipe).build(get_task(recipe).resolve(cfg))
        row["val"] = score(net, data, cfg)
        if hasattr(net.head, "coarse"):  # the coarse head alone: SimpleBaseline's, trained in the same run
            with net.coarse_head_only():
                row["coarse_head"] = score(net, data, cfg)
        if name == "default":  # the sampling choices, on the shipped configuration
            grid = {}
            for start in args.starts:
                for steps in args.sampling_steps:
                    if steps <= start + 1:
                        grid[f"start{start}_steps{steps}"] = score(net, data, cfg, start_timestep=start,
                                                                   sampling_steps=steps)
            row["sampling"] = grid
        row["seconds"] = round(time.time() - t0, 1)
        rows[name] = row
        write_json(dict(setting=setting, row=row), cache)
        print(name, row["val"], flush=True)
    print("\n| variant | AP | AP_H | median error (px) | PCK@4px | its coarse head: AP, median error |\n"
          "|---|---|---|---|---|---|")
    for name, row in rows.items():
        v, c = row["val"], row.get("coarse_head")
        print(f"| {name} | {100 * v['AP']:.1f} | {100 * v['AP_H']:.1f} | {v['median_error_px']:.2f} | "
              f"{100 * v['pck_4px']:.1f} | " + (f"{100 * c['AP']:.1f}, {c['median_error_px']:.2f} |" if c else "- |"))
    save_result(dict(steps=args.steps, seed=args.seed, val_images=args.val_images, variants=rows,
                     machine=machine_info(), command="python benchmarks/diffusionpose_choices.py " + " ".join(
                         f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
                         for k, v in vars(args).items() if v is not None)),
                args.out)


if __name__ == "__main__":
    main()
