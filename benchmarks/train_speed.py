"""Training speed: seconds per optimisation step of each recipe at a bench preset's model, data sizes and batch,
and what an epoch of COCO train2017's size then costs.

Each recipe is planned as ``posediff bench`` plans its runs (``posediff.bench.plan_runs``: the preset's model, batch,
lr, data sizes and frozen or trained backbone), built without its starting weights (they do not change the cost,
and ``full``'s ImageNet weights would need a download), and trained with the loop's own step
(``posediff.engine.train.train_step``: bf16 autocast on a GPU when the config's ``amp`` is on, gradient clipping,
AdamW), on batches drawn as ``train`` draws them (an epoch's loader and augmentation draws at a time). After
``--warmup`` steps, ``--steps`` steps are timed one by one (CUDA synchronised), split into the wait for the data
loader and the step itself. Not timed: DDP's gradient exchange, EMA, checkpoints and validation.

The epoch column is the median time per step (wait and step) times the steps one epoch of 56,599 images (COCO
train2017's images with keypoint persons, ED-Pose's epoch) takes at the preset's batch per GPU on 1 and 8 GPUs,
assuming no scaling loss; it is an epoch of COCO only when the data is COCO (``--dataset coco``).

    python benchmarks/train_speed.py --preset full --dataset coco --data-root /data/coco --workers 8 \\
        --out docs/results/h100/train_speed_full.json
    python benchmarks/train_speed.py --preset standard --steps 20 --warmup 3    # SynthCrowd, the CPU recipes
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

COCO_TRAIN_IMAGES = 56599  # train2017 images that hold keypoint persons (ED-Pose's epoch)


def _batches(train_ds, cfg, count: int):
    """``count`` training batches drawn as ``train`` draws them: epoch after epoch, each with its own augmentation
    draws and loader (``epoch_loader``), so a small training set repeats with new crops and scales."""
    from posediff.engine.train import epoch_loader

    epoch, done = 0, 0
    while done < count:
        epoch_len, loader = epoch_loader(train_ds, cfg, epoch, count=count - done)
        yield from loader
        done += min(epoch_len, count - done)
        epoch += 1


def time_recipe(cfg, steps: int, warmup: int) -> dict:
    """Median and mean seconds per step (and the data wait) of ``cfg``'s model on ``cfg``'s training data."""
    from posediff.engine.train import _seed_all, build_model, optimization, train_step
    from posediff.tasks.multiperson import MultipersonTask, build_datasets

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _seed_all(cfg.seed)
    model = build_model(cfg, weights=False).to(device)
    train_ds, *_ = build_datasets(cfg)
    optimizer, schedule, autocast = optimization(model, cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_s, wait_s = [], []
    sync()
    ready = time.perf_counter()
    for i, batch in enumerate(_batches(train_ds, cfg, warmup + steps)):
        got = time.perf_counter()
        train_step(model, optimizer, schedule, batch, device, cfg.clip_grad, MultipersonTask().losses, autocast, i)
        sync()
        done = time.perf_counter()
        if i >= warmup:
            wait_s.append(got - ready)
            step_s.append(done - got)
        ready = time.perf_counter()
    total = [a + b for a, b in zip(step_s, wait_s)]
    return dict(recipe=cfg.recipe, batch_size=cfg.batch_size, steps=steps, warmup=warmup, workers=cfg.workers,
                train_images=len(train_ds), params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                trainable_m=sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
                step_s_median=statistics.median(step_s), step_s_mean=statistics.fmean(step_s),
                wait_s_median=statistics.median(wait_s), total_s_median=statistics.median(total),
                images_per_s=cfg.batch_size / statistics.median(total),
                peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
                amp=autocast is not None)


def main(argv=None) -> dict:
    from posediff.bench import PRESETS, BenchSpec, plan_runs
    from posediff.env import machine_info
    from posediff.io import save_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="full", choices=sorted(PRESETS))
    ap.add_argument("--recipes", nargs="+", help="default: the preset's pair")
    ap.add_argument("--dataset", default="synthcrowd", choices=["synthcrowd", "coco", "crowdpose"])
    ap.add_argument("--data-root", help="the dataset's folder (SynthCrowd: rendered there if missing)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per recipe")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, loader start)")
    ap.add_argument("--workers", type=int, default=4, help="data-loading processes")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 8], help="GPU counts to give the epoch cost for")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="TrainConfig overrides, as posediff bench --set (e.g. batch_size=4)")
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    with tempfile.TemporaryDirectory() as tmp:  # plan_runs wants an output folder; nothing is written there
        preset, spec = BenchSpec(preset=args.preset, recipes=tuple(args.recipes) if args.recipes else None,
                                 dataset=args.dataset, data_root=args.data_root, seeds=(0,), out=tmp,
                                 workers=args.workers, overrides=tuple(args.set)).resolved()
        runs = plan_runs(preset, spec)
    rows = []
    for run in runs:
        row = time_recipe(run["config"], args.steps, args.warmup)
        steps_per_epoch = {g: COCO_TRAIN_IMAGES / (row["batch_size"] * g) for g in args.gpus}
        row["coco_epoch_min"] = {str(g): n * row["total_s_median"] / 60 for g, n in steps_per_epoch.items()}
        row["preset_run_h"] = spec.train_steps * row["total_s_median"] / 3600  # batch per GPU: any GPU count
        rows.append(row)
    where = "GPU " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"Training speed, preset {args.preset} ({args.dataset}), {where}, median of {args.steps} steps")
    print("| recipe | batch | step, without the wait (s) | data wait (s) | images/s | peak GPU allocated (GiB) | "
          f"epoch of {COCO_TRAIN_IMAGES:,} images (min), " + " / ".join(f"{g} GPU" for g in args.gpus)
          + f" | {spec.train_steps:,} steps (h) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = f"{r['peak_gpu_gib']:.1f}" if r["peak_gpu_gib"] is not None else "-"
        epoch = " / ".join(f"{r['coco_epoch_min'][str(g)]:.1f}" for g in args.gpus)
        print(f"| {r['recipe']} | {r['batch_size']} | {r['step_s_median']:.3f} | {r['wait_s_median']:.3f} | "
              f"{r['images_per_s']:.1f} | {mem} | {epoch} | {r['preset_run_h']:.2f} |")
    result = dict(benchmark="train_speed", preset=args.preset, dataset=args.dataset, data_root=args.data_root,
                  rows=rows, coco_train_images=COCO_TRAIN_IMAGES, preset_train_steps=spec.train_steps,
                  overrides=args.set, date=time.strftime("%Y-%m-%d %H:%M"), machine=machine_info())
    return save_result(result, args.out)


if __name__ == "__main__":
    main()
