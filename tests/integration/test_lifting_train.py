"""Lifting recipes train through the engine (the lifting task): context, then Baseline A and DiffPose on it."""

import json

import pytest
import torch

from posediff.engine.config import TrainConfig, apply_overrides
from posediff.engine.train import train
from posediff.tasks import get_task, task_name
from posediff.tasks.lifting import LiftingData
from posediff.tasks.multiperson import DataConfig

SMALL = {"dim": 32, "context_dim": 32, "blocks": 1, "context_blocks": 1, "heads": 2}
DATA = LiftingData(train_size=256, val_size=64)


def run(tmp_path, recipe, name, max_steps=6, **model):
    cfg = TrainConfig(recipe=recipe, data=DATA, out=str(tmp_path / name), batch_size=32, lr=1e-3, clip_grad=1.0,
                      max_steps=max_steps, ckpt_every=3, model={**SMALL, **model})
    return train(cfg, progress=False)


def test_context_then_heads_train_and_score_in_millimetres(tmp_path):
    ctx = run(tmp_path, "lifting_context", "ctx")
    assert set(ctx["metrics"]) >= {"P1", "P2", "P1_best"} and 50 < ctx["metrics"]["P1"] < 2000
    weights = str(tmp_path / "ctx" / "step_0000006.safetensors")
    base = run(tmp_path, "lifting_baseline", "base", context_weights=weights)
    diff = run(tmp_path, "diffpose", "diff", max_steps=3, context_weights=weights, gmm_samples=64, em_iterations=2,
               hypotheses=2, steps=1)
    assert diff["metrics"]["hypotheses"] == 2 and diff["metrics"]["spread"] > 0
    assert base["metrics"]["hypotheses"] == 1
    record = json.loads((tmp_path / "diff" / "result.json").read_text())
    assert record["config"]["data"]["kind"] == "mocaplift" and "pose" in record["history"][-1]
    # a zoo file holds its context encoder and scores on MocapLift's test split with its fp16 weights
    from posediff.engine.zoo_export import export_and_score
    from posediff.zoo import read_zoo_file, zoo_metadata

    summary = export_and_score(tmp_path / "base", tmp_path / "base.safetensors")
    meta = zoo_metadata(tmp_path / "base.safetensors")
    assert "context_weights" not in meta["overrides"] and meta["metrics"]["test_split"]["poses"] == 2416
    assert summary["metrics"]["P1"] == meta["metrics"]["P1"] > 0
    assert any(k.startswith("context.") for k in read_zoo_file(tmp_path / "base.safetensors"))


def test_resume_continues_exactly(tmp_path):
    full = run(tmp_path, "lifting_context", "full")
    cfg = TrainConfig(recipe="lifting_context", data=DATA, out=str(tmp_path / "part"), batch_size=32, lr=1e-3,
                      clip_grad=1.0, max_steps=3, ckpt_every=3, model=SMALL)
    train(cfg, progress=False)
    resumed = train(apply_overrides(cfg, ["max_steps=6"]), resume=True, progress=False)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]


def test_tasks_and_data_configs_are_matched():
    assert task_name("diffpose") == "lifting" and task_name("edpose_tiny") == "multiperson"
    cfg = TrainConfig(recipe="diffpose")  # the default data config becomes the lifting task's own
    assert isinstance(get_task("diffpose").resolve(cfg).data, LiftingData)
    with pytest.raises(ValueError, match="lifting recipe: its data config must be a LiftingData"):
        get_task("diffpose").check(TrainConfig(recipe="diffpose", data=DataConfig(num_images=50)))
    with pytest.raises(ValueError, match="multi-person .* recipe: its data config must be a DataConfig"):
        get_task("edpose_tiny").check(TrainConfig(recipe="edpose_tiny", data=LiftingData()))
    with pytest.raises(ValueError, match="data.kind must be 'mocaplift' or 'h36m'"):
        LiftingData(kind="mpii")
    with pytest.raises(ValueError, match="data.positions_3d, data.positions_2d not set"):
        get_task("diffpose").check(TrainConfig(recipe="diffpose", data=LiftingData(kind="h36m")))
    cfg = apply_overrides(TrainConfig(recipe="diffpose", data=LiftingData()), ["data.val_size=10"])
    assert cfg.data.val_size == 10
    with pytest.raises(ValueError, match="LiftingData has no field 'num_images'"):
        apply_overrides(TrainConfig(recipe="diffpose", data=LiftingData()), ["data.num_images=10"])


