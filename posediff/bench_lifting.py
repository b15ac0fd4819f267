"""``posediff bench`` for lifting recipes: DiffPose against its Baseline A, same data, budget and seeds.

    posediff bench --dataset mocaplift --preset quick                     # 1 seed, minutes on 2 CPU cores
    posediff bench --dataset mocaplift --preset standard --seeds 0 1 2
    posediff bench --dataset h36m --data-root DIR --recipes lifting_baseline diffpose

Protocol: for each seed, the context encoder is trained alone first (``lifting_context``, for video recipes
over their T frames) and frozen; every compared recipe then trains its head on that same encoder
(``model.context_weights``) for the same steps, with the same data and seed, as the paper pretrains and
freezes its context encoder. ``lifting_context`` itself may be listed: its runs are the encoders.

Scored on the test split (MocapLift's test subjects, or Human3.6M S9 and S11): P1 and P2 in millimetres of the
mean hypothesis, as the mean over actions of the per-action means; best-of-N (an oracle that looks at the
target, labelled as such); P1 against the DDIM steps and against N; throughput in poses per second (batched,
this machine); the cost of one hypothesis-step against one baseline pass; a picture of hypotheses in 3D.

The output folder holds ``results.json``, ``report.md``, ``plots/`` and ``hypotheses.png``; each run lives in
``runs/RECIPE/seedS`` and resumes, its scores kept in ``bench.json``, so a rerun recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .io import write_json

__all__ = ["LiftingPreset", "LIFTING_PRESETS", "run_lifting_bench"]


@dataclass(frozen=True)
class LiftingPreset:
    """One lifting protocol: the context encoder's and the heads' budgets, what is measured."""

    name: str
    recipes: tuple[str, ...] = ("lifting_baseline", "diffpose")
    context_steps: int = 4000
    train_steps: int = 2000
    lr: float = 1e-3
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)
    train_size: int | None = None  # first training poses (None: all)
    test_size: int | None = None  # first test poses (None: all)
    val_size: int | None = 500
    sampling_steps: tuple[int, ...] = (1, 2, 5, 10)
    hypothesis_counts: tuple[int, ...] = (1, 2, 5, 10, 20)
    sweep_size: int = 500  # test poses for the step and N sweeps
    speed_batch: int = 256

    @property
    def lr_drop(self) -> tuple[int, ...]:
        return (int(self.train_steps * 0.8),)


LIFTING_PRESETS = {
    "quick": LiftingPreset("quick", context_steps=1500, train_steps=600, seeds=(0,), test_size=1000,
                           val_size=200, sampling_steps=(1, 5), hypothesis_counts=(1, 5), sweep_size=300),
    "standard": LiftingPreset("standard"),
}

BENCH_FILES = ("bench_config.json", "results.json", "report.md", "hypotheses.png", "plots/p1_vs_steps.png",
               "plots/p1_vs_hypotheses.png")


def _context_recipe_overrides(recipe: str, model: dict) -> dict:
    """The context encoder a recipe runs on: the same ``context``, ``frames`` and sizes as its own config."""
    from .registry import get_config

    cfg = get_config(recipe, **model)
    keep = ("context", "frames", "context_dim", "context_blocks", "context_depth", "heads", "dropout", "num_joints")
    return {k: getattr(cfg, k) for k in keep}


def _data(dataset: str, data_root: str | None, preset: LiftingPreset, seed: int, overrides: tuple[str, ...] = ()):
    """The runs' data config, with the ``--set data.FIELD=...`` overrides (so that the test split the bench
    scores is drawn as the training data is: MocapLift's detector model; Human3.6M's 2D file, by default the CPN
    detections, ``data.positions_2d=ROOT/data_2d_h36m_gt.npz`` for ground truth)."""
    from .engine.config import TrainConfig, apply_overrides
    from .tasks.lifting import LiftingData

    common = dict(train_size=preset.train_size, val_size=preset.val_size)
    if dataset == "mocaplift":
        data = LiftingData(kind="mocaplift", seed=seed, **common)
    else:
        if not data_root:
            raise ValueError("--dataset h36m reads VideoPose3D's files from --data-root (data_3d_h36m.npz and "
                             "data_2d_h36m_cpn_ft_h36m_dbb.npz)")
        root = Path(data_root)
        data = LiftingData(kind="h36m", positions_3d=str(root / "data_3d_h36m.npz"),
                           positions_2d=str(root / "data_2d_h36m_cpn_ft_h36m_dbb.npz"), **common)
    items = [o for o in overrides if o.split("=", 1)[0].startswith("data.")]
    return apply_overrides(TrainConfig(recipe=preset.recipes[0], data=data), items).data if items else data


def _test_set(data, frames: int):
    """The test split the bench scores (MocapLift's test subjects, or Human3.6M's S9 and S11)."""
    if data.kind == "mocaplift":
        from .data.mocaplift import MocapLift, MocapLiftConfig

        look = MocapLiftConfig(noise=data.noise, swap_prob=data.swap_prob, snap_prob=data.snap_prob)
        return MocapLift("test", seed=data.seed, frames=frames, config=look)
    from .data.h36m import H36MLifting

    return H36MLifting(data.positions_3d, data.positions_2d, "test", frames=frames)


def _subset(ds, n: int | None):
    """``n`` items of ``ds`` evenly spaced through it (all when None): every action and subject represented."""
    if n is None or n >= len(ds):
        return ds
    return torch.utils.data.Subset(ds, np.linspace(0, len(ds) - 1, n).round().astype(np.int64).tolist())


SPEED_VERSION = 3  # records measured by an earlier bench are measured again (their weights still there)


def _speed(model, ds, batch: int) -> dict:
    """Poses per second (batched, end to end) and the cost of each part per pose, in ms: the context encoder;
    one pass of the head's network (the baseline's whole head; for DiffPose one denoising step of one hypothesis
    would cost this at the same rows); for a diffusion head also the GMM fit, the sampling (fit included) and
    from them one hypothesis-step, (sampling − fit) / (N · steps), and its ratio to the pass."""
    from .tasks.lifting import collate_lifting

    b = collate_lifting([ds[i] for i in range(min(batch, len(ds)))])
    kp, unc = b["keypoints_2d"], b["uncertainty"]
    n = len(kp)
    gen = torch.Generator().manual_seed(0)

    def ms(fn, repeat=3):  # per pose, after one warm-up call
        fn()
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        return 1000 * (time.perf_counter() - t) / repeat / n

    with torch.no_grad():
        total = ms(lambda: model.predict(kp, unc, generator=gen))
        features, xyz = model.encode(kp)
        out = {"version": SPEED_VERSION, "batch": n, "poses_per_s": 1000 / total, "ms_per_pose": total,
               "context_ms_per_pose": ms(lambda: model.encode(kp))}
        head = model.head
        if head is None:
            return out
        if head.deterministic:
            out["head_pass_ms_per_pose"] = ms(lambda: head.sample(features, xyz, kp, unc))
            return out
        state = head.state_point(kp, unc, xyz)                                   # (B, J, D)
        t = torch.full((n,), head.scheduler.config.num_train_timesteps - 1, dtype=torch.long)
        out["head_pass_ms_per_pose"] = ms(lambda: head.denoiser(state, t, features))
        out["gmm_fit_ms_per_pose"] = ms(lambda: head.fit_gmm(kp, unc, xyz, gen), 1)
        out["sampling_ms_per_pose"] = ms(lambda: head.sample(features, xyz, kp, unc, generator=gen), 1)
        steps = len(head.timesteps) if head.timesteps else head.steps
        out["hypotheses"], out["steps"] = head.hypotheses, steps
        step = (out["sampling_ms_per_pose"] - (out["gmm_fit_ms_per_pose"] if head.test_start == "gmm" else 0.0)) \
            / (head.hypotheses * steps)
        out["hypothesis_step_ms_per_pose"] = step
        out["step_vs_pass"] = step / out["head_pass_ms_per_pose"]
    return out


def _evaluate(model, test_ds, preset: LiftingPreset, deterministic: bool) -> dict:
    from .tasks.lifting import predict_poses, score_poses

    pred = predict_poses(model, test_ds, batch_size=preset.speed_batch, progress=True)
    record = {"test": score_poses(pred["hypotheses"], pred["targets"], pred["actions"])}
    if not deterministic:
        sweep = _subset(test_ds, preset.sweep_size)
        record["p1_vs_steps"] = {}
        for s in preset.sampling_steps if model.head.timesteps is None else ():  # explicit timesteps: no sweep
            p = predict_poses(model, sweep, batch_size=preset.speed_batch, steps=s)
            record["p1_vs_steps"][str(s)] = score_poses(p["hypotheses"], p["targets"], p["actions"])["P1"]
        record["p1_vs_hypotheses"] = {}
        for n in preset.hypothesis_counts:
            p = predict_poses(model, sweep, batch_size=preset.speed_batch, hypotheses=n)
            sc = score_poses(p["hypotheses"], p["targets"], p["actions"])
            record["p1_vs_hypotheses"][str(n)] = {"P1": sc["P1"], "P1_best": sc["P1_best"]}
        record["examples"] = {"hypotheses": pred["hypotheses"][:64].round(1).tolist(),
                              "targets": pred["targets"][:64].round(1).tolist()}
    record["speed"] = _speed(model, test_ds, preset.speed_batch)
    return record


def _run(recipe: str, seed: int, model: dict, data, preset: LiftingPreset, out: Path, steps: int, workers: int,
         overrides: tuple[str, ...]) -> tuple[dict, Path]:
    """Train (or resume, or find finished) one run; returns its result and its newest weights."""
    from .engine.checkpoint import latest_checkpoint
    from .engine.config import TrainConfig, apply_overrides
    from .engine.train import train

    cfg = TrainConfig(recipe=recipe, model=model, data=data, out=str(out), seed=seed, batch_size=preset.batch_size,
                      lr=preset.lr, weight_decay=1e-4, clip_grad=1.0, max_steps=steps, lr_drop=(int(steps * 0.8),),
                      ckpt_every=max(steps // 4, 1), eval_every=max(steps // 4, 1), workers=workers)
    cfg = apply_overrides(cfg, list(overrides))
    done = out / "result.json"
    if done.is_file() and json.loads(done.read_text()).get("steps") == cfg.max_steps:
        result = json.loads(done.read_text())
    else:
        result = train(cfg, resume=True)
    weights, _ = latest_checkpoint(out)
    return result, weights


def run_lifting_bench(recipes, preset_name: str = "quick", dataset: str = "mocaplift", data_root: str | None = None,
                      seeds=None, out=None, train_steps: int | None = None, test_size: int | None = None,
                      workers: int = 0, overrides: tuple[str, ...] = (), command: str | None = None,
                      report_only: bool = False, retime: bool = False) -> dict:
    """Run the lifting head-to-head (see the module docstring); returns ``results.json``'s content.

    ``report_only``: train and score nothing; report the (recipe, seed) runs of ``out`` that have a record.
    ``retime``: measure every run's speed again (one machine and load for the whole table)."""
    from . import __version__
    from .engine.checkpoint import load_model
    from .env import machine_info
    from .io import OutputFolder
    from .registry import get_config
    from .tasks import task_name

    if report_only and retime:
        raise ValueError("--retime measures the runs again, which --report-only does not load; give --retime alone "
                         "(finished runs are not trained again)")
    if preset_name not in LIFTING_PRESETS:
        raise ValueError(f"--preset {preset_name}: the lifting presets are {sorted(LIFTING_PRESETS)}")
    preset = LIFTING_PRESETS[preset_name]
    preset = dataclasses.replace(preset, **{k: v for k, v in dict(
        recipes=tuple(recipes) if recipes else None, seeds=tuple(seeds) if seeds else None,
        train_steps=train_steps, test_size=test_size).items() if v is not None})
    others = [r for r in preset.recipes if task_name(r) != "lifting"]
    if others:
        raise ValueError(f"--recipes: {others} are not lifting recipes; bench them apart from the lifting ones")
    out = Path(out or f"runs/bench/{preset.name}_{dataset}")
    folder = OutputFolder(out, "--out")
    folder.check(BENCH_FILES)
    wanted = dict(preset=dataclasses.asdict(preset), dataset=dataset, data_root=data_root,
                  overrides=list(overrides))
    stamp = out / "bench_config.json"
    if stamp.is_file():  # the protocol; a folder's recipes and seeds may be benched in several calls
        have = json.loads(stamp.read_text())

        def protocol(d: dict) -> dict:
            return {**d, "preset": {k: v for k, v in d.get("preset", {}).items() if k not in ("recipes", "seeds")}}

        if protocol(have) != protocol(json.loads(json.dumps(wanted))):
            raise ValueError(f"{stamp}: this folder holds a lifting bench with other settings; use another --out or "
                             f"delete the folder")
        for k in ("recipes", "seeds"):  # the stamp keeps the union
            wanted["preset"][k] = list(dict.fromkeys([*have["preset"].get(k, []), *wanted["preset"][k]]))
    folder.claim(BENCH_FILES)
    write_json(wanted, stamp)
    t0 = time.time()
    records = []
    if report_only:
        records = _recorded(out, preset)
    for seed in () if report_only else preset.seeds:
        data = _data(dataset, data_root, preset, seed, overrides)
        encoders: dict[tuple, Path] = {}
        for recipe in preset.recipes:
            model = {}
            ctx = _context_recipe_overrides(recipe, model)
            key = tuple(sorted(ctx.items()))
            if key not in encoders:
                name = "lifting_context" + ("" if ctx["frames"] == 1 else f"_T{ctx['frames']}")
                ctx_out = out / "runs" / name / f"seed{seed}"
                print(f"[seed {seed}] context encoder {name}", flush=True)
                _, encoders[key] = _run("lifting_context", seed, dict(ctx), data, preset, ctx_out,
                                        preset.context_steps, workers, overrides)
            run_out = out / "runs" / recipe / f"seed{seed}"
            record_path = run_out / "bench.json"
            if recipe == "lifting_context":
                weights = encoders[key]
                result = json.loads((out / "runs" / "lifting_context" / f"seed{seed}" / "result.json").read_text())
            else:
                print(f"[seed {seed}] {recipe}", flush=True)
                model = {"context_weights": str(encoders[key])}
                result, weights = _run(recipe, seed, model, data, preset, run_out, preset.train_steps, workers,
                                       overrides)
            record = json.loads(record_path.read_text()) if record_path.is_file() else None
            # timed again: with --retime, or when an earlier bench timed it otherwise
            retimed = record is not None and (retime or record.get("speed", {}).get("version") != SPEED_VERSION)
            if record is None or retimed:
                net = load_model(weights, context_weights="")
                test_ds = _subset(_test_set(data, get_config(recipe).frames), preset.test_size)
            if retimed:
                record["speed"] = _speed(net, test_ds, preset.speed_batch)
                write_json(record, record_path)
            if record is None:
                record = _evaluate(net, test_ds, preset, net.head is None or net.head.deterministic)
                record.update(recipe=recipe, seed=seed, params=sum(p.numel() for p in net.parameters()),
                              train_seconds=result.get("seconds"), val=result.get("metrics"))
                record_path.parent.mkdir(parents=True, exist_ok=True)
                write_json(record, record_path)
            records.append(record)
    results = dict(bench=wanted, command=command, runs=[{k: v for k, v in r.items() if k != "examples"}
                                                          for r in records],
                   summary=summarise(records), wall_seconds_this_call=round(time.time() - t0, 1),
                   machine=machine_info(), posediff=__version__, date=time.strftime("%Y-%m-%d %H:%M"))
    write_json(results, out / "results.json")
    plots = _plots(out, records)
    write_report(out, results, plots)
    print(format_table(results))
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}")
    return results


