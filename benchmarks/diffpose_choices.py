"""DiffPose's choices where the paper leaves room, measured on one short fixed budget.

Every variant trains the ``diffpose`` head for the same steps on the same frozen context encoder (one
``lifting_context`` run), the same MocapLift data and seed, and is scored on the same validation poses (P1 / P2
of the mean of 5 hypotheses, mm). Variants (``--variants``; default all):

* ``x0``: the defaults (``loss="x0"``: every timestep weighted alike, ``depth="context"``,
  ``covariance="full"``);
* ``step``: ``loss="step"``, Eq. 9 read through the DDIM step, which weighs ‖ĥ_0 − h_0‖² by c_k² (1 at k = 1,
  about 0.001 beyond k = 20 on the cosine schedule);
* ``histogram``: ``depth="histogram"``; ``joint``: ``covariance="joint"``;
* ``released``: the ``diffpose_released`` recipe's behaviours;
* ``baseline``: ``lifting_baseline`` (Baseline A) on the same encoder and budget, for scale.

Run: ``OMP_NUM_THREADS=1 python benchmarks/diffpose_choices.py --steps 1000 --out docs/results/diffpose_choices.json
--context runs/lifting_context_mocaplift/step_0004000.safetensors``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from posediff.env import machine_info
from posediff.io import save_result

VARIANTS = {
    "baseline": ("lifting_baseline", {}),
    "x0": ("diffpose", {"loss": "x0"}),
    "step": ("diffpose", {"loss": "step"}),
    "histogram": ("diffpose", {"depth": "histogram"}),
    "joint": ("diffpose", {"covariance": "joint"}),
    "released": ("diffpose_released", {}),
}


def main() -> None:
    from posediff.engine.config import TrainConfig
    from posediff.engine.train import train
    from posediff.tasks.lifting import LiftingData

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--context", required=True, help="a lifting_context checkpoint (the frozen encoder)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--runs", default="runs/diffpose_choices")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = {}
    for name in args.variants:
        recipe, model = VARIANTS[name]
        cfg = TrainConfig(recipe=recipe, model={"context_weights": args.context, **model}, data=LiftingData(),
                          out=str(Path(args.runs) / name), seed=args.seed, batch_size=64, lr=1e-3, weight_decay=1e-4,
                          clip_grad=1.0, max_steps=args.steps, lr_drop=(int(args.steps * 0.8),),
                          ckpt_every=max(args.steps // 4, 1), eval_every=max(args.steps // 2, 1))
        result = train(cfg, resume=True)
        rows[name] = {"recipe": recipe, "overrides": model, "train_seconds": result["seconds"],
                      **{k: v for k, v in result["metrics"].items()
                         if k in ("P1", "P2", "P1_best", "P2_best", "P1_first", "spread", "spread_error_corr")},
                      "curve": [(h["step"], h["eval"]["P1"]) for h in result["history"] if "eval" in h]}
    print(f"{'variant':12}{'P1':>8}{'P2':>8}{'best-of-5':>11}{'spread':>8}")
    for name, r in rows.items():
        print(f"{name:12}{r['P1']:8.1f}{r['P2']:8.1f}{r['P1_best']:11.1f}{r['spread']:8.1f}")
    save_result({"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "steps": args.steps,
                 "seed": args.seed, "context": args.context, "variants": rows}, args.out)


if __name__ == "__main__":
    main()
