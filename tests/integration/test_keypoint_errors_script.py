"""benchmarks/keypoint_errors.py, eval_size.py and train_speed.py run end to end on a written SynthCrowd split and a
checkpoint."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from posediff import create_model
from posediff.data import SceneConfig
from posediff.data.synthcrowd import write_split
from posediff.engine.checkpoint import save_checkpoint

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "keypoint_errors.py"


def load_script(path):
    spec = importlib.util.spec_from_file_location(path.stem + "_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_script_writes_its_json_and_plot(tmp_path):
    script = load_script(SCRIPT)
    write_split(tmp_path / "data", "val", 3, seed=0, config=SceneConfig(size=96))
    torch.manual_seed(0)
    data = {"kind": "synthcrowd", "size": 96, "train_scales": [64, 96], "max_size": 128}  # as trained
    ckpt = save_checkpoint(tmp_path / "run", 1, create_model("edpose_tiny"), "edpose_tiny", {},
                           extra_meta={"config": {"data": data}})
    out = script.main(["--model", str(ckpt), "--data-root", str(tmp_path / "data"), "--images", "2",
                       "--out", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png")])
    saved = json.loads((tmp_path / "e.json").read_text())
    assert (saved["args"]["eval_size"], saved["args"]["max_size"]) == (96, 128)  # the checkpoint's own sizes
    assert saved["images"] == 2 and saved["persons"] == out["persons"] > 0
    assert len(saved["joint_error_px"]) == len(saved["joint_error_rel"]) == 17
    assert 0.0 <= saved["found"] <= 1.0 and saved["args"]["images"] == 2
    # an untrained model pairs nobody: no per-joint errors, so no plot (the script says so)
    assert (tmp_path / "e.png").is_file() == (saved["swap_share"] is not None)
    with pytest.raises(SystemExit):
        script.main(["--data-root", str(tmp_path / "nowhere")])


def test_eval_size_script_scores_each_size(tmp_path):
    script = load_script(BENCHMARKS / "eval_size.py")
    write_split(tmp_path / "data", "val", 3, seed=0, config=SceneConfig(size=96))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "run", 1, create_model("edpose_tiny"), "edpose_tiny", {})
    common = ["--model", str(ckpt), "--data-root", str(tmp_path / "data"), "--images", "2", "--max-size", "128"]
    out = script.main(common + ["--sizes", "64", "96", "--out", str(tmp_path / "s.json"), "--plot",
                                str(tmp_path / "s.png")])
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [r["eval_size"] for r in saved["rows"]] == [64, 96] == [r["eval_size"] for r in out["rows"]]
    assert saved["args"]["sizes"] == [64, 96] and saved["images"] == 2
    assert all(0.0 <= r["coco_AP"] <= 1.0 and 0.0 <= r["crowdpose_AP"] <= 1.0 for r in saved["rows"])
    assert (tmp_path / "s.png").stat().st_size > 5000
    with pytest.raises(SystemExit):  # larger than the cap on the longer side: it would be capped silently
        script.main(common + ["--sizes", "256"])


def test_train_speed_times_each_recipe_of_a_preset(tmp_path):
    script = load_script(BENCHMARKS / "train_speed.py")
    small = ["data.num_images=20", "data.size=96", "data.train_scales=(96,)", "data.crop_scales=(96,)",
             "data.crop_size=(80,96)", "data.max_size=128", "batch_size=2"]
    result = script.main(["--preset", "quick", "--data-root", str(tmp_path / "data"), "--steps", "2", "--warmup", "1",
                          "--workers", "0", "--out", str(tmp_path / "speed.json"), "--set", *small])
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert [r["recipe"] for r in saved["rows"]] == ["edpose_tiny", "diffusion_regpose_tiny"] == \
        [r["recipe"] for r in result["rows"]]
    for row in saved["rows"]:
        assert row["batch_size"] == 2 and row["steps"] == 2 and row["step_s_median"] > 0
        assert row["trainable_m"] < row["params_m"]  # the quick preset freezes the backbone, as the bench does
        assert row["coco_epoch_min"]["1"] == pytest.approx(8 * row["coco_epoch_min"]["8"])
    with pytest.raises(ValueError, match="fewer than one batch of 64"):  # refused, not an endless loop
        script.main(["--preset", "quick", "--data-root", str(tmp_path / "data"), "--steps", "1", "--warmup", "0",
                     "--set", *small[:-1], "batch_size=64"])