def _recorded(out: Path, preset: LiftingPreset) -> list[dict]:
    """The records of ``out``'s finished (recipe, seed) runs (``--report-only``); the others are listed."""
    from .bench import report_only_check

    found, left = [], []
    for seed in preset.seeds:
        for recipe in preset.recipes:
            path = out / "runs" / recipe / f"seed{seed}" / "bench.json"
            if path.is_file():
                found.append(json.loads(path.read_text()))
            else:
                left.append(f"{recipe} seed {seed}")
    report_only_check(out, found, left)
    return found


def _mean_std(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))} \
        if len(v) else {"mean": None, "std": None, "n": 0}


def p1_limit(p1_vs_hypotheses: dict) -> float | None:
    """P1 of the mean of N hypotheses as N → ∞, from P1 measured at several N: the mean's error is a bias plus
    the average of N independent deviations, so its mean square falls as a + c / N; least squares on P1² gives a,
    and √a the error no number of hypotheses removes (None with fewer than 3 counts)."""
    if len(p1_vs_hypotheses) < 3:
        return None
    n = np.array([int(k) for k in p1_vs_hypotheses], dtype=np.float64)
    y = np.array([v["P1"] for v in p1_vs_hypotheses.values()], dtype=np.float64) ** 2
    a, _ = np.linalg.lstsq(np.stack([np.ones_like(n), 1 / n], 1), y, rcond=None)[0]
    return float(np.sqrt(max(a, 0.0)))


