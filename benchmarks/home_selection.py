"""Why do DiffusionRegPose's samples of one person barely differ? Which person each candidate selects, measured.

In the paper's head each candidate's K-CA selects among the N detected persons (Eq. 7), with a learnt bias
(``home_bias``) towards its own person i. A sample starts from pure noise x_T, which says nothing about where a
person is; if the candidate then selects its home person whatever x_T is, and later steps re-noise that person's
pose, every sample follows the same trajectory and the samples are alike. This measures, on SynthCrowd test
scenes with a trained model:

* ``sampling``: while sampling from x_T (the model's own steps), per step, the mean K-CA pose-attention weight a
  candidate puts on its home person and the share of candidates whose largest weight is home;
* ``follow``: whether the head reads x_t where x_t does say where a person is. The model's home poses x̂_0 (one
  pass at t = T - 1) are handed round among the candidates whose home person scores >= 0.3 (candidate i gets the
  pose of the next such person j), noised to x_t at t, and denoised once: the weight on the person x_t points at
  (j) against the home person (i), and the share of candidates whose output pose lies nearer to j's pose than
  to i's. A head that ignores x_t stays home at every t; one that reads it follows x_t at small t.

No training: a checkpoint (default: the zoo's ``diffusion_regpose_tiny``, the standard preset's seed-0 run).

Run: ``python benchmarks/home_selection.py --out docs/results/home_selection.json``
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

from posediff.env import machine_info
from posediff.io import save_result


def _load(checkpoint: str | None):
    if checkpoint:
        from posediff.engine.checkpoint import load_model

        return load_model(checkpoint), checkpoint
    import posediff

    return posediff.create_model("diffusion_regpose_tiny", pretrained="synthcrowd"), "zoo:diffusion_regpose_tiny"


class _PoseWeights:
    """Records the K-CA pose attention's weights (B, C, N) of every denoising pass (a forward hook)."""

    def __init__(self, module):
        self.weights: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(lambda m, args, out: self.weights.append(out[1].float()))

    def pop(self) -> torch.Tensor:
        w = self.weights.pop()
        self.weights.clear()
        return w


def _derangement(persons: torch.Tensor) -> torch.Tensor:
    """(C,) index: each candidate of a confident person (``persons`` True) gets the next such person; others
    keep their own."""
    order = torch.arange(len(persons))
    idx = order[persons]
    if len(idx) >= 2:
        order[idx] = idx.roll(-1)
    return order


