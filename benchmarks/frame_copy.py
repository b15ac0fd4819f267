"""How much of DiffusionRegPose's training is a copy task? The candidates' coordinate frame and ζ, measured.

The head learns x̂_0 from x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Eq. 2). Where x_t / √ᾱ_t, mapped back to the image, already
lands within OKS 0.5 of the ground truth, the noisy pose alone nearly answers, and the head can learn to copy it;
where it does not, only the image can: the regime sampling starts from. This measures, for SynthCrowd's training
persons, the share of timesteps t ~ U{0, …, T − 1} (the training distribution) at which that copy scores OKS > 0.5,
and the copy's mean OKS at the 4-step sampler's timesteps, for the two coordinate frames a candidate could live in:

* ``image``: normalised image coordinates scaled to [−ζ, ζ] (Eq. 4; ``anchor="paper"``, every diffusion recipe's),
* ``person``: the person's box enlarged by 1.25 (``anchor="regression"``'s ``frame_scale``), scaled to [−ζ, ζ],

and ζ ∈ {1, 2, 5, 10}. The copy is clipped to [−ζ, ζ] as the DDIM step clips x̂_0. OKS is COCO's (its 17 sigmas,
the person's area, labelled joints). No training: the forward process and the ground truth decide it.

Run: ``python benchmarks/frame_copy.py --out docs/results/frame_copy.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from posediff.data.synthcrowd import PoseBank, SceneConfig, make_scene, split_annotations
from posediff.diffusion.schedulers import make_scheduler
from posediff.env import machine_info
from posediff.io import save_result
from posediff.skeletons import COCO17

FRAMES = {"image": None, "person": 1.25}


def persons(num_images: int, seed: int, size: int):
    """Labelled SynthCrowd train persons: keypoints (P, 17, 3) pixels, boxes (P, 4) xywh, areas (P,)."""
    bank = PoseBank.shipped()
    config = SceneConfig(size=size)
    coco, _ = split_annotations((make_scene(seed, "train", i, config, bank) for i in range(num_images)), "train",
                                seed, num_images, config)
    anns = [a for a in coco["annotations"] if a["num_keypoints"] > 0]
    kps = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64)                    # (P, 4) xywh
    areas = np.array([a["area"] for a in anns], dtype=np.float64)
    return kps, boxes, areas


def copy_oks(kps, boxes, areas, frame: str, zeta: float, alphas: np.ndarray, draws: int, rng, size: int):
    """OKS of the copy x_t / √ᾱ_t against x_0 for every person and every ᾱ in ``alphas``: (len(alphas), draws, P)."""
    if FRAMES[frame] is None:
        origin, span = np.zeros((len(kps), 2)), np.full((len(kps), 2), float(size))
    else:
        centre = boxes[:, :2] + boxes[:, 2:] / 2
        span = np.maximum(boxes[:, 2:] * FRAMES[frame], 1.0)
        origin = centre - span / 2
    x0 = ((kps[..., :2] - origin[:, None]) / span[:, None] * 2 - 1) * zeta             # (P, 17, 2) signal, Eq. 4
    k2 = (2 * np.asarray(COCO17.sigmas)) ** 2                                           # (17,)
    visible = kps[..., 2] > 0                                                           # (P, 17)
    out = np.empty((len(alphas), draws, len(kps)))
    for i, a in enumerate(alphas):
        eps = rng.standard_normal((draws, *x0.shape))                                   # (D, P, 17, 2)
        copy = np.clip(x0 + np.sqrt((1 - a) / a) * eps, -zeta, zeta)                     # x_t / √ᾱ_t, clipped
        d2 = (((copy - x0) / (2 * zeta) * span[:, None]) ** 2).sum(-1)                 # (D, P, 17) px²
        e = np.exp(-d2 / (2 * areas[:, None] * k2))
        out[i] = (e * visible).sum(-1) / visible.sum(-1)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="SynthCrowd train scenes (256 px, scene seed 0)")
    ap.add_argument("--zetas", type=float, nargs="+", default=[1.0, 2.0, 5.0, 10.0])
    ap.add_argument("--draws", type=int, default=2, help="noise draws per person and timestep")
    ap.add_argument("--sampling-timesteps", type=int, nargs="+", default=[999, 749, 499, 249])
    ap.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    size = 256
    kps, boxes, areas = persons(args.images, 0, size)
    sched = make_scheduler(num_train_timesteps=1000)                                    # the head's: cosine, T = 1000
    alphas = sched.alphas_cumprod.double().numpy()                                      # ᾱ_t, t = 0 … 999
    rows = []
    print(f"{len(kps)} persons from {args.images} scenes; share of t ~ U with copy OKS > 0.5, mean copy OKS at t = "
          + ", ".join(map(str, args.sampling_timesteps)))
    for frame in FRAMES:
        for zeta in args.zetas:
            rng = np.random.default_rng(0)
            oks = copy_oks(kps, boxes, areas, frame, zeta, alphas, args.draws, rng, size)   # (T, D, P)
            at = {str(t): float(oks[t].mean()) for t in args.sampling_timesteps}
            row = dict(frame=frame, zeta=zeta, share_oks_above_half=float((oks > 0.5).mean()),
                       mean_oks_uniform_t=float(oks.mean()), mean_oks_at=at)
            rows.append(row)
            print(f"  {frame:6s} ζ = {zeta:4g}: {100 * row['share_oks_above_half']:5.1f}%   "
                  + "  ".join(f"{v:.2f}" for v in at.values()), flush=True)
    return save_result(dict(benchmark="frame_copy", persons=len(kps), images=args.images, rows=rows,
                            date=time.strftime("%Y-%m-%d %H:%M"), machine=machine_info(),
                            command="python benchmarks/frame_copy.py " + shlex.join(argv)), args.out)


if __name__ == "__main__":
    main()