def test_context_weights_must_hold_the_context(tmp_path):
    from safetensors.torch import save_file

    import posediff

    with pytest.raises(ValueError, match="no file .*none.safetensors"):
        posediff.create_model("diffpose", context_weights=str(tmp_path / "none.safetensors"))
    save_file({"context.other": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="must hold this recipe's context encoder; .* tensors missing"):
        posediff.create_model("diffpose", context_weights=str(tmp_path / "other.safetensors"))


def test_the_video_recipe_trains_on_its_own_context_and_lifts_sequences(tmp_path):
    """diffpose_video_tiny: a temporal context encoder over T frames (trained first, then frozen), the DiffPose
    head on it, and ``lift`` of (B, T, 17, 2) pixel sequences."""
    import numpy as np

    from posediff.engine.checkpoint import load_model
    from posediff.registry import get_config

    cfg = get_config("diffpose_video_tiny")
    frames = cfg.frames
    assert (cfg.context, frames) == ("temporal", 9)
    ctx = run(tmp_path, "lifting_context", "ctx", max_steps=3, context="temporal", frames=frames,
              context_depth=cfg.context_depth)
    assert ctx["metrics"]["P1"] > 0
    video = run(tmp_path, "diffpose_video_tiny", "video", max_steps=3,
                context_weights=str(tmp_path / "ctx" / "step_0000003.safetensors"), gmm_samples=32, em_iterations=1,
                hypotheses=2, steps=1)
    assert video["metrics"]["hypotheses"] == 2
    model = load_model(tmp_path / "video" / "step_0000003.safetensors", context_weights="").eval()
    seq = np.random.default_rng(0).uniform(300, 700, size=(2, frames, 17, 2))
    assert model.lift(seq, (1000, 1000)).shape == (2, 17, 3)
    with pytest.raises(ValueError, match=f"this model reads {frames} frames"):
        model.lift(seq[:, 0], (1000, 1000))


def test_keep_best_keeps_the_best_evaluation(tmp_path):
    """keep_best="min:P1": best.safetensors holds the weights of the evaluation with the lowest P1 so far (its step
    and value in best.json), which load and score that value; a worse or non-finite later value leaves it; a resume
    before its step drops it; a metric the evaluation lacks, or no evaluations, are named."""
    import math

    from posediff.engine.checkpoint import load_model
    from posediff.engine.train import _keep_best

    out = tmp_path / "ctx"
    cfg = TrainConfig(recipe="lifting_context", data=DATA, out=str(out), batch_size=32, lr=1e-2,
                      max_steps=8, ckpt_every=4, eval_every=2, keep_best="min:P1", model=SMALL)
    train(cfg, progress=False)
    evals = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    evals = [(h["step"], h["eval"]["P1"]) for h in evals if "eval" in h]
    assert [s for s, _ in evals] == [2, 4, 6, 8]
    best = json.loads((out / "best.json").read_text())
    step, value = min(evals, key=lambda e: e[1])
    assert (best["step"], best["metric"], best["mode"]) == (step, "P1", "min")
    assert best["value"] == pytest.approx(value)
    model = load_model(out / "best.safetensors").eval()
    task = get_task("lifting_context")
    assert task.evaluate(model, task.build(cfg), cfg, torch.device("cpu"))["P1"] == pytest.approx(value)

    for later in (value + 1, math.nan):  # not better: best stays
        _keep_best(cfg, out, 10, model, None, {"P1": later})
        assert json.loads((out / "best.json").read_text())["step"] == step
    _keep_best(cfg, out, 10, model, None, {"P1": value - 1})
    assert json.loads((out / "best.json").read_text())["step"] == 10

    # --resume at step 8: the best of step 10 belongs to a step the run takes again; it goes, and the continued
    # run's own step 10 writes it
    again = train(apply_overrides(cfg, ["max_steps=10"]), resume=True, progress=False)
    best = json.loads((out / "best.json").read_text())
    assert best["step"] == 10 and best["value"] == pytest.approx(again["history"][-1]["eval"]["P1"])

    with pytest.raises(ValueError, match="keep_best='max:AP': the evaluation gives"):
        train(apply_overrides(cfg, ["out=" + str(tmp_path / "ap"), "keep_best=max:AP"]), progress=False)
    with pytest.raises(ValueError, match="keep_best"):
        TrainConfig(keep_best="P1")
    with pytest.raises(ValueError, match="give eval_every > 0"):
        TrainConfig(keep_best="min:P1")
