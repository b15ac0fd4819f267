"""benchmarks/keypoint_errors.py runs end to end on a written SynthCrowd split and a checkpoint."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from posediff import create_model
from posediff.data import SceneConfig
from posediff.data.synthcrowd import write_split
from posediff.engine.checkpoint import save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "keypoint_errors.py"


def test_script_writes_its_json_and_plot(tmp_path):
    spec = importlib.util.spec_from_file_location("keypoint_errors_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    write_split(tmp_path / "data", "val", 3, seed=0, config=SceneConfig(size=96))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "run", 1, create_model("edpose_tiny"), "edpose_tiny", {})
    out = script.main(["--model", str(ckpt), "--data-root", str(tmp_path / "data"), "--images", "2",
                       "--eval-size", "96", "--out", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png")])
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["images"] == 2 and saved["persons"] == out["persons"] > 0
    assert len(saved["joint_error_px"]) == len(saved["joint_error_rel"]) == 17
    assert 0.0 <= saved["found"] <= 1.0 and saved["args"]["images"] == 2
    # an untrained model pairs nobody: no per-joint errors, so no plot (the script says so)
    assert (tmp_path / "e.png").is_file() == (saved["swap_share"] is not None)
    with pytest.raises(SystemExit):
        script.main(["--data-root", str(tmp_path / "nowhere")])
