"""SynthCrowd: deterministic scenes whose labels agree with the pixels, in COCO and CrowdPose format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posediff.cli import main as cli
from posediff.data import SceneConfig, SynthCrowdDataset, collate, crowd_index, make_scene, synthcrowd_split
from posediff.data.synthcrowd import PoseBank
from posediff.evaluation import evaluate_keypoints


def test_scenes_are_deterministic_by_seed_split_and_index():
    a, b = make_scene(3, "train", 7), make_scene(3, "train", 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.image, make_scene(3, "train", 8).image)
    assert not np.array_equal(a.image, make_scene(4, "train", 7).image)
    assert not np.array_equal(a.image, make_scene(3, "val", 7).image)
    with pytest.raises(ValueError, match="split"):
        make_scene(0, "dev", 0)


def test_train_and_test_pools_share_no_photograph():
    bank = PoseBank.shipped()
    train, test = bank.pool("train"), bank.pool("test")
    assert len(train) > 3000 and len(test) > 800
    assert not set(bank.image_ids[train]) & set(bank.image_ids[test])


@pytest.mark.parametrize("index", range(40))
def test_labels_agree_with_the_scene(index):
    scene = make_scene(0, "test", index)
    s = scene.image.shape[0]
    kp, boxes = scene.keypoints, scene.boxes
    assert scene.image.shape == (256, 256, 3) and scene.image.dtype == np.uint8
    assert kp.shape[1:] == (17, 3) and scene.crowdpose.shape[1:] == (14, 3)
    assert np.all(scene.areas >= 48)
    for p in range(len(kp)):
        x, y, w, h = boxes[p]
        assert 0 <= x and 0 <= y and x + w <= s and y + h <= s and w > 0 and h > 0
        for joints in (kp[p], scene.crowdpose[p]):
            lab = joints[:, 2] > 0
            assert lab.any() or joints is scene.crowdpose[p]
            assert np.all(joints[~lab] == 0)
            assert np.all((joints[lab, :2] >= 0) & (joints[lab, :2] < s))
            vis = joints[:, 2] == 2  # a visible joint is one of the person's own visible pixels: inside its box
            assert np.all((joints[vis, 0] >= x) & (joints[vis, 0] <= x + w) & (joints[vis, 1] >= y)
                          & (joints[vis, 1] <= y + h))
        lab = kp[p, :, 2] > 0
        np.testing.assert_array_equal(kp[p, lab, :2], scene.full_keypoints[p, lab])  # labels = true joints
    assert scene.crowd_index == pytest.approx(crowd_index(scene.crowdpose, boxes))


def test_every_crowd_level_has_at_least_ten_percent():
    ci = np.array([make_scene(1, "train", i).crowd_index for i in range(300)])
    for share in ((ci <= 0.1).mean(), ((ci > 0.1) & (ci <= 0.8)).mean(), (ci > 0.8).mean()):
        assert share >= 0.10


def test_written_splits_load_and_evaluate(tmp_path):
    assert cli(["data", "synthcrowd", "--out", str(tmp_path), "--num-images", "30", "--size", "128",
                "--seed", "5"]) == 0
    for split, n in (("train", 24), ("val", 3), ("test", 3)):
        coco = json.loads((tmp_path / split / "coco.json").read_text())
        cp = json.loads((tmp_path / split / "crowdpose.json").read_text())
        assert len(coco["images"]) == n == len(list((tmp_path / split / "images").glob("*.png")))
        assert [a["id"] for a in coco["annotations"]] == [a["id"] for a in cp["annotations"]]
        for img in cp["images"]:
            persons = [a for a in cp["annotations"] if a["image_id"] == img["id"]]
            kp = np.array([a["keypoints"] for a in persons]).reshape(-1, 14, 3)
            bx = np.array([a["bbox"] for a in persons]).reshape(-1, 4)
            assert img["crowdIndex"] == pytest.approx(crowd_index(kp, bx), abs=1e-4)
    gt = tmp_path / "train" / "coco.json"
    perfect = [dict(image_id=a["image_id"], keypoints=a["keypoints"], score=1.0)
               for a in json.loads(gt.read_text())["annotations"]]
    assert evaluate_keypoints(gt, perfect)["AP"] == 1.0
    cp_gt = tmp_path / "train" / "crowdpose.json"
    perfect = [dict(image_id=a["image_id"], keypoints=a["keypoints"], score=1.0)
               for a in json.loads(cp_gt.read_text())["annotations"]]
    assert evaluate_keypoints(cp_gt, perfect, dataset="crowdpose")["AP"] == 1.0
    ds = synthcrowd_split(tmp_path, "val", skeleton="crowdpose14")
    image, target = ds[0]
    assert image.shape == (3, 128, 128) and target["keypoints"].shape[1] == 14
    # the written picture is the on-the-fly one (PNG is lossless)
    on_the_fly = SynthCrowdDataset(3, split="val", scene_seed=5, config=SceneConfig(size=128), skeleton="crowdpose14")
    torch.testing.assert_close(on_the_fly[0][0], image)
    # the folder is stamped, so training with the same data settings uses it as it is (nothing re-rendered)
    from posediff.engine.config import TrainConfig
    from posediff.tasks.multiperson import DataConfig, build_datasets

    stamp = json.loads((tmp_path / "synthcrowd.json").read_text())
    assert (stamp["num_images"], stamp["size"], stamp["scene_seed"]) == (30, 128, 5)
    written = (tmp_path / "train" / "coco.json").stat().st_mtime_ns
    data = DataConfig(kind="synthcrowd", root=str(tmp_path), num_images=30, size=128, scene_seed=5)
    assert len(build_datasets(TrainConfig(recipe="edpose_tiny", data=data))[0]) == 24
    assert (tmp_path / "train" / "coco.json").stat().st_mtime_ns == written
    for splits in ("", "test,test", "train,eval"):
        with pytest.raises(ValueError, match=rf"--splits must name distinct splits among train,val,test, "
                                             rf"got '{splits}'"):
            cli(["data", "synthcrowd", "--out", str(tmp_path), "--num-images", "30", "--size", "128",
                 "--seed", "5", "--splits", splits])
    with pytest.raises(ValueError, match=r"other settings: data\.num_images 30 \(wanted 40\)"):
        cli(["data", "synthcrowd", "--out", str(tmp_path), "--num-images", "40", "--size", "128", "--seed", "5",
             "--splits", "test"])


def test_on_the_fly_dataset_targets():
    ds = SynthCrowdDataset(6, split="train", scene_seed=2)
    imgs, mask, targets = collate([ds[i] for i in range(6)])
    assert imgs.shape == (6, 3, 256, 256) and mask.all()
    lab = targets.visibility > 0
    torch.testing.assert_close(targets.keypoints_completed[lab], targets.keypoints[lab])
    assert targets.valid.sum() == sum(len(make_scene(2, "train", i).keypoints) for i in range(6))


@pytest.mark.parametrize("shade", [SceneConfig().left_shade, 1.0])
def test_left_limbs_are_a_shade_darker_than_right_ones(shade):
    """The renderer's left / right cue (``SceneConfig.left_shade``, 0.6); 1.0 draws both sides alike."""
    from PIL import Image, ImageDraw

    from posediff.data.synthcrowd import _draw_person

    # a figure facing the camera, arms and legs spread so that no limb covers another
    kp = np.array([[128, 40], [124, 36], [132, 36], [118, 38], [138, 38],  # face
                   [150, 70], [106, 70], [190, 80], [66, 80], [220, 90], [36, 90],  # shoulders, elbows, wrists
                   [145, 140], [111, 140], [170, 190], [86, 190], [180, 240], [76, 240]], dtype=float)
    image = Image.new("RGB", (256, 256), (255, 255, 255))
    label = Image.new("L", (256, 256), 0)
    _draw_person((ImageDraw.Draw(image), ImageDraw.Draw(label)), kp, 200.0, 1, np.random.default_rng(0), shade)
    pixels = np.asarray(image).astype(float)
    for left, right in ((7, 8), (13, 14), (9, 10)):  # elbows, knees, wrists (hands)
        if left in (7, 13):  # the middle of the forearm / shin below the joint
            a, b = (kp[left] + kp[left + 2]) / 2, (kp[right] + kp[right + 2]) / 2
        else:
            a, b = kp[left], kp[right]
        lc, rc = pixels[int(a[1]), int(a[0])], pixels[int(b[1]), int(b[0])]
        np.testing.assert_allclose(lc, np.round(rc * shade), atol=1)


