"""The lifting bench: a shared frozen context per seed, both heads on it, scores, sweeps, speed, report."""

import json
import math

import pytest

from posediff import bench_lifting
from posediff.bench_lifting import LiftingPreset, run_lifting_bench

SMALL = ("model.dim=32", "model.context_dim=32", "model.blocks=1", "model.context_blocks=1", "model.heads=2",
         "model.gmm_samples=64", "model.em_iterations=2")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lb")
    tiny = LiftingPreset("tiny", context_steps=6, train_steps=4, batch_size=32, seeds=(0, 1), train_size=128,
                         test_size=40, val_size=16, sampling_steps=(1, 2), hypothesis_counts=(1, 3), sweep_size=16,
                         speed_batch=16)
    patch = pytest.MonkeyPatch()
    patch.setitem(bench_lifting.LIFTING_PRESETS, "tiny", tiny)
    results = run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", out=str(tmp / "b"), overrides=SMALL)
    yield tmp, results
    patch.undo()


def test_heads_share_the_seeds_context_and_are_scored(bench):
    tmp, results = bench
    runs = tmp / "b" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["diffpose", "lifting_baseline", "lifting_context"]
    for seed in (0, 1):
        ctx = str(runs / "lifting_context" / f"seed{seed}" / "step_0000006.safetensors")
        for recipe in ("lifting_baseline", "diffpose"):
            cfg = json.loads((runs / recipe / f"seed{seed}" / "config.json").read_text())["config"]
            assert cfg["model"]["context_weights"] == ctx and cfg["seed"] == seed
    s = results["summary"]
    assert s["diffpose"]["P1"]["n"] == 2 and s["diffpose"]["P1_vs_baseline"]["n"] == 2
    assert s["lifting_baseline"]["P1_vs_baseline"]["mean"] == pytest.approx(1.0)
    diff = next(r for r in results["runs"] if r["recipe"] == "diffpose")
    assert set(diff["p1_vs_steps"]) == {"1", "2"} and set(diff["p1_vs_hypotheses"]) == {"1", "3"}
    assert diff["speed"]["gmm_fit_ms_per_pose"] > 0 and diff["test"]["poses"] == 40
    sp = diff["speed"]
    assert sp["hypothesis_step_ms_per_pose"] == pytest.approx(
        (sp["sampling_ms_per_pose"] - sp["gmm_fit_ms_per_pose"]) / (sp["hypotheses"] * sp["steps"]))
    assert math.isfinite(sp["step_vs_pass"]) and s["diffpose"]["step_vs_pass"]["n"] == 2  # a timing: no sign test
    assert "hypothesis-step / head pass" in (tmp / "b" / "report.md").read_text()
    report = (tmp / "b" / "report.md").read_text()
    assert "| diffpose | 2 |" in report and "## P1 per action (mm)" in report and "## P2 per action (mm)" in report
    assert "## Best-of-N P1 per action (mm, oracle)" in report
    assert "- diffpose: P1 / lifting_baseline's = " in report
    assert (tmp / "b" / "hypotheses.png").stat().st_size > 5000
    assert (tmp / "b" / "plots" / "p1_vs_steps.png").stat().st_size > 5000


def test_rerun_recomputes_nothing(bench, monkeypatch):
    tmp, results = bench
    import sys

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    again = run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", out=str(tmp / "b"), overrides=SMALL)
    assert again["summary"] == results["summary"]


def test_a_subset_of_recipes_and_seeds_reports_from_the_same_folder(bench, monkeypatch, tmp_path):
    import shutil
    import sys

    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    again = run_lifting_bench(["lifting_baseline"], "tiny", seeds=(1,), out=str(tmp_path / "b"), overrides=SMALL)
    assert set(again["summary"]) == {"lifting_baseline"} and [r["seed"] for r in again["runs"]] == [1]
    stamp = json.loads((tmp_path / "b" / "bench_config.json").read_text())
    assert stamp["preset"]["recipes"] == ["lifting_baseline", "diffpose"] and stamp["preset"]["seeds"] == [0, 1]


