"""DiffusionPose's sampling start, chosen on the standard bench's trained weights.

The paper says sampling starts from the coarse heatmap; whether that estimate is noised first, and to which
timestep, it does not say. Each ``--starts`` entry ``START@T`` sets the head's ``start`` and ``start_timestep``
at inference only (no training):

* ``coarse@500``: the coarse estimate noised to t = 500 (q(x_t | x_0), Eq. 4 of DDPM), the start the standard
  bench's runs were trained and first scored at (config version 3);
* ``coarse_clean@500``, ``coarse_clean@999``: the coarse estimate itself read as x_t, without noise (the public
  review's reading of the paper); val chose ``coarse_clean@500``, the recipe's start since (config version 4);
* ``noise@999``: pure noise at T - 1, the image alone guiding;

and, for reference, the coarse head alone (``coarse_head``: the SimpleBaseline head trained beside the denoiser).

Every start is scored with the weights of each seed of ``posediff bench --preset standard --recipes
diffusionpose_tiny`` (``--bench``: that bench's folder) on the same validation scenes with ground-truth boxes
(CrowdPose-format AP of the COCO-17 predictions, and how far the labelled joints land from their labels), the
split the choice is made on; ``--test`` also scores each on the bench's test split (its crops and generator
seed), to be read only after the choice. Each run folder keeps its scores (``starts.json``, one entry per setting:
checkpoint, ``--sampling-steps``, ``--test``): a start scored on the same weights and settings is not scored again.

Run: ``OMP_NUM_THREADS=2 python benchmarks/diffusionpose_start.py --bench runs/bench/standard_topdown_dp --test
--seeds 0 1 2 --out docs/results/diffusionpose_start.json``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffusionpose_choices import score

from posediff.env import machine_info
from posediff.io import save_result, write_json
from posediff.models.utils import attributes_set


def parse_start(text: str) -> tuple[str, int]:
    """``"coarse_clean@500"`` -> ("coarse_clean", 500)."""
    from posediff.models.heads.diffusion_heatmap import STARTS

    start, _, t = text.partition("@")
    if start not in STARTS or not t.isdigit():
        raise argparse.ArgumentTypeError(f"--starts {text!r}: expected START@TIMESTEP with START one of {STARTS}")
    return start, int(t)


def main() -> None:
    from posediff.bench import BenchSpec, _mean_std, _pm, _test_set, plan_runs
    from posediff.bench_topdown import _test_data
    from posediff.engine.checkpoint import checkpoint_step, latest_checkpoint, load_model
    from posediff.registry import get_config
    from posediff.tasks import get_task
    from posediff.tasks.multiperson import score_results
    from posediff.tasks.topdown import crop_datasets, predict_crop_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="runs/bench/standard_topdown_dp", help="the standard bench's folder")
    ap.add_argument("--recipe", default="diffusionpose_tiny")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--starts", nargs="+", type=parse_start,
                    default=[("coarse", 500), ("coarse_clean", 500), ("coarse_clean", 999), ("noise", 999)])
    ap.add_argument("--sampling-steps", type=int, default=1)
    ap.add_argument("--test", action="store_true", help="also score every start on the test split")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    stamp = Path(args.bench) / "bench_config.json"
    if not stamp.is_file():
        raise FileNotFoundError(f"--bench {args.bench}: no bench_config.json (expected a posediff bench folder)")
    bench = json.loads(stamp.read_text())
    if bench.get("preset") != "standard":
        raise ValueError(f"{stamp}: preset {bench.get('preset')!r}, expected 'standard'")
    preset, spec = BenchSpec(preset="standard", recipes=(args.recipe,), seeds=tuple(args.seeds), out=args.bench,
                             overrides=tuple(bench.get("overrides", ()))).resolved()
    runs = plan_runs(preset, spec)
    task = get_task(args.recipe)
    starts = {f"{s}@{t}": (s, t) for s, t in args.starts}
    starts["coarse_head"] = None  # the reference: the coarse head alone (the SimpleBaseline head of the same run)
    names = list(starts)
    per_seed: dict = {}
    for run in runs:
        cfg = run["config"]
        found = latest_checkpoint(cfg.out)
        if found is None or checkpoint_step(found[0]) != cfg.max_steps:
            raise FileNotFoundError(
                f"{cfg.out}: {'no checkpoint' if found is None else found[0].name}, expected step {cfg.max_steps} "
                f"(finish it: posediff bench --preset standard --recipes {args.recipe} --seeds {run['seed']} --set "
                f"{' '.join(spec.overrides)} --out {args.bench})")
        cache = Path(cfg.out) / "starts.json"  # a start scored on these weights and settings is not scored again
        setting = dict(checkpoint=found[0].name, sampling_steps=args.sampling_steps, test=args.test)
        kept = json.loads(cache.read_text()) if cache.is_file() else {}
        scored = kept.get("scored", [dict(setting=kept["setting"], starts=kept["starts"])] if kept else [])
        entry = next((e for e in scored if e["setting"] == setting), None)
        if entry is None:
            entry = dict(setting=setting, starts={})
            scored.append(entry)
        rows = entry["starts"]
        model = data = None
        for name, start in starts.items():
            if name in rows:
                print(f"seed {run['seed']} {name}: val AP {100 * rows[name]['val']['AP']:.1f} (kept)", flush=True)
                continue
            if model is None:
                model = load_model(found[0]).eval()
                data = task.build(cfg)
                if args.test:  # the bench's own test crops, ground-truth boxes, generator seed
                    _, gts = _test_set(cfg, spec)
                    _, test, _, _, ids = crop_datasets(_test_data(cfg, spec), get_config(cfg.recipe, **cfg.model),
                                                       cfg.seed, boxes="gt")
            t = time.time()
            head = None if start is None else dict(start=start[0], start_timestep=start[1],
                                                    sampling_steps=args.sampling_steps)
            with model.coarse_head_only() if head is None else attributes_set(model.head, **head):
                row = {"val": score(model, data, cfg)}
                if args.test:
                    results = predict_crop_results(model, test, [None], nms=cfg.data.nms, seed=run["seed"])[None]
            if args.test:
                m = score_results(results, gts, ids)
                row["test"] = {"crowdpose": {k: m["crowdpose"][k] for k in ("AP", "AP_H")},
                               "coco": {"AP": m["coco"]["AP"]}}
            rows[name] = row
            write_json(dict(scored=scored), cache)
            print(f"seed {run['seed']} {name}: val AP {100 * row['val']['AP']:.1f}"
                  + (f", test AP {100 * row['test']['crowdpose']['AP']:.1f}" if args.test else "")
                  + f" ({time.time() - t:.0f} s)", flush=True)
        per_seed[str(run["seed"])] = dict(checkpoint=found[0].name, step=checkpoint_step(found[0]),
                                          starts={n: rows[n] for n in names})

    summary = {}
    for name in names:
        rows = [s["starts"][name] for s in per_seed.values()]
        summary[name] = {"val": {k: _mean_std([r["val"][k] for r in rows])
                                 for k in ("AP", "AP_H", "median_error_px")}}
        if args.test:
            summary[name]["test"] = {k: _mean_std([r["test"]["crowdpose"][k] for r in rows])
                                     for k in ("AP", "AP_H")}
    print(f"\n{len(per_seed)} seeds, {args.sampling_steps} step(s), mean ± std over seeds\n\n"
          "| start | val AP | val AP_H | val median error (px) |" + (" test AP | test AP_H |" if args.test else "")
          + "\n|---|---|---|---|" + ("---|---|" if args.test else ""))
    for name, s in summary.items():
        v = s["val"]
        line = f"| {name} | {_pm(v['AP'])} | {_pm(v['AP_H'])} | {_pm(v['median_error_px'], 1, 2)} |"
        if args.test:
            line += "".join(f" {_pm(s['test'][k])} |" for k in ("AP", "AP_H"))
        print(line)
    save_result(dict(recipe=args.recipe, bench=str(Path(args.bench)), sampling_steps=args.sampling_steps,
                     seeds=args.seeds, summary=summary, per_seed=per_seed, machine=machine_info(),
                     command=f"python benchmarks/diffusionpose_start.py --bench {args.bench} --recipe {args.recipe}"
                     + " --seeds " + " ".join(map(str, args.seeds)) + " --starts " + " ".join(names[:-1])
                     + f" --sampling-steps {args.sampling_steps}" + (" --test" if args.test else "")
                     + (f" --out {args.out}" if args.out else "")), args.out)


if __name__ == "__main__":
    main()
