"""MocapLift: how fast it is made on the fly, and what its 2D looks like against the truth.

1. Speed: samples per second through a ``DataLoader`` (batch 256, no workers: the training process itself)
   for frame-based items (T = 1) and the video recipes' windows (T = 9 for ``diffpose_video_tiny``, 243 for
   ``diffpose_video``), on one thread.
2. Statistics of the test split: split sizes and action groups; people inside the image and their height
   in pixels; the 2D error of the detector model (mean and per joint, pixels), the share of frames with a
   left/right swap and of snapped joints, as measured against the noise-free projection.

Run: ``OMP_NUM_THREADS=1 python benchmarks/mocaplift.py --out docs/results/mocaplift.json``
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
import torch

from posediff.data.h36m import load_cameras
from posediff.data.mocaplift import MocapLift, MocapLiftConfig, action_group
from posediff.env import machine_info
from posediff.io import save_result
from posediff.skeletons import H36M17


def speed(frames: int, batches: int) -> float:
    loader = torch.utils.data.DataLoader(MocapLift("train", frames=frames), batch_size=256, shuffle=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # warm-up
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * 256 / (time.perf_counter() - t)


def statistics(limit: int) -> dict:
    noisy = MocapLift("test")
    clean = MocapLift("test", config=MocapLiftConfig(noise=0.0, swap_prob=0.0, snap_prob=0.0))
    cams = load_cameras()
    err, heights, inside, swaps, snaps = [], [], [], 0, 0
    n = min(limit, len(noisy))
    for i in range(n):
        a, b = noisy[i], clean[i]
        obs, true = a["keypoints_px"][0].double().numpy(), b["keypoints_px"][0].double().numpy()
        w, h = cams[tuple(b["camera"].split("/"))].w, cams[tuple(b["camera"].split("/"))].h
        d = np.linalg.norm(obs - true, axis=-1)                               # (17,) pixels
        err.append(d)
        heights.append(float(np.ptp(true[:, 1])))
        inside.append(bool(((true >= 0) & (true < [w, h])).all()))
        swaps += int(np.linalg.norm(obs[13] - true[16]) < np.linalg.norm(obs[13] - true[13])
                     or np.linalg.norm(obs[6] - true[3]) < np.linalg.norm(obs[6] - true[6]))
        snaps += int((d > 0.1 * np.sqrt(np.ptp(true[:, 0]) * np.ptp(true[:, 1]))).sum())
    err = np.stack(err)
    return {
        "items": n,
        "mean_2d_error_px": float(err.mean()),
        "median_2d_error_px": float(np.median(err)),
        "per_joint_mean_error_px": dict(zip(H36M17.joints, err.mean(0).round(2).tolist())),
        "frames_with_a_swap_share": swaps / n,
        "joints_off_by_over_0.1_scale_share": snaps / err.size,
        "inside_image_share": float(np.mean(inside)),
        "median_height_px": float(np.median(heights)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--items", type=int, default=2416, help="test items for the statistics (default: all)")
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = {s: MocapLift(s) for s in ("train", "val", "test")}
    groups = {s: dict(collections.Counter(action_group(ds.bank.clip_action[ds.bank.take_of[p]]) for p in ds.indices))
              for s, ds in splits.items()}
    result = {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
        "config": MocapLiftConfig().__dict__,
        "split_sizes": {s: len(ds) for s, ds in splits.items()},
        "action_groups": groups,
        "samples_per_s": {"frames_1": speed(1, args.batches), "frames_9": speed(9, args.batches // 2),
                          "frames_243": speed(243, max(args.batches // 16, 1))},
        "test_2d": statistics(args.items),
    }
    print(f"{'':24}{'value':>12}")
    for k, v in result["samples_per_s"].items():
        print(f"{'samples/s ' + k:24}{v:12.0f}")
    for k in ("mean_2d_error_px", "median_2d_error_px", "frames_with_a_swap_share",
              "joints_off_by_over_0.1_scale_share", "inside_image_share", "median_height_px"):
        print(f"{k[:24]:24}{result['test_2d'][k]:12.3f}")
    save_result(result, args.out)


if __name__ == "__main__":
    main()