def test_report_only_reports_the_recorded_runs_and_trains_none(bench, monkeypatch, tmp_path, capsys):
    import shutil
    import sys

    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "runs" / "diffpose" / "seed1")  # as if still training

    def refuse(*a, **k):
        raise AssertionError("--report-only trained or loaded a model")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    monkeypatch.setattr(sys.modules["posediff.engine.checkpoint"], "load_model", refuse)
    again = run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", out=str(tmp_path / "b"), overrides=SMALL,
                              report_only=True)
    assert sorted((r["recipe"], r["seed"]) for r in again["runs"]) == [
        ("diffpose", 0), ("lifting_baseline", 0), ("lifting_baseline", 1)]
    assert again["summary"]["lifting_baseline"]["P1"] == results["summary"]["lifting_baseline"]["P1"]
    assert "left out of the report: diffpose seed 1" in capsys.readouterr().out
    assert (tmp_path / "b" / "report.md").is_file()


@pytest.mark.parametrize("recipe", ["diffpose", "diffpose_released"])
def test_speed_of_each_diffpose_state(recipe):
    """The bench times a head pass in the state the head diffuses (xyz, or the released code's uvxyz)."""
    from posediff import create_model
    from posediff.data.mocaplift import MocapLift

    model = create_model(recipe, dim=16, context_dim=16, blocks=1, context_blocks=1, heads=2, gmm_samples=32,
                         em_iterations=1).eval()
    sp = bench_lifting._speed(model, MocapLift("test", size=8), 8)
    assert sp["head_pass_ms_per_pose"] > 0 and math.isfinite(sp["step_vs_pass"])  # a timing: its size is the bench's
    assert sp["steps"] == (len(model.head.timesteps) if model.head.timesteps else model.head.steps)


def test_retime_measures_the_speed_again(bench, monkeypatch, tmp_path):
    import shutil
    import sys

    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")
    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train",
                        lambda *a, **k: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(bench_lifting, "_speed", lambda model, ds, batch: {"version": bench_lifting.SPEED_VERSION,
                                                                          "poses_per_s": 7.0, "ms_per_pose": 1.0,
                                                                          "context_ms_per_pose": 0.1})
    again = run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", out=str(tmp_path / "b"), overrides=SMALL,
                              retime=True)
    assert all(r["speed"]["poses_per_s"] == 7.0 for r in again["runs"])
    assert again["summary"]["diffpose"]["P1"] == results["summary"]["diffpose"]["P1"]
    with pytest.raises(ValueError, match="--retime measures the runs again"):
        run_lifting_bench(["lifting_baseline"], "tiny", out=str(tmp_path / "b"), overrides=SMALL, retime=True,
                          report_only=True)


def test_other_settings_and_other_recipes_are_refused(bench):
    tmp, _ = bench
    with pytest.raises(ValueError, match="other settings"):
        run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", out=str(tmp / "b"), overrides=SMALL[:-1])
    with pytest.raises(ValueError, match="not lifting recipes"):
        run_lifting_bench(["edpose_tiny"], "tiny", out=str(tmp / "c"))


def test_one_stage_flags_are_refused_for_lifting():
    from posediff.bench import main

    with pytest.raises(ValueError, match="--steps: not options of the lifting bench"):
        main(["--dataset", "mocaplift", "--steps", "1", "2"])


