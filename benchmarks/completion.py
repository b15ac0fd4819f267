"""Keypoint completion on real COCO poses: zero fill vs mean-pose fill vs the Gaussian prior (Eq. 9-12).

Protocol:
1. Read every person with keypoints of COCO val2017 (``person_keypoints_val2017_all_poses.json``).
2. Split the fully labelled persons (all 17 joints) in two halves by a seeded permutation; the second
   half is held out. Priors are fitted on everything else (the first half, and for the EM variants the
   partially labelled persons too).
3. For each held-out person draw ``--patterns`` real occlusion patterns: the visibility masks of
   partially labelled COCO persons (1..16 labelled joints). The pattern's unlabelled joints are hidden.
4. Fill the hidden joints and score each one with the COCO OKS term exp(-d² / (2 s² k_i²)), with
   k_i = 2σ_i and s² the person's segment area (where the file has it exactly; otherwise the box area
   times the median area/box ratio of the exact persons, 0.534).
5. Report the mean OKS over all hidden joints, mean ± std over seeds (each seed another held-out half
   and other patterns).

Run: ``python benchmarks/completion.py --out docs/results/completion.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from posediff.data import load_person_arrays
from posediff.diffusion.completion import GaussianPosePrior
from posediff.env import machine_info
from posediff.io import save_result
from posediff.skeletons import COCO17

DEFAULT_ANN = Path(__file__).resolve().parents[1].parent / "shared/data/coco/person_keypoints_val2017_all_poses.json"


def oks_terms(pred_xy: np.ndarray, gt_xy: np.ndarray, s2: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Per-joint OKS terms (N, K) for predictions (N, K, 2) against ground truth (N, K, 2)."""
    d2 = ((pred_xy - gt_xy) ** 2).sum(-1)  # (N, K)
    var = (2.0 * sigmas) ** 2  # (K,): k_i²
    return np.exp(-d2 / (2.0 * s2[:, None] * var[None, :]))


