"""CocoKeypointDataset on real COCO images, and its errors for bad input."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED

from posediff.data import AnnotationError, CocoKeypointDataset, ImageError, collate
from posediff.data.transforms import eval_transforms, train_transforms
from posediff.skeletons import COCO17


@pytest.fixture
def coco(data_dir):
    return data_dir / "coco_images", data_dir / "coco_images.json"


def test_items_targets_and_completion(coco):
    images, ann = coco
    ds = CocoKeypointDataset(images, ann, prior="coco17", transforms=eval_transforms(320, 1000))
    assert len(ds) == 3
    gt = json.loads(ann.read_text())
    for i in range(len(ds)):
        image, t = ds[i]
        persons = [a for a in gt["annotations"] if a["image_id"] == t["image_id"] and a["num_keypoints"] > 0]
        assert image.shape[0] == 3 and min(image.shape[1:]) == 320
        assert t["keypoints"].shape == (len(persons), 17, 2) and t["visibility"].shape == (len(persons), 17)
        vis = t["visibility"] > 0
        torch.testing.assert_close(t["keypoints_completed"][vis], t["keypoints"][vis])  # labelled joints kept
        assert torch.all(t["keypoints"][~vis] == 0)
        # normalised keypoints map back to the annotation's pixels
        h0, w0 = t["orig_size"].tolist()
        kp = torch.tensor([p["keypoints"] for p in persons], dtype=torch.float32).reshape(-1, 17, 3)
        back = t["keypoints"] * torch.tensor([w0, h0])
        torch.testing.assert_close(back[vis], kp[..., :2][vis], atol=1e-3, rtol=0)


def test_collate_pads_images_and_persons(coco):
    images, ann = coco
    ds = CocoKeypointDataset(images, ann, transforms=train_transforms(COCO17.flip_index, scales=(200, 240),
                                                                      max_size=320, crop_scales=(200,),
                                                                      crop_size=(150, 200)))
    batch = [ds[i] for i in range(3)]
    imgs, mask, targets = collate(batch)
    assert imgs.shape[0] == 3 and mask.shape == (3, *imgs.shape[2:])
    for i, (im, t) in enumerate(batch):
        assert mask[i].sum() == im.shape[1] * im.shape[2]
        n = len(t["boxes"])
        assert targets.valid[i].sum() == n
        torch.testing.assert_close(targets.keypoints[i, :n], t["keypoints"])
    assert targets.scale_to_original.shape == (3, 2)
    # seeded: same epoch, same augmentation; another epoch, another
    ds2 = CocoKeypointDataset(images, ann, transforms=ds.transforms)
    torch.testing.assert_close(ds2[1][1]["keypoints"], ds[1][1]["keypoints"])


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_missing_and_unreadable_images_name_the_file(coco, tmp_path, caplog):
    images, ann = coco
    folder = tmp_path / "imgs"
    shutil.copytree(images, folder)
    gt = json.loads(ann.read_text())
    missing = gt["images"][0]["file_name"]
    (folder / missing).unlink()
    broken = gt["images"][1]["file_name"]
    (folder / broken).write_bytes(b"this is no jpeg")
    ds = CocoKeypointDataset(folder, ann)
    with pytest.raises(ImageError, match=rf"{missing}: image file not found .*file_name"):
        ds[0]
    with pytest.raises(ImageError, match=rf"{broken}: cannot read the image"):
        ds[1]
    ds = CocoKeypointDataset(folder, ann, skip_invalid=True)
    with caplog.at_level(logging.WARNING):
        _, t = ds[0]
    assert t["image_id"] == gt["images"][2]["id"]
    assert missing in caplog.text


@pytest.mark.parametrize("problem,match", [
    ("keypoints", r"annotations\[0\] \(id \d+\) field 'keypoints' has 48 values, expected 51"),
    ("bbox", r"annotations\[0\] \(id \d+\) field 'bbox' has a negative size"),
    ("image_id", r"annotations\[0\] \(id \d+\) field 'image_id' = 999 names no image"),
    ("image_id_text", r"annotations\[0\] \(id \d+\) field 'image_id' must be an integer, got 'img_1'"),
    ("keypoint_null", r"annotations\[0\] \(id \d+\) field 'keypoints' value 5 is None, expected a number"),
])
def test_bad_annotations_are_reported_or_skipped(coco, tmp_path, caplog, problem, match):
    images, ann = coco
    gt = json.loads(ann.read_text())
    a = gt["annotations"][0]
    if problem == "keypoints":
        a["keypoints"] = a["keypoints"][:48]
    elif problem == "bbox":
        a["bbox"][2] = -4.0
    elif problem == "image_id_text":
        a["image_id"] = "img_1"
    elif problem == "keypoint_null":
        a["keypoints"][5] = None
    else:
        a["image_id"] = 999
    path = _write(tmp_path, gt)
    with pytest.raises(AnnotationError, match=rf"{path}: {match}"):
        CocoKeypointDataset(images, path)
    with caplog.at_level(logging.WARNING):
        ds = CocoKeypointDataset(images, path, skip_invalid=True)
    assert "skipped" in caplog.text
    n_persons = sum(len(ds[i][1]["boxes"]) for i in range(len(ds)))
    assert n_persons == sum(1 for b in gt["annotations"] if b["num_keypoints"] > 0) - 1


def test_not_coco_format(tmp_path, coco):
    images, _ = coco
    for bad, match in [([1, 2], "not a COCO-format file"), ({"images": []}, "'annotations'"),
                       ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] needs fields")]:
        with pytest.raises(AnnotationError, match=match):
            CocoKeypointDataset(images, _write(tmp_path, bad))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="junk.json: not valid JSON"):
        CocoKeypointDataset(images, tmp_path / "junk.json")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        CocoKeypointDataset(images, tmp_path / "nothing.json")


@pytest.mark.skipif(not (SHARED / "coco" / "images").is_dir(), reason="../shared/data is not beside this checkout")
def test_all_shared_coco_images_load_with_training_augmentation():
    ds = CocoKeypointDataset(SHARED / "coco" / "images", SHARED / "coco" / "person_keypoints_val2017_images.json",
                             transforms=train_transforms(COCO17.flip_index, scales=(256,), max_size=400,
                                                         crop_scales=(256,), crop_size=(200, 256)), prior="coco17")
    persons = 0
    for i in range(len(ds)):
        image, t = ds[i]
        assert torch.isfinite(image).all() and max(image.shape[1:]) <= 400
        persons += len(t["boxes"])
    assert len(ds) == 54 and persons > 80


def test_crowdpose_skeleton(data_dir, tmp_path):
    gt = json.loads((data_dir / "crowdpose_fixture.json").read_text())
    folder = tmp_path / "cp"
    folder.mkdir()
    for img in gt["images"]:
        from PIL import Image

        Image.fromarray(np.zeros((img["height"], img["width"], 3), np.uint8)).save(folder / img["file_name"])
    ds = CocoKeypointDataset(folder, data_dir / "crowdpose_fixture.json", skeleton="crowdpose14")
    assert ds[0][1]["keypoints"].shape[1] == 14
    with pytest.raises(ValueError, match="17 joints"):
        CocoKeypointDataset(folder, data_dir / "crowdpose_fixture.json", skeleton="crowdpose14", prior="coco17")
