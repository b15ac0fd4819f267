"""``posediff bench`` with one-stage and top-down recipes side by side on a tiny SynthCrowd: the top-down runs'
budget, their scores with ground-truth boxes and with the zoo detector's boxes, the table, the report."""

import dataclasses
import json

import pytest

from posediff.bench import BenchSpec, format_table, run_bench

TINY = ("data.num_images=30", "data.size=96", "data.train_scales=(96,)", "data.crop_scales=(96,)",
        "data.crop_size=(64,96)", "data.max_size=128")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import posediff.bench as bench_module

    tmp = tmp_path_factory.mktemp("bench_topdown")
    small = dataclasses.replace(bench_module.PRESETS["standard"], train_steps=4, lr_drop=(), eval_every=0,
                                curve_images=3, hypotheses_images=0, nms_thresholds=(), latency_images=2,
                                topdown=dict(batch_size=8, lr=1e-3, max_steps=6, lr_drop=(4,)))
    spec = BenchSpec(preset="standard", recipes=("edpose_tiny", "simplebaseline_tiny", "diffusionpose_tiny"),
                     init="scratch", seeds=(0,), steps=(1, 2), train_steps=4, out=str(tmp / "b"),
                     data_root=str(tmp / "sc"), overrides=TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(bench_module.PRESETS, "standard", small)
        return tmp, run_bench(spec)


def test_top_down_runs_get_their_budget_and_both_kinds_of_boxes(bench):
    tmp, results = bench
    saved = json.loads((tmp / "b" / "results.json").read_text())
    runs = {r["recipe"]: r for r in saved["runs"]}
    assert set(runs) == {"edpose_tiny", "simplebaseline_tiny", "simplebaseline_tiny (edpose_tiny boxes)",
                         "diffusionpose_tiny", "diffusionpose_tiny (edpose_tiny boxes)"}
    assert runs["edpose_tiny"]["train_steps"] == 4 and runs["edpose_tiny"]["batch_size"] == 4
    for name in ("simplebaseline_tiny", "diffusionpose_tiny"):
        r = runs[name]
        assert r["task"] == "topdown" and r["train_steps"] == 6 and r["batch_size"] == 8
        assert r["boxes"] == "ground truth" and runs[f"{name} (edpose_tiny boxes)"]["boxes"] == "edpose_tiny_test.json"
        assert {"AP", "AP_E", "AP_H"} <= set(r["metrics"]) and r["latency_ms"]["detector_included"] is False
        assert r["test_images"] == runs["edpose_tiny"]["test_images"]  # the same test images
    assert set(runs["diffusionpose_tiny"]["per_sampling_steps"]) == {"1", "2"}
    assert runs["simplebaseline_tiny"]["per_sampling_steps"] == {}
    assert (tmp / "b" / "detections" / "edpose_tiny_test.json").is_file()
    table = format_table(results)
    assert "persons from" in table and "| simplebaseline_tiny (edpose_tiny boxes) | edpose_tiny_test.json |" in table
    assert "6 × 8 crops" in table and "4 × 4 scenes" in table
    report = (tmp / "b" / "report.md").read_text()
    assert "simplebaseline_tiny" in report and (tmp / "b" / "predictions.png").is_file()
    assert "| simplebaseline_tiny | 6 | 8 crops | 0.001 | trained |" in report  # each recipe's own budget
    assert "| edpose_tiny | 4 | 4 images | 0.0002 | frozen |" in report
    assert "top-down: the crops of its labelled persons in one batch" in report
    coarse = json.loads((tmp / "b" / "runs" / "diffusionpose_tiny" / "seed0" / "bench.json").read_text())["coarse_head"]
    assert coarse["boxes"] == "ground truth" and "AP" in coarse["metrics"]["crowdpose"]
    paired = results["summary"]["diffusionpose_tiny"]["vs_coarse_head"]["AP"]["mean"]
    assert paired == pytest.approx(runs["diffusionpose_tiny"]["metrics"]["AP"] - coarse["metrics"]["crowdpose"]["AP"])
    assert "## The denoiser against its own coarse head" in report


def test_rerun_recomputes_nothing(bench, monkeypatch):
    import posediff.bench as bench_module
    import posediff.bench_topdown as td

    tmp, results = bench
    monkeypatch.setattr(td, "predict_crop_results", lambda *a, **k: pytest.fail("evaluated again"), raising=False)
    import posediff.tasks.topdown as tasks_td

    monkeypatch.setattr(tasks_td, "predict_crop_results", lambda *a, **k: pytest.fail("evaluated again"))
    small = dataclasses.replace(bench_module.PRESETS["standard"], train_steps=4, lr_drop=(), eval_every=0,
                                curve_images=3, hypotheses_images=0, nms_thresholds=(), latency_images=2,
                                topdown=dict(batch_size=8, lr=1e-3, max_steps=6, lr_drop=(4,)))
    monkeypatch.setitem(bench_module.PRESETS, "standard", small)
    again = run_bench(BenchSpec(preset="standard", recipes=("edpose_tiny", "simplebaseline_tiny", "diffusionpose_tiny"),
                                init="scratch", seeds=(0,), steps=(1, 2), train_steps=4, out=str(tmp / "b"),
                                data_root=str(tmp / "sc"), overrides=TINY))
    assert again["summary"]["diffusionpose_tiny"]["AP"] == results["summary"]["diffusionpose_tiny"]["AP"]


def test_a_preset_without_a_top_down_budget_refuses_top_down_recipes(tmp_path):
    with pytest.raises(ValueError, match="gives top-down recipes no budget"):
        run_bench(BenchSpec(preset="quick", recipes=("simplebaseline_tiny",), init="scratch", train_steps=2,
                            out=str(tmp_path / "b"), data_root=str(tmp_path / "sc"), overrides=TINY))


def test_a_top_down_plan_holds_its_own_data_config_without_overrides():
    import posediff.bench as bench_module
    from posediff.tasks.topdown import TopDownData

    spec = BenchSpec(preset="standard", recipes=("edpose_tiny", "simplebaseline_tiny"), seeds=(0,))
    preset, spec = spec.resolved()
    runs = bench_module.plan_runs(preset, spec)
    td = next(r["config"] for r in runs if r["recipe"] == "simplebaseline_tiny")
    assert isinstance(td.data, TopDownData) and td.data.nms == 0.9
    assert td.batch_size == 32 and td.max_steps == 4000 and td.model["freeze_backbone"] is False
