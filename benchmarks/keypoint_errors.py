"""Where a model's keypoint AP goes: per-joint errors, left / right swaps and oracle APs on a COCO-format split.

Predicts the first ``--images`` images of a split and runs :func:`posediff.evaluation.keypoint_errors`
(persons paired with predictions as COCO pairs them): the median error of each joint (pixels of the
original image, and relative to the person's scale), the share of persons fitted better with left and
right swapped, how far apart the prediction keeps a person's left and right joints, and AP with perfect
joints (same detections and scores) or a perfect ranking (same poses). Prints a table, writes JSON and a
bar plot of the relative per-joint errors.

Run (the zoo's edpose_tiny on SynthCrowd's first 100 val scenes):
``python benchmarks/keypoint_errors.py --model zoo --out docs/results/keypoint_errors/val_zoo_edpose_tiny.json
--plot docs/images/keypoint_errors_val_zoo_edpose_tiny.png``; ``--model RUN/step_0007000.safetensors`` for a checkpoint;
``--ann FILE --image-dir DIR`` for COCO or CrowdPose files (scored at 800 / 1333 px unless ``--eval-size`` /
``--max-size`` say otherwise)
(``--skeleton crowdpose14`` scores a COCO-17 model's predictions converted to CrowdPose-14).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from posediff.env import machine_info
from posediff.io import save_result


def load(model: str):
    if model == "zoo":
        from posediff import create_model

        return create_model("edpose_tiny", pretrained="synthcrowd")
    from posediff.engine.checkpoint import load_model

    return load_model(model)


def dataset(args):
    """The split to predict (its first ``--images`` images) and its annotation file."""
    from posediff.data import CocoKeypointDataset
    from posediff.data.synthcrowd import synthcrowd_split
    from posediff.data.transforms import eval_transforms

    tf = eval_transforms(args.eval_size, args.max_size)
    if args.ann:
        ds = CocoKeypointDataset(args.image_dir, args.ann, skeleton=args.skeleton, transforms=tf)
    else:
        split = Path(args.data_root) / args.split
        if not split.is_dir():
            raise SystemExit(f"{split}: no SynthCrowd split there; write one with `posediff data synthcrowd "
                             f"--out {args.data_root}` (or `posediff train` renders it), or pass --ann and "
                             f"--image-dir")
        ds = synthcrowd_split(args.data_root, args.split, skeleton=args.skeleton, transforms=tf)
    ds.ids = ds.ids[: args.images]
    return ds, str(ds.ann_file)


def plot(result: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from posediff.viz import save_figure

    rel = {k: v for k, v in result["joint_error_rel"].items() if v is not None}
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(range(len(rel)), list(rel.values()), color="tab:blue")
    ax.set_xticks(range(len(rel)), list(rel), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("median error / sqrt(area)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    print(f"wrote {path}")


def default_sizes(args):
    """Where ``--eval-size`` / ``--max-size`` default from: the data config a checkpoint was trained with, else
    SynthCrowd's or (with ``--ann``) photographs' (a :class:`~posediff.engine.DataConfig`)."""
    import json

    from posediff.engine.checkpoint import load_checkpoint
    from posediff.tasks.multiperson import DataConfig, coco_data

    if args.model != "zoo":
        saved = json.loads(load_checkpoint(args.model)[2].get("config", "{}")).get("data")
        if saved:
            return DataConfig.from_saved(saved)
    return coco_data() if args.ann else DataConfig()


def model_and_split_arguments(ap: argparse.ArgumentParser, images: int) -> None:
    """The options that say which model predicts which split (shared with ``eval_size.py``)."""
    ap.add_argument("--model", default="zoo", help="'zoo' (edpose_tiny, SynthCrowd) or a checkpoint file")
    ap.add_argument("--data-root", default="data/synthcrowd", help="a SynthCrowd folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--images", type=int, default=images, help="the split's first IMAGES images")
    ap.add_argument("--out", default="", help="JSON file to write")
    ap.add_argument("--plot", default="", help="PNG file to write")


def main(argv=None) -> dict:
    from posediff.data.synthcrowd import renderer_version
    from posediff.evaluation import keypoint_errors, results_to_crowdpose14
    from posediff.tasks.multiperson import predict_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_and_split_arguments(ap, images=100)
    ap.add_argument("--ann", default="", help="a COCO-format annotation file instead of SynthCrowd")
    ap.add_argument("--image-dir", default="")
    ap.add_argument("--skeleton", default="coco17", choices=["coco17", "crowdpose14"])
    ap.add_argument("--eval-size", type=int, default=None,
                    help="shorter side at evaluation (default: the largest training scale of the checkpoint's "
                         "data, else of SynthCrowd, 288, or with --ann of photographs, 800)")
    ap.add_argument("--max-size", type=int, default=None,
                    help="cap on the longer side (default: the checkpoint's data's, else SynthCrowd's 400, or "
                         "with --ann 1333)")
    ap.add_argument("--min-oks", type=float, default=0.1, help="the least OKS that pairs a prediction and a person")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.ann and not args.image_dir:
        ap.error("--ann needs --image-dir")
    if args.images < 1:
        ap.error(f"--images must be at least 1, got {args.images}")
    sizes = default_sizes(args)  # recorded in the JSON as used
    args.eval_size = args.eval_size if args.eval_size is not None else sizes.eval_scale
    args.max_size = args.max_size if args.max_size is not None else sizes.max_size
    ds, ann = dataset(args)
    model = load(args.model).to(args.device).eval()
    t0 = time.time()
    results = predict_results(model, ds, batch_size=4, device=args.device, progress=True)
    if args.skeleton == "crowdpose14" and results and len(results[0]["keypoints"]) == 51:
        results = results_to_crowdpose14(results)  # a COCO-17 model, scored on CrowdPose-14 files
    out = keypoint_errors(ann, results, skeleton=args.skeleton, image_ids=ds.ids, min_oks=args.min_oks)
    info = ds.coco.dataset.get("info")
    info = info if isinstance(info, dict) else {}
    renderer = None if args.ann else renderer_version(info.get("renderer"))  # None: not SynthCrowd
    out = dict(out, model=args.model, ann=ann, images=len(ds), args=vars(args), synthcrowd_renderer=renderer,
               seconds=round(time.time() - t0, 1), machine=machine_info(), date=time.strftime("%Y-%m-%d"))
    print(f"{args.model} on {len(ds)} images of {ann}: {out['persons']} persons, {out['found']:.1%} paired "
          f"(OKS > {args.min_oks}, as COCO pairs them)")
    print("| joint | median error (px) | / sqrt(area) |\n|---|---|---|")
    for name, px in out["joint_error_px"].items():
        rel = out["joint_error_rel"][name]
        print(f"| {name} | {'-' if px is None else f'{px:.1f}'} | {'-' if rel is None else f'{rel:.3f}'} |")
    if out["swap_share"] is None:
        print("no person paired: no per-joint errors" + (", no plot" if args.plot else ""))
    else:
        print(f"left / right swapped fits better: {out['swap_share']:.1%} of paired persons; predicted / true "
              f"left-right distance: {out['lr_spread']:.2f} (median)")
        if args.plot:
            plot(out, args.plot, f"{args.model}, {len(ds)} images of {ann}: per-joint error")
    print(f"AP {out['AP']:.3f}; with perfect joints {out['ap_oracle_keypoints']:.3f}; "
          f"with a perfect ranking {out['ap_oracle_scores']:.3f}")
    return save_result(out, args.out)


if __name__ == "__main__":
    main()