def summarise(records: list[dict]) -> dict:
    """Per recipe: mean ± std over seeds of P1, P2, best-of-N, speed; and each recipe's P1 against the baseline's."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["recipe"], []).append(r)
    out = {}
    for recipe, rs in by.items():
        out[recipe] = {k: _mean_std([r["test"].get(k) for r in rs]) for k in ("P1", "P2", "P1_best", "P2_best",
                                                                              "P1_first", "spread")}
        out[recipe]["poses_per_s"] = _mean_std([r["speed"]["poses_per_s"] for r in rs])
        out[recipe]["step_vs_pass"] = _mean_std([r["speed"].get("step_vs_pass") for r in rs])
        out[recipe]["P1_limit"] = _mean_std([p1_limit(r.get("p1_vs_hypotheses", {})) for r in rs])
        out[recipe]["seeds"] = [r["seed"] for r in rs]
        actions = sorted(rs[0]["test"]["P1_per_action"])
        for key in ("P1_per_action", "P2_per_action", "P1_best_per_action"):
            if all(key in r["test"] for r in rs):
                out[recipe][key] = {a: _mean_std([r["test"][key][a] for r in rs])["mean"] for a in actions}
    if "lifting_baseline" in by:
        base = {r["seed"]: r["test"]["P1"] for r in by["lifting_baseline"]}
        for recipe, rs in by.items():
            ratios = [r["test"]["P1"] / base[r["seed"]] for r in rs if r["seed"] in base]
            best = [r["test"]["P1_best"] / base[r["seed"]] for r in rs if r["seed"] in base]
            out[recipe]["P1_vs_baseline"] = _mean_std(ratios)
            out[recipe]["P1_best_vs_baseline"] = _mean_std(best)
    if "diffpose" in by:  # the video recipes and the diffusion-off control against the frame model, seed by seed
        frame = {r["seed"]: r["test"]["P1"] for r in by["diffpose"]}
        for recipe, rs in by.items():
            if recipe.startswith("diffpose_video") or recipe == "diffpose_control":
                out[recipe]["P1_vs_diffpose"] = _mean_std([r["test"]["P1"] / frame[r["seed"]] for r in rs
                                                           if r["seed"] in frame])
    return out


def _verdicts(summary: dict) -> list[str]:
    """The paper's comparisons, per seed then mean ± std over seeds: DiffPose's P1 and best-of-N against Baseline
    A's (the paper: 0.96 for frames), the video model's P1 against the frame model's; and the diffusion-off
    control's against DiffPose's (above 1: the reverse process helps)."""
    lines = []
    for recipe, s in summary.items():
        if recipe == "lifting_baseline" or s.get("P1_vs_baseline", {}).get("n", 0) == 0:
            continue
        lines.append(f"- {recipe}: P1 / lifting_baseline's = {_pm(s['P1_vs_baseline'], 3)}; best-of-N P1 (oracle) "
                     f"/ lifting_baseline's P1 = {_pm(s['P1_best_vs_baseline'], 3)}")
        if s.get("P1_vs_diffpose", {}).get("n"):
            lines.append(f"- {recipe}: P1 / diffpose's = {_pm(s['P1_vs_diffpose'], 3)}")
    return ["## Against the baseline", "", "Ratios of P1 taken seed by seed (each seed's recipes share its data "
            "and context encoder), mean ± std over seeds:", "", *lines, ""] if lines else []


def _pm(v: dict, digits: int = 1) -> str:
    if v.get("mean") is None:
        return "-"
    return f"{v['mean']:.{digits}f}" + (f" ± {v['std']:.{digits}f}" if v["n"] > 1 else "")


def format_table(results: dict) -> str:
    rows = ["| recipe | seeds | P1 (mm) | P2 (mm) | best-of-N P1 (oracle) | P1 / baseline | poses/s |",
            "|---|---|---|---|---|---|---|"]
    for recipe, s in results["summary"].items():
        rows.append(f"| {recipe} | {len(s['seeds'])} | {_pm(s['P1'])} | {_pm(s['P2'])} | {_pm(s['P1_best'])} | "
                    f"{_pm(s.get('P1_vs_baseline', {}), 3)} | {_pm(s['poses_per_s'], 0)} |")
    return "\n".join(rows)


def _plots(out: Path, records: list[dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import save_figure

    done = {}
    for key, name, xlabel in (("p1_vs_steps", "plots/p1_vs_steps.png", "DDIM steps"),
                              ("p1_vs_hypotheses", "plots/p1_vs_hypotheses.png", "hypotheses N")):
        runs = [r for r in records if key in r]
        if not runs:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r in runs:
            xs = sorted(int(x) for x in r[key])
            ys = [r[key][str(x)] if key == "p1_vs_steps" else r[key][str(x)]["P1"] for x in xs]
            ax.plot(xs, ys, marker="o", label=f"{r['recipe']} seed {r['seed']}")
            if key == "p1_vs_hypotheses":
                ax.plot(xs, [r[key][str(x)]["P1_best"] for x in xs], marker="x", ls="--",
                        label=f"{r['recipe']} seed {r['seed']}, best-of-N (oracle)")
        for r in records:
            if r.get("recipe") == "lifting_baseline":
                ax.axhline(r["test"]["P1"], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("P1 (mm), mean over actions")
        ax.legend(fontsize=6)
        save_figure(fig, out / name)
        done[key] = name
    example = next((r for r in records if "examples" in r), None)
    if example is not None:
        _hypotheses_png(out / "hypotheses.png", example)
        done["hypotheses"] = "hypotheses.png"
    return done


def _hypotheses_png(path: Path, record: dict, n: int = 3) -> None:
    """Three test poses with the widest hypotheses: ground truth (black), hypotheses (colour), their mean."""
    import matplotlib.pyplot as plt

    from .skeletons import H36M17
    from .viz import save_figure

    hyps = np.asarray(record["examples"]["hypotheses"])                       # (E, H, J, 3) mm
    gt = np.asarray(record["examples"]["targets"])                            # (E, J, 3)
    spread = np.linalg.norm(hyps - hyps.mean(1, keepdims=True), axis=-1).mean((1, 2))
    pick = np.argsort(-spread)[:n]
    fig = plt.figure(figsize=(4 * n, 4))
    for k, i in enumerate(pick):
        ax = fig.add_subplot(1, n, k + 1, projection="3d")
        for pose, style in [(gt[i], dict(color="black", lw=2))] + [
                (h, dict(color=plt.cm.viridis(j / max(len(hyps[i]) - 1, 1)), lw=0.8, alpha=0.6))
                for j, h in enumerate(hyps[i])] + [(hyps[i].mean(0), dict(color="red", lw=1.5, ls="--"))]:
            for a, b in H36M17.limbs:  # camera frame: x right, y down, z forward -> plot x, z, -y
                ax.plot([pose[a, 0], pose[b, 0]], [pose[a, 2], pose[b, 2]], [-pose[a, 1], -pose[b, 1]], **style)
        ax.set_title(f"{record['recipe']}: test pose {i} (spread {spread[i]:.0f} mm)", fontsize=8)
        ax.set_xlabel("x")
        ax.set_ylabel("z (depth)")
        ax.set_zlabel("-y")
    fig.suptitle("black: ground truth; colours: hypotheses; red dashed: their mean", fontsize=9)
    save_figure(fig, path)


def write_report(out: Path, results: dict, plots: dict) -> None:
    from .bench import _machine_name

    b = results["bench"]
    lines = [f"# Lifting bench: {b['preset']['name']} on {b['dataset']}", "",
             f"{results['date']}, {_machine_name(results['machine'])}; command: `{results.get('command') or '-'}`", "",
             format_table(results), "",
             "P1 / P2: the mean hypothesis, mean over actions of the per-action means, mm; best-of-N: the lowest "
             "P1 among the hypotheses per pose, an oracle that looks at the ground truth. Spread over seeds: "
             "± one standard deviation.", ""]
    summary = results["summary"]
    lines += _verdicts(summary)
    actions = sorted({a for s in summary.values() for a in s["P1_per_action"]})
    for key, title in (("P1_per_action", "P1 per action (mm)"), ("P2_per_action", "P2 per action (mm)"),
                       ("P1_best_per_action", "Best-of-N P1 per action (mm, oracle)")):
        rows = [(recipe, s[key]) for recipe, s in summary.items() if key in s]
        if not rows:
            continue
        lines += [f"## {title}", "", "| recipe | " + " | ".join(actions) + " |", "|---|" + "---|" * len(actions)]
        lines += [f"| {recipe} | " + " | ".join(f"{v.get(a, float('nan')):.1f}" for a in actions) + " |"
                  for recipe, v in rows]
        lines.append("")

    limits = [(recipe, s["P1_limit"]) for recipe, s in summary.items() if s.get("P1_limit", {}).get("n")]
    if limits:
        lines += ["## What more hypotheses could give", "",
                  "P1 of the mean of N hypotheses, measured at each N of the sweep, falls as its mean square "
                  "a + c / N (a bias and N averaged deviations); √a, fitted per run, is the P1 no number of "
                  "hypotheses removes:", "", "| recipe | P1, N → ∞ (fit) | P1 at the recipe's N |", "|---|---|---|"]
        lines += [f"| {recipe} | {_pm(v)} | {_pm(summary[recipe]['P1'])} |" for recipe, v in limits]
        lines.append("")

    def cell(sp: dict, key: str, digits: int = 3) -> str:
        return f"{sp[key]:.{digits}f}" if key in sp else "-"

    lines += ["## Speed (batched, this machine)", "",
              "ms per pose at a batch of poses; a head pass: one run of the head's network on the batch (all of "
              "the baseline's head); a hypothesis-step: DiffPose's sampling less its GMM fit, divided by "
              "hypotheses × steps.", "",
              "| recipe | seed | poses/s | ms/pose | context | head pass | GMM fit | sampling | hypothesis-step | "
              "hypothesis-step / head pass |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        sp = r["speed"]
        lines.append(f"| {r['recipe']} | {r['seed']} | {sp['poses_per_s']:.0f} | {sp['ms_per_pose']:.3f} | "
                     f"{sp['context_ms_per_pose']:.3f} | {cell(sp, 'head_pass_ms_per_pose')} | "
                     f"{cell(sp, 'gmm_fit_ms_per_pose')} | {cell(sp, 'sampling_ms_per_pose')} | "
                     f"{cell(sp, 'hypothesis_step_ms_per_pose')} | {cell(sp, 'step_vs_pass', 2)} |")
    for key, title in (("p1_vs_steps", "P1 against DDIM steps"), ("p1_vs_hypotheses", "P1 against N"),
                       ("hypotheses", "Hypotheses in 3D")):
        if key in plots:
            lines += ["", f"## {title}", "", f"![{title}]({plots[key]})"]
    p = b["preset"]
    lines += ["", "## Protocol", "",
              f"Per seed ({', '.join(map(str, p['seeds']))}): `lifting_context` trained alone for "
              f"{p['context_steps']} steps, then frozen; each recipe's head trained on it for {p['train_steps']} "
              f"steps (batch {p['batch_size']}, AdamW lr {p['lr']}, x0.1 at 80%). Test poses: "
              f"{'all' if p['test_size'] is None else p['test_size']}, evenly spaced through the split; sweeps "
              f"on {p['sweep_size']} of them, likewise."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
