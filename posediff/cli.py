"""The ``posediff`` command line.

    posediff data synthcrowd --out DIR --num-images N --size S --seed K   render SynthCrowd splits
    posediff data posebank ANNOTATIONS --out BANK.npz                     pack a pose bank
    posediff data mocapbank CMU_H36M17.npz --out BANK.npz                 pack MocapLift's poses
    posediff prior fit ANNOTATIONS --out PRIOR.safetensors                fit a keypoint-completion prior
    posediff train CONFIG [key=value ...] [--resume]                      train (torchrun -m posediff train)
    posediff predict IMAGE... [--checkpoint C] --out DIR [--lift [L]]     poses on images (JSON + PNG), 3D
    posediff pretrain-backbone --out W.safetensors [--minutes M]          SynthCrowd heatmap pretraining
    posediff bench [--preset quick|standard|full] [--recipes R...]        head-to-head: tables, plots, report
    posediff zoo export RUN --out ZOO.safetensors                         a run -> fp16 zoo file, scored
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from pathlib import Path


def _command(args: argparse.Namespace) -> str:
    """The command line as typed, quoted so that it can be pasted back (recorded with results)."""
    return "posediff " + shlex.join(args.argv)


def _prior_fit(args: argparse.Namespace) -> int:
    from .data import load_person_arrays
    from .diffusion.completion import GaussianPosePrior
    from .io import check_output_file
    from .skeletons import get_skeleton

    skeleton = get_skeleton(args.skeleton)
    check_output_file(args.out, "--out", inputs=(args.annotations,))
    persons = load_person_arrays(args.annotations, joints=skeleton.joints)
    prior = GaussianPosePrior.fit(
        persons.keypoints, persons.boxes,
        normalization=args.normalization,
        min_visible=args.min_visible,
        flip_index=None if args.no_flip else skeleton.flip_index,
        condition_on_aspect=not args.no_aspect,
        meta=dict(skeleton=skeleton.name, source=str(args.annotations),
                  command=_command(args) if args.record_command else None),
    )
    prior.save(args.out)
    print(f"fitted on {prior.meta['num_persons']} persons of {args.annotations} -> {args.out}")
    return 0


def _data_synthcrowd(args: argparse.Namespace) -> int:
    from .tasks.multiperson import SPLIT_FRACTIONS, render_synthcrowd

    if args.num_images < 1 or args.size < 32 or args.seed < 0:
        raise ValueError(f"posediff data synthcrowd: --num-images must be at least 1 (got {args.num_images}), "
                         f"--size at least 32 pixels (got {args.size}) and --seed at least 0 (got {args.seed})")
    splits = tuple(s.strip() for s in args.splits.split(","))
    if not set(splits) <= set(SPLIT_FRACTIONS) or len(set(splits)) != len(splits):
        raise ValueError(f"posediff data synthcrowd: --splits must name distinct splits among "
                         f"{','.join(SPLIT_FRACTIONS)}, got {args.splits!r}")
    summaries = render_synthcrowd(args.out, args.num_images, args.size, args.seed, splits=splits, flag="--out")
    for split, summary in zip(splits, summaries, strict=True):
        print(f"{split}: {summary['images']} images, {summary['persons']} persons; crowd levels easy "
              f"{summary['easy']}, medium {summary['medium']}, hard {summary['hard']} -> {args.out}/{split}")
    return 0


def _data_posebank(args: argparse.Namespace) -> int:
    from .data.synthcrowd import build_pose_bank

    n = build_pose_bank(args.annotations, args.out, min_keypoints=args.min_keypoints)
    print(f"{n} poses of {args.annotations} -> {args.out}")
    return 0


def _data_mocapbank(args: argparse.Namespace) -> int:
    from .data.mocaplift import pack_mocap

    n = pack_mocap(args.poses, args.out)
    print(f"{n} poses of {args.poses} -> {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import logging

    from .engine.config import apply_overrides, load_config
    from .engine.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = apply_overrides(load_config(args.config), args.overrides)
    result = train(cfg, resume=args.resume, init=args.init, progress=not args.no_progress,
                   resume_from=args.resume_from)
    if "metrics" in result:
        print(json.dumps({"steps": result["steps"], "seconds": result["seconds"], **result["metrics"]}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .data import ImageError
    from .engine.infer import predict_files

    done = predict_files(args.checkpoint, args.images, args.out, size=args.size, score_threshold=args.score_threshold,
                         steps=args.steps, lift=args.lift, hypotheses=args.hypotheses, recipe=args.recipe,
                         detector=args.detector)
    out = done["out"]
    lifted = f", {out}/poses3d.json and {out}/*_3d.png" if args.lift else ""
    print(f"{done['predicted']} images -> {out}/results.json and {out}/*_poses.png{lifted}")
    if done["failed"]:
        for f in done["failed"]:
            print(f"posediff: could not read image {f['image_id']}: {f['error']}", file=sys.stderr)
        raise ImageError(f"{len(done['failed'])} of {len(args.images)} images could not be read (listed above and "
                         f"under 'failed' in {out / 'images.json'}); the results of the others are written")
    return 0


def _pretrain_backbone(args: argparse.Namespace) -> int:
    from .engine.pretrain import pretrain_backbone

    result = pretrain_backbone(args.out, backbone=args.backbone, steps=args.steps, minutes=args.minutes,
                               batch_size=args.batch_size, lr=args.lr, size=args.size, seed=args.seed,
                               resume=args.resume, progress=not args.no_progress)
    print(json.dumps(result))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_from_args

    return run_from_args(args, _command(args))


def _zoo_export(args: argparse.Namespace) -> int:
    from .engine.zoo_export import export_and_score

    if args.eval_size is not None and args.eval_size < 32:
        raise ValueError(f"posediff zoo export: --eval-size is a shorter side in pixels, at least 32; got "
                         f"{args.eval_size}")
    made_by = dict(command=args.command or "", time=args.time or "", machine=args.machine or "")
    summary = export_and_score(args.run, args.out, base=args.base, data_root=args.data_root, made_by=made_by,
                               eval_size=args.eval_size, int8=args.int8, current_sampling=args.current_sampling)
    print(json.dumps(summary, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posediff", description="diffusion-based human pose estimation")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: SynthCrowd, pose banks")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    sc = data_sub.add_parser("synthcrowd", help="render SynthCrowd: crowded scenes from real COCO poses")
    sc.add_argument("--out", required=True, help="output folder (DIR/SPLIT/images, coco.json, crowdpose.json)")
    sc.add_argument("--num-images", type=int, required=True,
                    help="the folder's scenes in all, 80/10/10 over train/val/test (data.num_images in training); "
                         "--splits renders only some of them")
    sc.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    sc.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    sc.add_argument("--splits", default="train,val,test", help="comma-separated subset of train,val,test")
    sc.set_defaults(func=_data_synthcrowd)
    pb = data_sub.add_parser("posebank", help="pack the persons of a COCO-17 file into a SynthCrowd pose bank")
    pb.add_argument("annotations")
    pb.add_argument("--out", required=True)
    pb.add_argument("--min-keypoints", type=int, default=8)
    pb.set_defaults(func=_data_posebank)
    mb = data_sub.add_parser("mocapbank", help="pack CMU poses in the H36M-17 layout (cmu_h36m17.npz) for MocapLift")
    mb.add_argument("poses")
    mb.add_argument("--out", required=True)
    mb.set_defaults(func=_data_mocapbank)

    tr = sub.add_parser("train", help="train a recipe from a config file")
    tr.add_argument("config", help="a Python config file defining `config = TrainConfig(...)`")
    tr.add_argument("overrides", nargs="*", help="key=value overrides (lr=2e-4, data.num_images=200, model.x=1)")
    tr.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    tr.add_argument("--resume-from", default=None, metavar="CHECKPOINT",
                    help="continue from this checkpoint of the run folder (step_N.safetensors) instead of the last, "
                         "e.g. when the last is damaged: later damaged ones are removed")
    tr.add_argument("--init", default=None, help="initialise the weights from a checkpoint (new blocks stay fresh)")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="predict poses on images with a trained checkpoint")
    pr.add_argument("images", nargs="+", help="image files (any size)")
    pr.add_argument("--checkpoint", help="a posediff .safetensors checkpoint of a 2D model, one-stage or top-down "
                    "(default: the zoo's edpose_tiny, trained on SynthCrowd)")
    pr.add_argument("--recipe", help="a zoo model by its recipe instead (e.g. simplebaseline_tiny)")
    pr.add_argument("--detector", help="the one-stage checkpoint whose person boxes a top-down model reads "
                    "(default: the zoo's edpose_tiny); persons from boxes scoring --score-threshold")
    pr.add_argument("--out", required=True, help="output folder: results.json (COCO results), images.json "
                    "(which drawing is which image, and which images could not be read) and *_poses.png; a rerun "
                    "replaces them; files posediff did not write are never replaced")
    pr.add_argument("--size", type=int, default=512, help="shorter side the network sees (default 512)")
    pr.add_argument("--score-threshold", type=float, default=0.3, help="persons scoring less are left out (0-1)")
    pr.add_argument("--steps", type=int, default=None, help="sampling steps of a diffusion model (not of a "
                    "one-pass model such as edpose)")
    pr.add_argument("--lift", nargs="?", const="zoo", default=None, metavar="CHECKPOINT",
                    help="also lift each person to 3D (poses3d.json, *_3d.png) with a lifting checkpoint, or with the "
                         "zoo's diffpose when none is given")
    pr.add_argument("--hypotheses", type=int, default=None, help="hypotheses of a diffusion lifter (default: its own)")
    pr.set_defaults(func=_predict)

    pb2 = sub.add_parser("pretrain-backbone", help="pretrain a backbone on SynthCrowd keypoint heatmaps")
    pb2.add_argument("--out", required=True, help="the backbone weights (.safetensors, fp16)")
    pb2.add_argument("--backbone", default="resnet18")
    pb2.add_argument("--steps", type=int, default=100000)
    pb2.add_argument("--minutes", type=float, default=None, help="stop after this much time")
    pb2.add_argument("--batch-size", type=int, default=16)
    pb2.add_argument("--lr", type=float, default=1e-3)
    pb2.add_argument("--size", type=int, default=256)
    pb2.add_argument("--seed", type=int, default=0)
    pb2.add_argument("--resume", action="store_true")
    pb2.add_argument("--no-progress", action="store_true")
    pb2.set_defaults(func=_pretrain_backbone)

    from .bench import add_arguments

    bench = sub.add_parser("bench", help="head-to-head: train recipes on the same data, budget and seeds; "
                                         "tables, plots, report")
    add_arguments(bench)
    bench.set_defaults(func=_bench)

    zoo = sub.add_parser("zoo", help="the model zoo (posediff/assets/zoo)")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    ex = zoo_sub.add_parser("export", help="a training run's last checkpoint -> fp16 zoo file, scored on the "
                                           "test split")
    ex.add_argument("run", help="training run folder (its last checkpoint) or a checkpoint file")
    ex.add_argument("--out", required=True, help="zoo file to write")
    ex.add_argument("--base", help="zoo file whose tensors are left out where equal (the frozen backbone)")
    ex.add_argument("--data-root", help="SynthCrowd folder whose test split scores it (default: the run's data)")
    ex.add_argument("--eval-size", type=int, help="shorter side the test images are scored at (default: the run's "
                                                  "data.eval_size, or its largest training scale)")
    ex.add_argument("--command", help="the command that trained the run, recorded in the file")
    ex.add_argument("--time", help="how long training took, and when, recorded in the file")
    ex.add_argument("--machine", help="where it was trained, recorded in the file")
    ex.add_argument("--int8", action="store_true", help="store the large weight tensors as int8 with one fp16 scale "
                                                        "per output channel (about half the size; scored as stored)")
    ex.add_argument("--current-sampling", action="store_true",
                    help="score and store the file with the sampling defaults its recipe changed since the run was "
                         "trained (pose-NMS threshold, DiffusionPose's start) at their current values")
    ex.set_defaults(func=_zoo_export)

    prior = sub.add_parser("prior", help="keypoint-completion priors (DiffusionRegPose Eq. 9-12)")
    prior_sub = prior.add_subparsers(dest="prior_command", required=True)
    fit = prior_sub.add_parser("fit", help="fit a Gaussian pose prior to a COCO-format keypoint file")
    fit.add_argument("annotations", help="COCO-format keypoint JSON")
    fit.add_argument("--out", required=True, help="where to write the prior (.safetensors)")
    fit.add_argument("--skeleton", default="coco17", help="coco17 | crowdpose14 (default coco17)")
    fit.add_argument("--normalization", default="box", choices=["box", "box_isotropic"])
    fit.add_argument("--min-visible", type=int, default=None,
                     help="use persons with at least this many labelled joints (default: all of them, "
                          "i.e. fully labelled persons only); partial persons are fitted by EM")
    fit.add_argument("--no-flip", action="store_true", help="do not add mirrored persons")
    fit.add_argument("--no-aspect", action="store_true", help="do not condition on the box aspect ratio")
    fit.add_argument("--record-command", action="store_true", help="store this command line in the prior")
    fit.set_defaults(func=_prior_fit)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


_USER_ERRORS = (ValueError, OSError, KeyError)  # OSError: a missing or unreadable file (data.ImageError too)
_PACKAGE = str(Path(__file__).resolve().parent)


def run(entry=main) -> int:
    """The console entry point: ``entry()``, with an error that posediff raised about its input (a bad flag, field,
    file) printed as one line, ``posediff: error: ...``, and exit status 2. An error raised anywhere else (inside
    torch, say) keeps its traceback, as does every error with ``POSEDIFF_TRACEBACK=1``."""
    try:
        return entry()
    except _USER_ERRORS as err:
        frames = traceback.extract_tb(err.__traceback__)
        ours = bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_PACKAGE)
        # a KeyError of posediff's carries a sentence (an unknown recipe or skeleton); a bare missing key is a bug
        sentence = not isinstance(err, KeyError) or (bool(err.args) and " " in str(err.args[0]))
        if not ours or not sentence or os.environ.get("POSEDIFF_TRACEBACK"):
            raise
        message = err.args[0] if isinstance(err, KeyError) else err
        print(f"posediff: error: {message}\n(POSEDIFF_TRACEBACK=1 shows where it was raised)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