def make_cases(persons, seed: int, patterns: int):
    """Held-out fully labelled persons x real occlusion patterns -> (keypoints with hidden joints, truth)."""
    rng = np.random.default_rng(seed)
    n_lab = (persons.keypoints[..., 2] > 0).sum(-1)
    full = np.flatnonzero(n_lab == 17)
    perm = rng.permutation(full)
    train_full, test = perm[: len(perm) // 2], perm[len(perm) // 2:]
    partial = np.flatnonzero((n_lab >= 1) & (n_lab < 17))
    masks = persons.keypoints[partial, :, 2] > 0  # (P, 17) real visibility patterns
    pick = rng.integers(0, len(masks), size=(len(test), patterns))
    vis = masks[pick].reshape(-1, 17)  # (T * patterns, 17)
    idx = np.repeat(test, patterns)
    truth = persons.keypoints[idx].copy()
    observed = truth.copy()
    observed[~vis] = 0.0  # COCO stores unlabelled joints as (0, 0, 0)
    return dict(train_full=train_full, partial=partial, test=test, idx=idx, visible=vis,
                truth=truth, observed=observed)


def person_scale2(persons, idx: np.ndarray) -> np.ndarray:
    areas = persons.areas
    exact = ~np.isnan(areas)
    ratio = float(np.median(areas[exact] / (persons.boxes[exact, 2] * persons.boxes[exact, 3])))
    box_area = persons.boxes[idx, 2] * persons.boxes[idx, 3]
    s2 = np.where(np.isnan(areas[idx]), box_area * ratio, areas[idx])
    return s2, ratio


METHODS = {
    # name: keyword arguments of GaussianPosePrior.fit, and which persons it is fitted on
    "prior: paper (Gaussian, box frame)": (dict(condition_on_aspect=False), "full"),
    "prior: + flip augmentation": (dict(condition_on_aspect=False, flip=True), "full"),
    "prior: + flip + box aspect [shipped recipe]": (dict(flip=True), "full"),
    "prior: isotropic box frame + flip + aspect": (dict(flip=True, normalization="box_isotropic"), "full"),
    "prior: + partial persons by EM + flip + aspect": (dict(flip=True, min_visible=1), "all"),
}


def run_seed(persons, seed: int, patterns: int) -> dict:
    cases = make_cases(persons, seed, patterns)
    boxes = persons.boxes[cases["idx"]]
    s2, _ = person_scale2(persons, cases["idx"])
    sigmas = COCO17.sigmas_array()
    hidden = ~cases["visible"]
    truth = cases["truth"][..., :2]
    observed = cases["observed"]

    def score(filled_xy):
        return float(oks_terms(filled_xy, truth, s2, sigmas)[hidden].mean())

    fit_sets = {"full": persons.select(cases["train_full"]),
                "all": persons.select(np.concatenate([cases["train_full"], cases["partial"]]))}
    out = {"zero fill (official default)": score(np.where(hidden[..., None], 0.0, observed[..., :2]))}
    plain = GaussianPosePrior.fit(fit_sets["full"].keypoints, fit_sets["full"].boxes, condition_on_aspect=False)
    nothing = observed.copy()
    nothing[..., 2] = 0  # no joint visible: completion returns the mean pose in the person's box
    out["mean-pose fill (box frame)"] = score(np.where(hidden[..., None], plain.complete(nothing, boxes)[..., :2],
                                                       observed[..., :2]))
    for name, (kwargs, which) in METHODS.items():
        kwargs = dict(kwargs)
        flip = COCO17.flip_index if kwargs.pop("flip", False) else None
        data = fit_sets[which]
        prior = GaussianPosePrior.fit(data.keypoints, data.boxes, flip_index=flip, **kwargs)
        done = prior.complete(observed, boxes)
        if not np.array_equal(done[..., 2], observed[..., 2]) or not np.array_equal(
                done[cases["visible"]], observed[cases["visible"]]):
            raise AssertionError(f"{name}: completion changed visible joints or visibility flags")
        out[name] = score(done[..., :2])
    return dict(seed=seed, held_out_persons=int(len(cases["test"])), cases=int(len(cases["idx"])),
                hidden_joints=int(hidden.sum()), prior_train_full=int(len(cases["train_full"])),
                prior_train_partial=int(len(cases["partial"])), mean_oks_hidden=out)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", default=str(DEFAULT_ANN), help="COCO-17 keypoint JSON")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="each seed draws another held-out half and other occlusion patterns")
    ap.add_argument("--patterns", type=int, default=20, help="occlusion patterns per held-out person")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    t0 = time.time()
    persons = load_person_arrays(args.annotations)
    runs = [run_seed(persons, seed, args.patterns) for seed in tqdm(args.seeds, desc="seeds")]
    names = list(runs[0]["mean_oks_hidden"])
    table = {}
    for name in names:
        vals = np.array([r["mean_oks_hidden"][name] for r in runs])
        table[name] = dict(mean=float(vals.mean()), std=float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
    _, ratio = person_scale2(persons, np.arange(len(persons)))
    result = dict(
        benchmark="completion",
        annotations=str(args.annotations),
        seeds=args.seeds,
        patterns_per_person=args.patterns,
        area_box_ratio=ratio,
        table=table,
        runs=runs,
        target=dict(method="prior: + flip + box aspect [shipped recipe]", mean_oks_hidden_at_least=0.65),
        seconds=round(time.time() - t0, 1),
        machine=machine_info(),
    )
    r0 = runs[0]
    print(f"Completion of hidden COCO joints ({r0['held_out_persons']} held-out fully labelled persons x "
          f"{args.patterns} real occlusion patterns = {r0['cases']} cases per seed, ~{r0['hidden_joints']} hidden "
          f"joints; priors fitted on the other {r0['prior_train_full']} fully labelled persons)")
    w = max(len(n) for n in names)
    head = f"mean OKS, hidden joints ({len(args.seeds)} seeds)"
    print(f"| {'method':<{w}} | {head} |")
    print(f"|{'-' * (w + 2)}|{'-' * (len(head) + 2)}|")
    for name in names:
        print(f"| {name:<{w}} | {table[name]['mean']:.3f} ± {table[name]['std']:.3f}".ljust(w + 5 + len(head)) + " |")
    print(f"({result['seconds']} s)")
    return save_result(result, args.out)


if __name__ == "__main__":
    main()