def measure(model, dataset, images: int, steps: int, timesteps: list[int], seed: int) -> dict:
    from posediff.data import collate
    from posediff.diffusion.schedulers import q_sample

    head = model.head
    hook = _PoseWeights(head.denoiser.kca_pose)
    gen = torch.Generator().manual_seed(seed)
    per_step = [dict(home_weight=[], home_argmax=[]) for _ in range(steps)]
    follow = {t: dict(weight_pointed=[], weight_home=[], nearer_pointed=[]) for t in timesteps}
    try:
        for start in range(0, images, 4):
            imgs, mask, _ = collate([dataset[i] for i in range(start, min(start + 4, images))])
            enc = model.encode(imgs, mask)
            humans = model.human_decoder(enc.memory, enc.padding_mask, enc.spatial_shapes, enc.valid_ratios)
            persons = head._persons(humans)  # the N best persons, F_H2K, kp0
            b, n = persons.boxes.shape[:2]
            # sampling from x_T: one weight record per denoising pass
            hook.weights.clear()
            head.predict(humans, enc, steps=steps, generator=gen)
            for s, w in enumerate(hook.weights[-steps:]):  # (B, C, N) each
                c = min(w.shape[1], n)
                per_step[s]["home_weight"].append(w[:, :c].diagonal(dim1=1, dim2=2).reshape(-1))
                per_step[s]["home_argmax"].append((w[:, :c].argmax(-1) == torch.arange(c)).float().reshape(-1))
            # the home poses, then handed round among the confident persons
            k = head.denoiser.num_keypoints
            x_T = torch.randn((b, n, k, 2), generator=gen)
            t_top = torch.full((b,), head.max_sampling_steps - 1, dtype=torch.long)
            own = head.denoise(x_T, t_top, persons, enc).keypoints[-1]  # (B, N, K, 2) normalised image coords
            confident = persons.logits.float().sigmoid() >= 0.3  # (B, N)
            perm_all = torch.stack([_derangement(c) for c in confident])  # (B, N) whose pose each candidate gets
            moved = confident & perm_all.ne(torch.arange(n))  # (B, N) candidates handed another person's pose
            pointed = torch.gather(own, 1, perm_all[..., None, None].expand(-1, -1, k, 2))  # (B, N, K, 2)
            x0 = head.to_signal(pointed, persons)  # (B, N, K, 2) signal
            for t in timesteps:
                tt = torch.full((b,), t, dtype=torch.long)
                x_t = q_sample(head.scheduler, x0, tt, torch.randn(x0.shape, generator=gen))
                out = head.denoise(x_t, tt, persons, enc).keypoints[-1]  # (B, N, K, 2)
                w = hook.pop()  # (B, C, N)
                follow[t]["weight_pointed"].append(w.gather(-1, perm_all[..., None])[..., 0][moved])
                follow[t]["weight_home"].append(w.diagonal(dim1=1, dim2=2)[moved])
                d_pointed = (out - pointed).norm(dim=-1).mean(-1)  # (B, N) mean joint distance, normalised
                d_home = (out - own).norm(dim=-1).mean(-1)
                follow[t]["nearer_pointed"].append((d_pointed < d_home).float()[moved])
    finally:
        hook.handle.remove()

    def mean(parts):
        return round(float(torch.cat(parts).mean()), 4) if parts else None

    return dict(
        sampling=[dict(step=s + 1, home_weight=mean(v["home_weight"]), home_argmax=mean(v["home_argmax"]))
                  for s, v in enumerate(per_step)],
        follow=[dict(t=t, candidates=int(sum(len(x) for x in v["weight_home"])),
                     weight_pointed=mean(v["weight_pointed"]), weight_home=mean(v["weight_home"]),
                     nearer_pointed=mean(v["nearer_pointed"])) for t, v in follow.items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a run's checkpoint (default: the zoo's model)")
    ap.add_argument("--data-root", default="data/synthcrowd", help="SynthCrowd folder (its test split is rendered "
                    "into a temporary folder when missing)")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--timesteps", type=int, nargs="+", default=[999, 749, 499, 249, 50])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from pathlib import Path

    from posediff.data.synthcrowd import synthcrowd_split
    from posediff.data.transforms import eval_transforms
    from posediff.tasks.multiperson import DataConfig, synthcrowd_test_split

    torch.manual_seed(args.seed)
    model, source = _load(args.checkpoint)
    model.eval()
    steps = args.steps or int(model.head.sampling_steps)
    root = args.data_root if (Path(args.data_root) / "test").is_dir() else None
    t0 = time.time()
    with synthcrowd_test_split(root) as (folder, _):
        ds = synthcrowd_split(folder, "test", transforms=eval_transforms(DataConfig().eval_scale, 400))
        with torch.no_grad():
            res = measure(model, ds, min(args.images, len(ds)), steps, args.timesteps, args.seed)
    home_bias = model.head.denoiser.home_bias
    result = dict(model=source, home_bias=None if home_bias is None else round(float(home_bias.detach()), 3),
                  images=min(args.images, len(ds)), steps=steps, **res, seconds=round(time.time() - t0, 1),
                  machine=machine_info(), command="python benchmarks/home_selection.py " + shlex.join(sys.argv[1:]),
                  date=time.strftime("%Y-%m-%d"))
    print("sampling step | home weight | home argmax")
    for r in result["sampling"]:
        print(f"{r['step']} | {r['home_weight']} | {r['home_argmax']}")
    print("t | candidates | weight on the person x_t points at | on home | output nearer the pointed pose")
    for r in result["follow"]:
        print(f"{r['t']} | {r['candidates']} | {r['weight_pointed']} | {r['weight_home']} | {r['nearer_pointed']}")
    save_result(result, args.out)


if __name__ == "__main__":
    main()