def test_the_on_the_fly_dataset_gives_the_ground_truth_a_written_split_holds(tmp_path):
    from posediff.data.synthcrowd import write_split

    write_split(tmp_path, "test", 3, seed=2, config=SceneConfig(size=96), progress=False)
    written = json.loads((tmp_path / "test" / "coco.json").read_text())
    ds = SynthCrowdDataset(3, "test", scene_seed=2, config=SceneConfig(size=96))
    assert json.loads(json.dumps(ds.ground_truth())) == written and ds.ids == [1, 2, 3]


def test_a_split_drawn_by_another_renderer_version_is_refused(tmp_path):
    from posediff.data.synthcrowd import RENDERER_VERSION, write_split

    write_split(tmp_path, "val", 2, seed=0, config=SceneConfig(size=96))
    assert len(synthcrowd_split(tmp_path, "val")) >= 1
    ann = tmp_path / "val" / "coco.json"
    data = json.loads(ann.read_text())
    assert data["info"]["renderer"] == RENDERER_VERSION
    del data["info"]["renderer"]  # as version 1 wrote it
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="info.renderer"):
        synthcrowd_split(tmp_path, "val")


def test_renderer_version_2_draws_the_labels_of_version_1():
    """Version 2 shades the left limbs and draws no extra random numbers: layouts and labels are unchanged."""
    fixture = json.loads((Path(__file__).parents[1] / "data" / "synthcrowd_v1_labels.json").read_text())
    for rec in fixture["scenes"]:
        scene = make_scene(0, rec["split"], rec["index"])
        np.testing.assert_allclose(scene.keypoints, rec["keypoints"], atol=1e-3)
        np.testing.assert_allclose(scene.boxes, rec["boxes"], atol=1e-3)
        np.testing.assert_allclose(scene.areas, rec["areas"], atol=1e-3)


def test_an_annotation_file_whose_info_is_not_an_object_is_refused(tmp_path):
    from posediff.data.synthcrowd import check_renderer

    ann = tmp_path / "coco.json"
    ann.write_text(json.dumps(dict(info="SynthCrowd", images=[], annotations=[])))
    with pytest.raises(ValueError, match=r"coco\.json: field info must be an object"):
        check_renderer(ann)
