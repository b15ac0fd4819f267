"""``posediff bench`` end to end on a tiny SynthCrowd: tables, JSON, report, plots, resumption."""

import json
import shutil
import sys

import pytest

from posediff.bench import BenchSpec, main, run_bench

TINY = ("data.num_images=30", "data.size=96", "data.train_scales=(96,)", "data.crop_scales=(96,)",
        "data.crop_size=(64,96)", "data.max_size=128")  # evaluated at 96, the largest training scale


def spec(tmp_path, **kw):
    base = dict(preset="quick", init="scratch", seeds=(0, 1), steps=(1, 2), train_steps=3, out=str(tmp_path / "b"),
                data_root=str(tmp_path / "sc"), overrides=TINY)
    return BenchSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import dataclasses

    import posediff.bench as bench_module

    tmp = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:  # quick measures no hypotheses; here: 2 samples of the 3 test images
        mp.setitem(bench_module.PRESETS, "quick", dataclasses.replace(
            bench_module.PRESETS["quick"], hypotheses_images=3, hypotheses_counts=(1, 2), nms_thresholds=(0.5, 0.9)))
        return tmp, run_bench(spec(tmp))


def test_results_json(bench):
    tmp, results = bench
    saved = json.loads((tmp / "b" / "results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(results["summary"]))
    runs = saved["runs"]
    assert sorted((r["recipe"], r["seed"]) for r in runs) == [
        ("diffusion_regpose_tiny", 0), ("diffusion_regpose_tiny", 1), ("edpose_tiny", 0), ("edpose_tiny", 1)]
    for r in runs:
        assert {"AP", "AP50", "AP75", "AR", "AP_E", "AP_M", "AP_H"} <= set(r["metrics"])
        assert set(r["metrics_all_formats"]) == {"coco", "crowdpose"}
        assert r["train_steps"] == 3 and r["latency_ms"]["median"] > 0 and r["params_M"] > 1
        if r["recipe"].startswith("diffusion"):
            assert set(r["per_sampling_steps"]) == {"1", "2", "4"}  # asked for 1, 2; 4 is the recipe's default
            assert r["sampling_steps"] == 4
        else:
            assert r["per_sampling_steps"] == {} and r["sampling_steps"] is None
    row = saved["summary"]["edpose_tiny"]
    assert row["seeds"] == [0, 1] and set(row["AP"]) == {"mean", "std"}
    assert {"machine", "config", "preset", "bench"} <= set(saved)
    assert all(r["machine"] == saved["machine"] for r in runs)  # where each latency was measured
    assert saved["bench"]["eval_size"] == 96
    for r in runs:  # several hypotheses per person: a one-pass recipe samples once, its best-of-S flat
        h = r["hypotheses"]
        assert h["counts"] == [1, 2] and h["images"] == 3 and h["samples"] == (2 if r["sampling_steps"] else 1)
        if h["persons"] and not r["sampling_steps"]:
            assert h["best_oks"][0] == h["best_oks"][1]
        if r["sampling_steps"]:  # val AP at each NMS threshold, what the threshold is chosen by
            assert set(r["nms_sweep"]["val_ap"]) == {"0.5", "0.9"} and r["nms_sweep"]["model_threshold"] == 0.9
            if r["nms_sweep"]["best"] == "0.5":  # the test split at val's choice too
                assert r["nms_chosen"]["threshold"] == 0.5 and "AP" in r["nms_chosen"]["metrics"]
            else:
                assert r["nms_chosen"] is None
        else:
            assert r["nms_sweep"] is None and r["nms_chosen"] is None
        alike = r["lr_alike"]  # the same images with left and right drawn alike
        assert alike["images"] == 3 and {"swap_share", "both_assignments"} <= set(alike)
        if not r["sampling_steps"] and alike["both_assignments"] is not None:
            assert alike["both_assignments"] == 0.0  # one hypothesis S times: never both


def test_report_and_plots(bench):
    tmp, _ = bench
    out = tmp / "b"
    report = (out / "report.md").read_text()
    assert "| recipe | steps | AP | AP50 | AP75 | AR | AP_E | AP_M | AP_H |" in report
    assert "| edpose_tiny |" in report and "| diffusion_regpose_tiny | 4 |" in report
    assert "test split (3 images, shorter side 96 px)" in report
    assert "AP is the average precision over OKS thresholds 0.50" in report and "over 3 test images" in report
    assert "another machine" not in report
    assert "## Several hypotheses per person" in report and "| edpose_tiny | occluded (2 seeds) |" in report
    assert "**Left and right drawn alike.**" in report and "## Pose-NMS threshold" in report
    assert "| best | test AP: own threshold | test AP: val's |" in report
    for name in ("ap_vs_train_step.png", "ap_vs_sampling_steps.png", "ap_per_crowd_level.png", "best_of_samples.png"):
        assert (out / "plots" / name).stat().st_size > 5000
        assert f"plots/{name}" in report
    assert (out / "predictions.png").stat().st_size > 5000


def test_rerun_recomputes_nothing_and_interrupted_eval_continues(bench, monkeypatch):
    tmp, results = bench
    train_mod = sys.modules["posediff.engine.train"]  # the module (the package exports a function of that name)

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_mod, "train", no_training)
    # an interruption after the first evaluation of one run: only the missing ones are computed
    record_path = tmp / "b" / "runs" / "diffusion_regpose_tiny" / "seed1" / "bench.json"
    record = json.loads(record_path.read_text())
    kept = record["evals"]["1"]
    del record["evals"]["2"], record["evals"]["4"]
    record_path.write_text(json.dumps(record))
    again = run_bench(spec(tmp))
    redone = json.loads(record_path.read_text())
    assert redone["evals"]["1"] == kept and set(redone["evals"]) == {"1", "2", "4"}
    assert again["summary"] == results["summary"]  # sampling is seeded: the recomputed ones are equal


def test_finished_runs_report_from_their_records_without_checkpoints(bench, tmp_path, monkeypatch):
    """A finished bench folder carried with only its records (``bench_config.json``; per run ``config.json``,
    ``bench.json`` and perhaps ``result.json``: how the standard bench's records are committed) reports the same
    table, plots and pictures without loading a model; what is not recorded cannot be computed and says so."""
    tmp, results = bench
    light = tmp_path / "b"
    shutil.copytree(tmp / "b", light, ignore=shutil.ignore_patterns(
        "step_*", "last.json", "history.jsonl", "results.json", "report.md", "predictions.png", "plots"))
    assert sorted(p.name for p in (light / "runs" / "edpose_tiny" / "seed0").iterdir()) == [
        ".posediff.json", "bench.json", "config.json", "result.json"]

    def refuse(*a, **k):
        raise AssertionError("a model was trained or loaded for a run whose records are complete")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    monkeypatch.setattr(sys.modules["posediff.engine.checkpoint"], "load_model", refuse)
    again = run_bench(spec(tmp, out=str(light)))
    assert again["summary"] == results["summary"]
    assert (light / "report.md").is_file() and (light / "predictions.png").stat().st_size > 5000
    lighter = tmp_path / "c"  # without result.json (its loss history) too: the records still stand
    shutil.copytree(light, lighter, ignore=shutil.ignore_patterns("result.json", "results.json", "report.md"))
    assert run_bench(spec(tmp, out=str(lighter)))["summary"] == results["summary"]
    assert (light / "plots" / "ap_vs_train_step.png").stat().st_size > 5000
    record_path = light / "runs" / "diffusion_regpose_tiny" / "seed0" / "bench.json"
    record = json.loads(record_path.read_text())
    del record["evals"]["2"]
    record_path.write_text(json.dumps(record))
    with pytest.raises(FileNotFoundError, match=r"seed0: the run is trained \(result.json\) but has no checkpoint "
                                                r"left to compute its test metrics \(sampling steps 2\)"):
        run_bench(spec(tmp, out=str(light)))


def test_a_subset_of_the_recipes_reports_from_the_same_folder(bench, tmp_path, monkeypatch):
    """The recipes are not the protocol: a folder's runs may be benched in several calls (one recipe now, others
    later), each call reporting its own recipes; the stamp keeps the union."""
    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")

    def refuse(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    again = run_bench(spec(tmp_path, recipes=("edpose_tiny",), data_root=str(tmp / "sc")))
    assert set(again["summary"]) == {"edpose_tiny"}
    assert again["summary"]["edpose_tiny"] == results["summary"]["edpose_tiny"]
    stamp = json.loads((tmp_path / "b" / "bench_config.json").read_text())
    assert sorted(stamp["recipes"]) == ["diffusion_regpose_tiny", "edpose_tiny"]


def test_report_only_reports_the_finished_runs_and_trains_none(bench, tmp_path, monkeypatch, capsys):
    """``--report-only``: the report of a folder whose runs are not all trained (a seed still training) holds the
    finished ones and names the others; nothing is trained; a folder with none finished is an error."""
    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")
    unfinished = tmp_path / "b" / "runs" / "diffusion_regpose_tiny" / "seed1" / "result.json"
    unfinished.write_text(json.dumps(dict(json.loads(unfinished.read_text()), steps=2)))  # as if interrupted

    def refuse(*a, **k):
        raise AssertionError("--report-only trained a run")

    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train", refuse)
    again = run_bench(spec(tmp_path, data_root=str(tmp / "sc"), report_only=True))
    assert sorted((r["recipe"], r["seed"]) for r in again["runs"]) == [
        ("diffusion_regpose_tiny", 0), ("edpose_tiny", 0), ("edpose_tiny", 1)]
    assert again["summary"]["edpose_tiny"] == results["summary"]["edpose_tiny"]
    assert "left out of the report: diffusion_regpose_tiny seed 1" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--report-only: .* holds no finished run"):
        run_bench(spec(tmp_path, data_root=str(tmp / "sc"), report_only=True, seeds=(1,),
                       recipes=("diffusion_regpose_tiny",)))


def test_retime_measures_every_latency_again_and_nothing_else(bench, tmp_path, monkeypatch):
    import posediff.bench as bench_module

    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")
    timed = []

    def latency(model, dataset, n, steps=None, warmup=2):
        timed.append(steps)
        return {"median": 1.0, "mean": 1.0, "images": n}

    monkeypatch.setattr(bench_module, "latency_ms", latency)
    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train",
                        lambda *a, **k: pytest.fail("a finished run was trained again"))
    carried = tmp_path / "b" / "runs" / "edpose_tiny" / "seed1"  # records without weights: its latency stays
    for p in list(carried.glob("step_*")) + [carried / "last.json"]:
        p.unlink()
    again = run_bench(spec(tmp_path, data_root=str(tmp / "sc"), retime=True))
    assert len(timed) == 3  # two recipes x two seeds, but the run without weights
    kept = {(r["recipe"], r["seed"]): r["latency_ms"]["median"] for r in again["runs"]}
    assert kept.pop(("edpose_tiny", 1)) != 1.0 and set(kept.values()) == {1.0}
    assert again["summary"]["edpose_tiny"]["AP"] == results["summary"]["edpose_tiny"]["AP"]


def test_rescore_scores_a_run_again_at_the_sampling_default_changed_since_it_was_trained(bench, tmp_path,
                                                                                         monkeypatch):
    """A checkpoint made before a sampling default changed (here: config version 1, before the pose-NMS threshold's
    change, no threshold of its own) is scored again from its weights at the current default, and its report says
    so; a run trained at the current defaults keeps its records, and a second call recomputes nothing."""
    import dataclasses

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import posediff
    import posediff.bench as bench_module
    import posediff.engine.checkpoint as checkpoint
    from posediff.registry import CONFIG_VERSION

    tmp, results = bench
    shutil.copytree(tmp / "b", tmp_path / "b")
    monkeypatch.setattr(sys.modules["posediff.engine.train"], "train",
                        lambda *a, **k: pytest.fail("a finished run was trained again"))
    run = tmp_path / "b" / "runs" / "diffusion_regpose_tiny" / "seed0"
    ckpt = checkpoint.latest_checkpoint(run)[0]
    with safe_open(str(ckpt), "pt") as f:
        meta = dict(f.metadata())
    overrides = json.loads(meta["overrides"])
    assert overrides.pop("nms_threshold") == 0.9  # quick's own; without it, version 1's default was 0.9 too
    save_file(load_file(str(ckpt)), str(ckpt), metadata=dict(meta, config_version="1",
                                                             overrides=json.dumps(overrides)))
    loaded = []
    load_model = checkpoint.load_model

    def spy(path, use_ema=True, current_sampling=False, **kw):
        model = load_model(path, use_ema, current_sampling, **kw)
        loaded.append(model.nms_threshold)
        return model

    monkeypatch.setattr(checkpoint, "load_model", spy)
    monkeypatch.setitem(bench_module.PRESETS, "quick", dataclasses.replace(  # the fixture's: every measurement
        bench_module.PRESETS["quick"], hypotheses_images=3, hypotheses_counts=(1, 2), nms_thresholds=(0.5, 0.9)))
    before = json.loads((run / "bench.json").read_text())
    again = run_bench(spec(tmp_path, data_root=str(tmp / "sc"), rescore=True))
    now = posediff.get_config("diffusion_regpose_tiny").nms_threshold
    assert now != 0.9 and loaded == [now]  # this run alone, at the current threshold
    record = json.loads((run / "bench.json").read_text())
    assert record["scored_sampling"] == {"config_version": CONFIG_VERSION, "fields": {"nms_threshold": now}}
    assert set(record["evals"]) == {"1", "2", "4"} and record["nms_sweep"]["model_threshold"] == now
    assert record["hypotheses"]["counts"] == [1, 2] and record["latency_ms"] != before["latency_ms"]
    assert record["history"] == before["history"] and record["train_seconds"] == before["train_seconds"]
    rows = {(r["recipe"], r["seed"]): r for r in again["runs"]}
    assert rows[("edpose_tiny", 0)]["metrics"] == {(r["recipe"], r["seed"]): r for r in results["runs"]}[
        ("edpose_tiny", 0)]["metrics"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert (f"(`--rescore`): diffusion_regpose_tiny at config version {CONFIG_VERSION}'s nms_threshold={now!r} "
            f"(seed 0); their validation curves") in report
    loaded.clear()
    run_bench(spec(tmp_path, data_root=str(tmp / "sc"), rescore=True))
    assert loaded == []  # rescored already: nothing to load
    # what such a run measures later is measured at the values its records were scored at
    record["scored_sampling"]["fields"]["nms_threshold"] = 0.7
    del record["evals"]["2"]
    (run / "bench.json").write_text(json.dumps(record))
    run_bench(spec(tmp_path, data_root=str(tmp / "sc")))
    assert loaded == [0.7] and set(json.loads((run / "bench.json").read_text())["evals"]) == {"1", "2", "4"}


def test_other_settings_in_the_same_folder_are_refused(bench):
    tmp, _ = bench
    with pytest.raises(ValueError, match=r"other settings: train_steps 3 \(wanted 5\)"):
        run_bench(spec(tmp, train_steps=5))
    stamp = tmp / "b" / "bench_config.json"
    saved = json.loads(stamp.read_text())
    assert saved["data"]["flip"] is False  # the resolved default: SynthCrowd is not flipped
    try:  # another size, and the flip default unresolved (as an earlier posediff stamped it): only the size differs
        stamp.write_text(json.dumps(dict(saved, data=dict(saved["data"], size=64, flip=None))))
        with pytest.raises(ValueError, match=r"other settings: data\.size 64 \(wanted 96\); use another"):
            run_bench(spec(tmp))
    finally:
        stamp.write_text(json.dumps(saved))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--data-root"):
        run_bench(BenchSpec(dataset="coco"))
    with pytest.raises(ValueError, match="unknown"):
        run_bench(BenchSpec(recipes=("nope",)))
    with pytest.raises(FileNotFoundError, match="--init"):
        run_bench(spec(tmp_path, init=str(tmp_path / "missing.safetensors")))
    with pytest.raises(SystemExit):
        main(["--preset", "huge"])
    for kw, message in ((dict(recipes=("edpose_tiny", "edpose_tiny")), "--recipes must be distinct"),
                        (dict(seeds=(0, -1)), "--seeds must be distinct non-negative"),
                        (dict(workers=-1), "--workers"),
                        (dict(overrides=("ckpt_every=5", "seed=3")), "--set seed=3: .* use --seeds instead"),
                        (dict(overrides=("max_steps=9",)), "use --train-steps instead"),
                        (dict(steps=(4, 1001)), r"sampling steps 1001 \(--steps\): recipe diffusion_regpose_tiny "
                                                "trains with num_train_timesteps=1000"),
                        (dict(steps=(4, 21), overrides=(*TINY, "model.num_train_timesteps=20")), "at most 20"),
                        (dict(steps=(1,), overrides=(*TINY, "model.num_train_timesteps=3")),
                         r"sampling_steps must lie in \[1, num_train_timesteps=3\].*got 4"),
                        (dict(overrides=(*TINY, "model.padding=emtpy")), "padding must be one of"),
                        (dict(overrides=(*TINY, "data.skeleton=crowdpose14")),
                         "predicts 17 joints but data.skeleton='crowdpose14' has 14"),
                        (dict(overrides=(*TINY, "model.dimm=3")), "'model.dimm=3': recipe edpose_tiny has no config "
                                                                  "field 'dimm'"),
                        (dict(overrides=(*TINY, "ckpt_every=0")), "ckpt_every must be an integer >= 1")):
        with pytest.raises(ValueError, match=message):
            run_bench(spec(tmp_path, **kw))
    assert not (tmp_path / "b" / "bench_config.json").exists()  # refused before anything is written


def test_latency_from_another_machine_is_named():
    from posediff.bench import _other_machines

    here = dict(cpu="CPU A", cpus=2, torch_threads=2)
    runs = [dict(recipe="edpose_tiny", seed=0, machine=here), dict(recipe="edpose_tiny", seed=1, machine=None),
            dict(recipe="diffusion_regpose_tiny", seed=0, machine=dict(here, gpu="H100"))]
    (line, _) = _other_machines(dict(machine=here, runs=runs))
    assert line == "Latency measured on another machine: diffusion_regpose_tiny seed 0: CPU A (2 CPUs, 2 torch " \
                   "threads), GPU H100."
    assert _other_machines(dict(machine=here, runs=runs[:2])) == []  # unknown (older records) is not claimed


def test_verdict_reads_the_seed_spread():
    from posediff.bench import _verdict

    def row(ap, ap_std, hard, hard_std, steps=4):
        return {"AP": {"mean": ap, "std": ap_std}, "AP_H": {"mean": hard, "std": hard_std}, "sampling_steps": steps}

    one = {"summary": {"diffusion_regpose_tiny": row(0.056, None, 0.040, None),
                       "edpose_tiny": row(0.129, None, 0.096, None, steps=None)}}
    (line, _) = _verdict(one, "crowdpose")
    assert "overall: diffusion_regpose_tiny − edpose_tiny = −7.3 AP (one seed" in line
    assert "in hard crowds: diffusion_regpose_tiny − edpose_tiny = −5.6 AP (one seed" in line
    two = {"summary": {"diffusion_regpose_tiny": row(0.30, 0.01, 0.20, 0.05),
                       "edpose_tiny": row(0.25, 0.02, 0.23, 0.01, steps=None)}}
    (line, _) = _verdict(two, "crowdpose")
    assert "= +5.0 AP (better; seed std up to 2.0)" in line
    assert "= −3.0 AP (within the seed spread; seed std up to 5.0)" in line
    assert _verdict(two, "coco")[0].count("AP (") == 1  # COCO format: overall only
    assert _verdict({"summary": {"edpose_tiny": row(0.2, None, 0.1, None, steps=None)}}, "crowdpose") == []
    # a diffusion recipe is one with sampling steps, whatever its name
    renamed = {"summary": {"edpose_tiny": two["summary"]["edpose_tiny"],
                           "my_sampler": two["summary"]["diffusion_regpose_tiny"]}}
    assert "overall: my_sampler − edpose_tiny = +5.0 AP" in _verdict(renamed, "crowdpose")[0]
    control = {"summary": {**two["summary"], "diffusion_regpose_tiny_control": row(0.27, 0.01, 0.20, 0.01)}}
    lines = _verdict(control, "crowdpose")
    assert lines[0].startswith("**Diffusion against the baseline**")
    assert lines[2].startswith("**Diffusion against its diffusion-off control**, overall: diffusion_regpose_tiny − "
                               "diffusion_regpose_tiny_control = +3.0 AP (better; seed std up to 1.0)")


def test_steps_gain_line_is_seed_by_seed():
    from posediff.bench import _steps_gain

    def run(recipe, seed, aps, boxes=None):
        return dict(recipe=recipe, seed=seed, boxes=boxes,
                    per_sampling_steps={str(s): {"AP": ap} for s, ap in zip((1, 2, 4, 8), aps)})

    runs = [run("diffusion_regpose_tiny", 0, (0.134, 0.135, 0.134, 0.134)),
            run("diffusion_regpose_tiny", 1, (0.118, 0.119, 0.120, 0.122)),
            run("edpose_tiny", 0, ()),  # one pass: no steps
            run("diffusionpose_tiny (edpose_tiny boxes)", 0, (0.30, 0.29, 0.28, 0.27), boxes="edpose_tiny_test.json")]
    (line, _) = _steps_gain(dict(runs=runs))
    assert "diffusion_regpose_tiny, 8 steps against 1: +0.0 / +0.4 (seeds 0, 1; mean +0.2 ± 0.3)" in line
    assert "diffusionpose_tiny (edpose_tiny boxes), 8 steps against 1: −3.0 (seed 0)" in line  # named once
    assert "edpose_tiny," not in line
    assert _steps_gain(dict(runs=runs[2:3])) == []


def test_verdicts_pair_each_diffusion_recipe_with_its_own_baseline():
    from posediff.bench import _verdict

    def row(ap, steps=None, task="multiperson", boxes=None):
        return {"AP": {"mean": ap, "std": 0.001}, "AP_H": {"mean": ap, "std": 0.001}, "sampling_steps": steps,
                "task": task, "boxes": boxes}

    det = "edpose_tiny_test.json"
    rows = {"edpose_tiny": row(0.13), "diffusion_regpose_tiny": row(0.14, 4),
            "diffusion_regpose_tiny_control": row(0.12, 4),
            "simplebaseline_tiny": row(0.30, None, "topdown", "ground truth"),
            "simplebaseline_tiny (edpose_tiny boxes)": row(0.20, None, "topdown", det),
            "diffusionpose_tiny": row(0.32, 2, "topdown", "ground truth"),
            "diffusionpose_tiny (edpose_tiny boxes)": row(0.21, 2, "topdown", det)}
    text = " ".join(_verdict({"summary": rows}, "crowdpose"))
    assert "diffusion_regpose_tiny − edpose_tiny = +1.0 AP" in text
    assert "diffusion_regpose_tiny − diffusion_regpose_tiny_control = +2.0 AP" in text
    assert "diffusionpose_tiny − simplebaseline_tiny = +2.0 AP" in text
    assert "diffusionpose_tiny (edpose_tiny boxes) − simplebaseline_tiny (edpose_tiny boxes) = +1.0 AP" in text
    assert "diffusionpose_tiny − edpose_tiny" not in text
