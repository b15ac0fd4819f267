"""Latency, parameters and FLOPs of edpose vs diffusion_regpose at 1, 2, 4 and 8 sampling steps.

Batch 1, a 512 x 512 image, eval mode, untrained weights (latency does not depend on them, except for
the number of persons pose NMS keeps, which is bounded by max_det). Each latency is the median of
``--repeat`` timed runs after ``--warmup`` runs. FLOPs are counted by ``torch.utils.flop_counter`` (matrix
products and convolutions; ``grid_sample`` in deformable attention is not counted).

Targets (issue 4): diffusion at one step within 1.15x of edpose; each extra step under 0.10x of edpose.

Run: ``python benchmarks/speed.py --out docs/results/speed.json`` (tiny and ResNet-50 sizes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import posediff
from posediff.env import machine_info
from posediff.io import save_result


def latency(model, image, steps=None, warmup=2, repeat=5) -> float:
    """Median seconds of one forward pass on ``image``'s device (CUDA synchronised around each)."""
    kwargs = {} if steps is None else dict(steps=steps, generator=torch.Generator().manual_seed(0))
    sync = torch.cuda.synchronize if image.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            model(image, **kwargs)
        times = []
        for _ in range(repeat):
            sync()
            t0 = time.perf_counter()
            model(image, **kwargs)
            sync()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def flops(model, image, steps=None) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    kwargs = {} if steps is None else dict(steps=steps, generator=torch.Generator().manual_seed(0))
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # the counter's module tracker needs a graph-free forward
    try:
        with FlopCounterMode(display=False) as counter:
            model(image, **kwargs)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return counter.get_total_flops() / 1e9


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "r50"], choices=["tiny", "r50"])
    ap.add_argument("--image", type=int, default=512)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--inference-proposals", type=int, default=30,
                    help="also time ResNet-50 diffusion sampling only this many best persons")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    image = torch.randn(1, 3, args.image, args.image, device=device)
    rows = []
    for size in args.sizes:
        suffix = "_tiny" if size == "tiny" else ""
        torch.manual_seed(0)
        base = posediff.create_model(f"edpose{suffix}").eval().to(device)
        base_ms = latency(base, image, None, args.warmup, args.repeat) * 1e3
        rows.append(dict(size=size, recipe=f"edpose{suffix}", steps=None, latency_ms=base_ms,
                         params_m=sum(p.numel() for p in base.parameters()) / 1e6, gflops=flops(base, image),
                         vs_edpose=1.0))
        variants = [None] if size == "tiny" else [None, args.inference_proposals]
        for proposals in variants:
            torch.manual_seed(0)
            diff = posediff.create_model(f"diffusion_regpose{suffix}", inference_proposals=proposals).eval().to(device)
            params = sum(p.numel() for p in diff.parameters()) / 1e6
            label = f"diffusion_regpose{suffix}" + (f" (sampling {proposals} best persons)" if proposals
                                                    else " (sampling all proposals)" if size != "tiny" else "")
            for steps in args.steps:
                ms = latency(diff, image, steps, args.warmup, args.repeat) * 1e3
                rows.append(dict(size=size, recipe=label, steps=steps, latency_ms=ms, params_m=params,
                                 gflops=flops(diff, image, steps), vs_edpose=ms / base_ms, proposals=proposals))
            one = next(r for r in rows if r["recipe"] == label and r["steps"] == 1)
            for r in rows:
                if r["recipe"] == label and r["steps"] not in (None, 1):
                    r["extra_step_vs_edpose"] = (r["latency_ms"] - one["latency_ms"]) / (r["steps"] - 1) / base_ms

    where = (f"GPU {torch.cuda.get_device_name(device)}, fp32" if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"Latency per image (batch 1, {args.image} x {args.image}, {where})")
    print("| model | steps | latency (ms) | x edpose | extra step (x edpose) | params (M) | GFLOPs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        extra = f"{r['extra_step_vs_edpose']:.3f}" if "extra_step_vs_edpose" in r else "-"
        print(f"| {r['recipe']} | {r['steps'] or '-'} | {r['latency_ms']:.0f} | {r['vs_edpose']:.2f} | {extra} | "
              f"{r['params_m']:.1f} | {r['gflops']:.1f} |")
    result = dict(benchmark="speed", image=args.image, device=device.type, warmup=args.warmup, repeat=args.repeat,
                  date=time.strftime("%Y-%m-%d %H:%M"), rows=rows, machine=machine_info(),
                  targets=dict(one_step_vs_edpose_max=1.15, extra_step_vs_edpose_max=0.10))
    return save_result(result, args.out)


if __name__ == "__main__":
    main()