def test_human36m_files_train_and_score_through_the_bench(tmp_path, monkeypatch):
    """``--dataset h36m`` on files in VideoPose3D's format (every subject a few poses of the real fixture frames,
    their 2D projected by that subject's real cameras), the 2D file chosen by ``--set data.positions_2d`` for
    training and for the test split alike."""
    from pathlib import Path

    import numpy as np

    from posediff.data.h36m import CAMERA_IDS, TEST_SUBJECTS, TRAIN_SUBJECTS, load_cameras, load_positions_3d

    fixture = load_positions_3d(Path(__file__).parents[1] / "data" / "h36m" / "data_3d_h36m.npz")
    world = np.concatenate([a for actions in fixture.values() for a in actions.values()])  # (F, 17, 3) metres
    rng = np.random.default_rng(0)
    world = np.concatenate([world + rng.normal(0, 0.02, world.shape) for _ in range(4)])
    cams = load_cameras()
    p3d, p2d = {}, {}
    for s in TRAIN_SUBJECTS + TEST_SUBJECTS:
        p3d[s] = {"Walking 1": world, "Eating": world[::-1].copy()}
        p2d[s] = {a: [cams[(s, c)].project(cams[(s, c)].world_to_camera(w)).astype(np.float32) for c in CAMERA_IDS]
                  for a, w in p3d[s].items()}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=p3d)
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d=p2d)  # no CPN file: the override must be read
    tiny = LiftingPreset("tiny", context_steps=4, train_steps=3, batch_size=16, seeds=(0,), test_size=None,
                         val_size=None, sampling_steps=(1,), hypothesis_counts=(2,), sweep_size=8, speed_batch=8)
    monkeypatch.setitem(bench_lifting.LIFTING_PRESETS, "tiny", tiny)
    results = run_lifting_bench(["lifting_baseline", "diffpose"], "tiny", dataset="h36m", data_root=str(tmp_path),
                                out=str(tmp_path / "b"),
                                overrides=SMALL + (f"data.positions_2d={tmp_path / 'data_2d_h36m_gt.npz'}",))
    runs = {r["recipe"]: r for r in results["runs"]}
    n_test = len(TEST_SUBJECTS) * len(CAMERA_IDS) * 2 * len(world)
    assert runs["diffpose"]["test"]["poses"] == runs["lifting_baseline"]["test"]["poses"] == n_test
    assert set(runs["diffpose"]["test"]["P1_per_action"]) == {"Walking", "Eating"}
    assert 0 < runs["lifting_baseline"]["test"]["P1"] < 2000


def test_p1_limit_recovers_the_error_more_hypotheses_cannot_remove():
    import numpy as np

    bias2, spread2 = 80.0 ** 2, 55.0 ** 2  # mean square error of the mean of N: bias² + spread² / N
    sweep = {str(n): {"P1": float(np.sqrt(bias2 + spread2 / n))} for n in (1, 2, 5, 20)}
    assert bench_lifting.p1_limit(sweep) == pytest.approx(80.0)
    assert bench_lifting.p1_limit({"1": {"P1": 90.0}, "5": {"P1": 85.0}}) is None  # two counts fit nothing


def test_the_video_model_is_compared_with_the_frame_model_seed_by_seed():
    def record(recipe, seed, p1):
        test = {"P1": p1, "P2": p1 * 0.8, "P1_best": p1, "P2_best": p1 * 0.8, "P1_first": p1, "spread": 0.0,
                "P1_per_action": {"walk": p1}}
        return {"recipe": recipe, "seed": seed, "test": test, "speed": {"poses_per_s": 1.0}}

    records = [record("lifting_baseline", 0, 100.0), record("lifting_baseline", 1, 110.0),
               record("diffpose", 0, 90.0), record("diffpose", 1, 100.0),
               record("diffpose_video_tiny", 0, 81.0), record("diffpose_video_tiny", 1, 95.0)]
    s = bench_lifting.summarise(records)
    assert s["diffpose_video_tiny"]["P1_vs_diffpose"]["mean"] == pytest.approx((0.9 + 0.95) / 2)
    assert s["diffpose"]["P1_vs_baseline"]["mean"] == pytest.approx((0.9 + 100 / 110) / 2)
    assert "- diffpose_video_tiny: P1 / diffpose's = 0.925 ± 0.035" in "\n".join(bench_lifting._verdicts(s))
