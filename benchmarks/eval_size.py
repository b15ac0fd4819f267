"""AP against the evaluation size: one model, one SynthCrowd split, several shorter sides.

How ``DataConfig.eval_size``'s default was chosen (the largest training scale, 288 for SynthCrowd, as ED-Pose
evaluates COCO at 800, the largest of its): SynthCrowd's persons are small, and upscaling the test image
helps them. Choose on the val split; the test split only confirms.

Run (the zoo's edpose_tiny, the first 200 val scenes):
``python benchmarks/eval_size.py --model zoo --sizes 256 272 288 304 320
--out docs/results/eval_size/val_zoo_edpose_tiny.json``
(``--split test --images 400`` for the test split); ``--model RUN/step_0007000.safetensors`` for a checkpoint.
Prints a table (COCO-17 AP and CrowdPose-14 AP, AP_H, ×100), writes JSON and a line plot.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keypoint_errors import dataset, load, model_and_split_arguments  # noqa: E402  the same models and splits

from posediff.env import machine_info  # noqa: E402
from posediff.io import save_result  # noqa: E402


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from posediff.viz import save_figure

    sizes = [r["eval_size"] for r in out["rows"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for key, label in (("coco_AP", "COCO-17 AP"), ("crowdpose_AP", "CrowdPose AP"), ("crowdpose_AP_H", "AP_H")):
        ax.plot(sizes, [100 * r[key] for r in out["rows"]], "o-", label=label)
    ax.set(xlabel="evaluation size (shorter side, px)", ylabel="AP (×100)",
           title=f"{out['model']}: {out['images']} {out['split']} images", xticks=sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    from posediff.tasks.multiperson import predict_results, score_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_and_split_arguments(ap, images=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 272, 288, 304, 320])
    ap.add_argument("--max-size", type=int, default=400)
    args = ap.parse_args(argv)
    if args.images < 1 or min(args.sizes) < 32 or max(args.sizes) > args.max_size:
        ap.error(f"--images must be at least 1 and --sizes between 32 and --max-size ({args.max_size}), got "
                 f"{args.images} and {args.sizes}")
    asked = dict(vars(args))  # recorded in the JSON
    args.ann, args.image_dir, args.skeleton = "", "", "coco17"  # what keypoint_errors.dataset reads
    model = load(args.model).eval()
    if model.num_keypoints != 17:
        raise SystemExit(f"{args.model}: predicts {model.num_keypoints} keypoints; this script scores COCO-17 "
                         f"models (SynthCrowd's COCO file, and CrowdPose-14 by conversion)")
    split = Path(args.data_root) / args.split
    gts = {"coco": str(split / "coco.json"), "crowdpose": str(split / "crowdpose.json")}
    rows, t0 = [], time.time()
    print("| eval size | COCO-17 AP | CrowdPose AP | AP_E | AP_M | AP_H |\n|---|---|---|---|---|---|")
    for size in args.sizes:
        args.eval_size = size
        ds, _ = dataset(args)
        m = score_results(predict_results(model, ds, batch_size=4), gts, [int(i) for i in ds.ids])
        c, p = m["coco"], m["crowdpose"]
        rows.append(dict(eval_size=size, coco_AP=c["AP"], crowdpose_AP=p["AP"], crowdpose_AP_E=p["AP_E"],
                         crowdpose_AP_M=p["AP_M"], crowdpose_AP_H=p["AP_H"]))
        print(f"| {size} | {100 * c['AP']:.1f} | {100 * p['AP']:.1f} | {100 * p['AP_E']:.1f} | "
              f"{100 * p['AP_M']:.1f} | {100 * p['AP_H']:.1f} |", flush=True)
    out = dict(model=args.model, split=args.split, images=len(ds), rows=rows, args=asked,
               seconds=round(time.time() - t0, 1), machine=machine_info(), date=time.strftime("%Y-%m-%d"))
    if args.plot:
        plot(out, args.plot)
    return save_result(out, args.out)


if __name__ == "__main__":
    main()
