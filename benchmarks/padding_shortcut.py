"""Can x_t alone tell the diffusion head's real candidates from its padded ones? One row per padding.

For each padding of ``diffusion_regpose_tiny`` (and the regression-anchored head posediff had before), the AUC with
which ‖x_t‖, a logistic probe and gradient-boosted trees on x_t and the candidate's index separate candidates with a
ground-truth pose from padded ones, at each timestep of the 4-step sampler (``--sampling-steps``), as the head's
training pass builds them (``posediff.evaluation.shortcut.padding_separability``): 0.5 is no shortcut, 1.0 a
complete one. Scenes: the first ``--images`` SynthCrowd train scenes (scene seed 3, 128 px), batches of 4, 4 draws
each.

Run: ``python benchmarks/padding_shortcut.py --out docs/results/padding_shortcut.json``; the 8-step sampler's
timesteps for the default padding: ``python benchmarks/padding_shortcut.py --sampling-steps 8 --paddings
"repeat_batch (default)" --candidates 10 --out docs/results/padding_shortcut_8steps.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time

import torch

import posediff
from posediff.data import collate
from posediff.data.synthcrowd import SceneConfig, synthcrowd_split, write_split
from posediff.env import machine_info
from posediff.evaluation.shortcut import padding_separability
from posediff.io import save_result

SETTINGS = {"repeat_batch (default)": {}, "repeat (per image, Table 4)": {"padding": "repeat"},
            "empty (the paper's default)": {"padding": "empty"}, "noise": {"padding": "noise"},
            "mean": {"padding": "mean"}, "regression anchor, empty": {"anchor": "regression"}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--candidates", type=int, nargs="+", default=[10, 30], help="num_proposals (the recipe's: 10)")
    ap.add_argument("--sampling-steps", type=int, default=None, help="the sampler whose timesteps are probed "
                    "(default: the recipe's 4 steps)")
    ap.add_argument("--paddings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="NAME",
                    help=f"rows to measure (default: all of {list(SETTINGS)})")
    ap.add_argument("--out", default=None, help="JSON file to write")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_split(tmp, "train", args.images, seed=3, config=SceneConfig(size=128), progress=False)
        ds = synthcrowd_split(tmp, "train", prior="coco17")
        batches = [collate([ds[i] for i in range(s, min(s + 4, len(ds)))]) for s in range(0, len(ds), 4)]
        for candidates in args.candidates:
            for name in args.paddings:
                overrides = dict(SETTINGS[name])
                if args.sampling_steps:
                    overrides["sampling_steps"] = args.sampling_steps
                torch.manual_seed(0)
                model = posediff.create_model("diffusion_regpose_tiny", num_proposals=candidates, **overrides)
                auc = padding_separability(model, batches)
                rows.append(dict(padding=name, candidates=candidates, overrides=overrides,
                                 auc={str(t): v for t, v in auc.items()},
                                 max_auc=max(max(v.values()) for v in auc.values())))
                print(f"{candidates:3d} candidates  {name:30s}  max AUC {rows[-1]['max_auc']:.3f}  " + "  ".join(
                    f"t={t}: {max(v.values()):.3f}" for t, v in auc.items()), flush=True)
    return save_result(dict(rows=rows, images=args.images, machine=machine_info(),
                            date=time.strftime("%Y-%m-%d %H:%M"),
                            command="python benchmarks/padding_shortcut.py " + shlex.join(argv)), args.out)


if __name__ == "__main__":
    main()
