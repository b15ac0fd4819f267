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


def test_predict_lift_writes_3d_poses_and_pictures(data_dir, tmp_path):
    """``--lift``: each person's COCO-17 pose mapped to H36M-17 and lifted; JSON in mm and a 3D picture."""
    torch.manual_seed(0)
    two_d = save_checkpoint(tmp_path / "2d", 0, posediff.create_model("edpose_tiny"), "edpose_tiny", {})
    small = {"dim": 32, "context_dim": 32, "blocks": 1, "context_blocks": 1, "heads": 2, "gmm_samples": 32,
             "em_iterations": 2, "hypotheses": 3, "steps": 1}
    lifter = save_checkpoint(tmp_path / "lift", 0, posediff.create_model("diffpose", **small), "diffpose", small)
    out = tmp_path / "out"
    image = data_dir / "matplotlib_grace_hopper.jpg"
    assert cli(["predict", str(image), "--checkpoint", str(two_d), "--out", str(out), "--size", "128",
                "--score-threshold", "0", "--lift", str(lifter)]) == 0
    poses = json.loads((out / "poses3d.json").read_text())
    persons = poses["images"][0]["persons"]
    assert persons and np.shape(persons[0]["pose_3d"]) == (17, 3) and np.shape(persons[0]["hypotheses"]) == (3, 17, 3)
    assert persons[0]["pose_3d"][0] == [0.0, 0.0, 0.0]  # root-relative
    assert (out / "matplotlib_grace_hopper_3d.png").stat().st_size > 5000
    index = json.loads((out / "images.json").read_text())
    assert index["images"][0]["drawing_3d"] == "matplotlib_grace_hopper_3d.png"
    # a rerun without --lift removes the earlier call's 3D files: the folder never mixes two calls
    assert cli(["predict", str(image), "--checkpoint", str(two_d), "--out", str(out), "--size", "128"]) == 0
    assert not (out / "poses3d.json").exists() and not (out / "matplotlib_grace_hopper_3d.png").exists()
    # a 2D checkpoint given as the lifter is refused by name, before any image is read
    with pytest.raises(ValueError, match="a checkpoint of recipe 'edpose_tiny', expected a lifting recipe's"):
        cli(["predict", str(image), "--checkpoint", str(two_d), "--out", str(out), "--lift", str(two_d)])


def test_predict_lift_by_default_lifts_every_person_with_the_zoo(data_dir, tmp_path):
    """``--lift`` alone: the zoo's edpose_tiny finds the persons, the zoo's diffpose lifts each one of them."""
    out = tmp_path / "out"
    image = data_dir / "matplotlib_grace_hopper.jpg"
    assert cli(["predict", str(image), "--out", str(out), "--size", "128", "--score-threshold", "0.05",
                "--lift"]) == 0
    poses = json.loads((out / "poses3d.json").read_text())
    index = json.loads((out / "images.json").read_text())
    assert poses["lifting"] == "zoo" and len(poses["images"][0]["persons"]) == index["images"][0]["persons"] > 0
    assert all(np.shape(p["hypotheses"]) == (5, 17, 3) for p in poses["images"][0]["persons"])  # diffpose's N = 5
    assert (out / index["images"][0]["drawing_3d"]).stat().st_size > 5000


def test_coco_to_h36m_mapping():
    from posediff.skeletons import coco17_to_h36m17

    kp = np.zeros((17, 3))
    kp[:, 0] = np.arange(17)
    kp[:, 2] = 1.0
    kp[12, 2] = 0.4
    h = coco17_to_h36m17(kp)
    assert h[0, 0] == 11.5 and h[0, 2] == 0.4  # pelvis: the hips' midpoint, the lower score
    assert h[8, 0] == 5.5 and h[7, 0] == 8.5 and h[10, 0] == 1.5 and h[9, 0] == 0  # thorax, spine, head, nose
    assert list(h[[1, 2, 3, 4, 5, 6], 0]) == [12, 14, 16, 11, 13, 15]
    assert list(h[11:, 0]) == [5, 7, 9, 6, 8, 10]
