"""Predictor and `posediff predict` on real photos and COCO images of any size."""

import json

import numpy as np
import pytest
import torch
from conftest import SHARED

import posediff
from posediff.cli import main as cli
from posediff.data import ImageError
from posediff.engine import Predictor, save_checkpoint


@pytest.fixture(scope="module", params=["edpose_tiny", "diffusion_regpose_tiny"])
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(0)
    model = posediff.create_model(request.param)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 0, model, request.param, {})


def test_predictor_returns_poses_in_the_original_pixels(checkpoint, data_dir, tmp_path):
    predictor = Predictor.from_checkpoint(checkpoint, size=256, batch_size=2)
    images = [data_dir / "matplotlib_grace_hopper.jpg", *sorted((data_dir / "coco_images").glob("*.jpg"))]
    preds = predictor(images)
    assert len(preds) == 4
    from PIL import Image

    for path, pred in zip(images, preds):
        w, h = Image.open(path).size
        kp = pred["keypoints"]
        assert kp.shape[1:] == (17, 3) and len(pred["scores"]) == len(kp) == len(pred["boxes"])
        assert np.all(np.diff(pred["scores"]) <= 0)
        assert kp[..., 0].max() <= w + 1 and kp[..., 1].max() <= h + 1  # in the image's own pixels
    # an array works as well as a path (images of one size batch without padding: the same answer)
    one = Predictor.from_checkpoint(checkpoint, size=256, batch_size=2)
    by_path = one([images[1], images[1]])
    array = np.asarray(Image.open(images[1]).convert("RGB"))
    by_array = one([array, array])
    np.testing.assert_allclose(by_array[0]["keypoints"], by_path[0]["keypoints"], atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        predictor([np.zeros((10, 10))])
    with pytest.raises(ImageError, match="nope.jpg: image file not found"):
        predictor([images[0], "nope.jpg"])  # every path is checked before the first batch runs
    with pytest.raises(ImageError, match="is a folder, expected an image file"):
        predictor([data_dir])
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="notes.jpg: cannot read the image"):
        predictor([images[0], tmp_path / "notes.jpg"])


def test_predictor_reads_a_batch_at_a_time(checkpoint, data_dir, monkeypatch):
    import posediff.engine.infer as infer

    opened, read = [], infer.read_image

    def counting(path, **kw):
        if not kw.get("header_only"):
            opened.append(path)
        return read(path, **kw)

    monkeypatch.setattr(infer, "read_image", counting)
    images = [data_dir / "matplotlib_grace_hopper.jpg", *sorted((data_dir / "coco_images").glob("*.jpg"))]
    stream = Predictor.from_checkpoint(checkpoint, size=256, batch_size=1).iterate(images)
    assert next(stream)[0] == 0 and opened == images[:1]  # decoded: the first image only
    assert next(stream)[0] == 1 and opened == images[:2]


def test_predict_command_writes_results_and_pictures(checkpoint, data_dir, tmp_path):
    photos = sorted((SHARED / "photos").glob("*")) if (SHARED / "photos").is_dir() else []
    images = [str(p) for p in photos] or [str(data_dir / "matplotlib_grace_hopper.jpg")]
    images += [str(p) for p in sorted((data_dir / "coco_images").glob("*.jpg"))]
    images.append(images[0])  # the same name twice: two drawings, neither lost
    assert cli(["predict", *images, "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--size", "256",
                "--score-threshold", "0.0"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["image_id"] for r in results} == set(range(len(images)))
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert len(list(tmp_path.glob("*_poses.png"))) == len(images)
    index = json.loads((tmp_path / "images.json").read_text())["images"]
    assert all((tmp_path / im["drawing"]).is_file() for im in index)
    assert len({im["drawing"] for im in index}) == len(images)
    # a second call into the folder replaces the first one's drawings; files posediff did not write stay
    (tmp_path / "notes_poses.png").write_text("mine")
    assert cli(["predict", images[1], "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--size", "256"]) == 0
    again = json.loads((tmp_path / "images.json").read_text())["images"]
    assert sorted(p.name for p in tmp_path.glob("*_poses.png")) == sorted([again[0]["drawing"], "notes_poses.png"])
    drawing = tmp_path / again[0]["drawing"]  # an earlier drawing given as this call's input is read, not deleted
    assert cli(["predict", str(drawing), "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--size", "256"]) == 0
    assert drawing.is_file() and (tmp_path / f"{drawing.stem}_poses.png").is_file()
    with pytest.raises(ValueError, match="results.json: is a file; expected a folder"):
        cli(["predict", images[0], "--checkpoint", str(checkpoint), "--out", str(tmp_path / "results.json")])


def test_bad_sizes_are_refused_by_name():
    model = posediff.create_model("edpose_tiny")
    with pytest.raises(ValueError, match=r"size \(shorter side, got 0\) must be at least 32"):
        Predictor(model, size=0)
    with pytest.raises(ValueError, match=r"batch_size \(got 0\)"):
        Predictor(model, batch_size=0)
    with pytest.raises(ValueError, match=r"steps \(steps=, --steps\) 5000: expected an integer from 1 to 1000"):
        Predictor(posediff.create_model("diffusion_regpose_tiny"), steps=5000)
