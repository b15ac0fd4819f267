"""Fit one batch of two SynthCrowd scenes (128 px): how fast a recipe and its settings learn at all.

The protocol of ``tests/integration/test_overfit.py``: AdamW lr 1e-3 (x0.1 at 70% of the steps), gradient clipping
1.0, the batch's own COCO-17 AP every ``--every`` steps (1 and 4 sampling steps for a diffusion recipe). One row
per ``--set`` (model overrides as JSON objects, e.g. '{"home_bias": null}').

Run: ``python benchmarks/overfit.py --recipe diffusion_regpose_tiny --steps 1000 --set '{}' '{"home_bias": null}'
--out docs/results/overfit_home_bias.json``. The ``--out`` file is written after each row, and a rerun keeps the
rows it holds for the same recipe and steps.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

import posediff
from posediff.data import collate
from posediff.data.synthcrowd import SceneConfig, synthcrowd_split, write_split
from posediff.env import machine_info
from posediff.evaluation import evaluate_keypoints, to_coco_results
from posediff.io import save_result


def fit(recipe: str, overrides: dict, steps: int, every: int, root: str) -> list[dict]:
    ds = synthcrowd_split(root, "train", prior="coco17")
    images, mask, targets = collate([ds[0], ds[1]])
    torch.manual_seed(0)
    model = posediff.create_model(recipe, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * 0.7)], 0.1)
    curve, t0 = [], time.time()
    for step in range(1, steps + 1):
        model.train()
        loss = model(images, mask, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % every == 0 or step == steps:
            model.eval()
            ap = {}
            for s in (1, 4) if hasattr(model.head, "sampling_steps") else (None,):
                with torch.no_grad():
                    out = model(images, mask, steps=s, generator=torch.Generator().manual_seed(0))
                results = to_coco_results(targets.image_ids.tolist(), out)
                ap[str(s or "-")] = evaluate_keypoints(f"{root}/train/coco.json", results)["AP"]
            curve.append(dict(step=step, loss=float(loss.detach()), AP=ap, seconds=round(time.time() - t0, 1)))
            print(recipe, json.dumps(overrides), curve[-1], flush=True)
    return curve


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="diffusion_regpose_tiny")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--set", nargs="+", default=["{}"], help="model overrides, one JSON object per row")
    ap.add_argument("--out", default=None, help="JSON file to write")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    wanted = []
    for item in args.set:
        overrides = json.loads(item)
        if not isinstance(overrides, dict):
            raise ValueError(f"--set {item}: expected a JSON object of model overrides")
        wanted.append(overrides)
    rows = []  # rows of an --out file of this recipe and step count are kept: a rerun fits only the others
    if args.out and Path(args.out).is_file():
        rows = [r for r in json.loads(Path(args.out).read_text()).get("rows", [])
                if r["recipe"] == args.recipe and r["curve"][-1]["step"] == args.steps and r["overrides"] in wanted]
    def write() -> dict:
        rows.sort(key=lambda r: wanted.index(r["overrides"]))
        return save_result(dict(rows=rows, machine=machine_info(), date=time.strftime("%Y-%m-%d %H:%M"),
                                command="python benchmarks/overfit.py " + shlex.join(argv)), args.out)

    with tempfile.TemporaryDirectory() as tmp:
        write_split(tmp, "train", 2, seed=3, config=SceneConfig(size=128), progress=False)
        for overrides in wanted:
            if not any(r["overrides"] == overrides for r in rows):
                rows.append(dict(recipe=args.recipe, overrides=overrides,
                                 curve=fit(args.recipe, overrides, args.steps, args.every, tmp)))
                write()
    return write()


if __name__ == "__main__":
    main()
