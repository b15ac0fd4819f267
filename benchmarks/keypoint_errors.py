"""Where a model's keypoint AP goes: per-joint errors, left / right swaps and oracle APs on a COCO-format split.

Predicts the first ``--images`` images of a split and runs :func:`posediff.evaluation.keypoint_errors`:
the median error of each joint (pixels of the network input and relative to the person's scale), the share
of persons fitted better with left and right swapped, and AP with perfect joints (same detections and
scores) or a perfect ranking (same poses). Prints a table, writes JSON and a bar plot of the relative
per-joint errors.

Run (the zoo's edpose_tiny on SynthCrowd's first 100 val scenes):
``python benchmarks/keypoint_errors.py --model zoo --out docs/results/keypoint_errors.json
--plot docs/images/keypoint_errors.png``; ``--model RUN/step_0007000.safetensors`` for a checkpoint,
``--ann FILE --image-dir DIR --eval-size 800`` for COCO or CrowdPose files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from posediff.env import machine_info
from posediff.io import save_result


def load(model: str):
    if model == "zoo":
        from posediff import create_model

        return create_model("edpose_tiny", pretrained="synthcrowd")
    from posediff.engine.checkpoint import load_model

    return load_model(model)


def dataset(args):
    from posediff.data import CocoKeypointDataset
    from posediff.data.synthcrowd import synthcrowd_split
    from posediff.data.transforms import eval_transforms

    tf = eval_transforms(args.eval_size, args.max_size)
    if args.ann:
        ds = CocoKeypointDataset(args.image_dir, args.ann, skeleton=args.skeleton, transforms=tf)
        ann = args.ann
    else:
        root = Path(args.data_root)
        ann_file = root / args.split / ("coco.json" if args.skeleton == "coco17" else "crowdpose.json")
        if not ann_file.is_file():
            raise SystemExit(f"{ann_file}: no SynthCrowd split there; write one with `posediff data synthcrowd "
                             f"--out {root}` (or `posediff train` renders it), or pass --ann and --image-dir")
        ds = synthcrowd_split(root, args.split, skeleton=args.skeleton, transforms=tf)
        ann = str(ann_file)
    ds.ids = ds.ids[: args.images]
    return ds, ann


def plot(result: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = {k: v for k, v in result["joint_error_rel"].items() if v is not None}
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(range(len(rel)), list(rel.values()), color="tab:blue")
    ax.set_xticks(range(len(rel)), list(rel), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("median error / sqrt(area)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> dict:
    from posediff.engine.train import predict_results
    from posediff.evaluation import keypoint_errors

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo", help="'zoo' (edpose_tiny, SynthCrowd) or a checkpoint file")
    ap.add_argument("--data-root", default="data/synthcrowd", help="a SynthCrowd folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--ann", default="", help="a COCO-format annotation file instead of SynthCrowd")
    ap.add_argument("--image-dir", default="")
    ap.add_argument("--skeleton", default="coco17", choices=["coco17", "crowdpose14"])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--max-size", type=int, default=400)
    ap.add_argument("--out", default="")
    ap.add_argument("--plot", default="")
    args = ap.parse_args(argv)
    if args.ann and not args.image_dir:
        ap.error("--ann needs --image-dir")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load(args.model).eval()
    ds, ann = dataset(args)
    t0 = time.time()
    results = predict_results(model, ds, batch_size=4, progress=True)
    out = keypoint_errors(ann, results, skeleton=args.skeleton, image_ids=ds.ids)
    out = dict(out, model=args.model, ann=ann, images=len(ds), seconds=round(time.time() - t0, 1),
               machine=machine_info(), date=time.strftime("%Y-%m-%d"))
    print(f"{args.model} on {len(ds)} images of {ann}: {out['persons']} persons, {out['found']:.1%} found "
          f"(OKS > 0.1)")
    print("| joint | median error (px) | / sqrt(area) |\n|---|---|---|")
    for name, px in out["joint_error_px"].items():
        rel = out["joint_error_rel"][name]
        print(f"| {name} | {'-' if px is None else f'{px:.1f}'} | {'-' if rel is None else f'{rel:.3f}'} |")
    print(f"left / right swapped fits better: {out['swap_share']:.1%} of found persons" if out["swap_share"]
          is not None else "no person found")
    print(f"AP {out['AP']:.3f}; with perfect joints {out['ap_oracle_keypoints']:.3f}; "
          f"with a perfect ranking {out['ap_oracle_scores']:.3f}")
    if args.plot and out["swap_share"] is not None:
        plot(out, args.plot, f"{args.model}, {len(ds)} images of {Path(ann).parent.name}: per-joint error")
    return save_result(out, args.out)


if __name__ == "__main__":
    main()
