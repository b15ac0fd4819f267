"""The top-down task: crops of real COCO images from ground truth and from real detections, bad detection files,
training through the engine (loss falls, exact resume, scoring with ground-truth boxes or detections)."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import DATA

import posediff
from posediff.data import CocoKeypointDataset
from posediff.data.topdown import (
    CropAugment,
    HeatmapCodec,
    PersonCrops,
    gt_instances,
    invert_matrix,
    load_detections,
    transform_points,
)
from posediff.engine import TrainConfig, apply_overrides, latest_checkpoint, load_model, train
from posediff.tasks import get_task
from posediff.tasks.lifting import LiftingData
from posediff.tasks.multiperson import DataConfig
from posediff.tasks.topdown import TopDownData, rescore


@pytest.fixture(scope="module")
def coco():
    return CocoKeypointDataset(DATA / "coco_images", DATA / "coco_images.json")


def test_crops_of_real_images_map_back_to_the_labels(coco):
    codec = HeatmapCodec((192, 256), 4, 2.0)
    inst = gt_instances(coco.coco, coco.ids, 17)
    assert len(inst) >= 3
    for augment in (None, CropAugment(flip=True)):
        ds = PersonCrops(coco, inst, codec, augment, seed=3)
        for i in range(len(ds)):
            crop, t = ds[i]
            assert crop.shape == (3, 256, 192) and t["heatmaps"].shape == (17, 64, 48)
            kp, vis = t["keypoints"].numpy(), t["keypoints"][:, 2].numpy() > 0
            back = transform_points(invert_matrix(t["matrix"].numpy()), kp[:, :2])
            labels = inst[i]["keypoints"]
            # a flip swaps the joints' names: compare the sets of labelled points
            got = sorted(map(tuple, np.round(back[vis], 2)))
            want = sorted(map(tuple, np.round(labels[labels[:, 2] > 0, :2], 2)))
            assert np.abs(np.array(got) - np.array(want)).max() < 0.5


def test_real_detections_become_crops(coco, data_dir):
    dets = load_detections(data_dir / "coco_images_detections.json", coco.ids, min_score=0.3)
    assert dets and all(d["score"] >= 0.3 and d["keypoints"] is None for d in dets)
    ds = PersonCrops(coco, dets, HeatmapCodec((96, 128), 4, 1.5))
    crop, t = ds[0]
    assert crop.shape == (3, 128, 96) and float(t["weights"].sum()) == 0 and t["score"] == dets[0]["score"]


def test_bad_detection_files_are_named(tmp_path, caplog):
    f = tmp_path / "dets.json"
    with pytest.raises(FileNotFoundError, match="detection results file not found"):
        load_detections(f)
    f.write_text("{}")
    with pytest.raises(ValueError, match="JSON list"):
        load_detections(f)
    f.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(ValueError, match=r"entry \[0\] must hold image_id, bbox and score"):
        load_detections(f)
    f.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, "a", 5], "score": 1}]))
    with pytest.raises(ValueError, match=r"entry \[0\] field bbox"):
        load_detections(f)
    for field, entry in [("bbox", {"bbox": [0, 0, True, 5]}), ("score", {"score": "high"}),
                         ("score", {"score": None}), ("score", {"score": float("nan")}),
                         ("image_id", {"image_id": None}), ("image_id", {"image_id": "1"})]:
        f.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 1, **entry}]))
        with pytest.raises(ValueError, match=rf"{f}: entry \[0\] field {field} must be"):
            load_detections(f)
    f.write_text(json.dumps([{"image_id": 7, "bbox": [0, 0, 5, 5], "score": 1}]))
    with pytest.raises(ValueError, match="1 detections name images the annotations do not hold"):
        load_detections(f, [1, 2])
    f.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 0, 5], "score": 1},
                             {"image_id": 1, "bbox": [0, 0, 4, 5], "score": 1},
                             {"image_id": 1, "bbox": [50, 10, 4, 5], "score": 1},  # right of a 40-px-wide image
                             {"image_id": 1, "bbox": [-9, -9, 4, 5], "score": 1}]))  # above and left of it
    with caplog.at_level(logging.WARNING):
        assert len(load_detections(f, [1])) == 3  # image sizes unknown: only the box of no area goes
        assert len(load_detections(f, {1: (40.0, 30.0)})) == 1
    assert "1 detections with a box of zero size skipped" in caplog.text
    assert "2 detections with a box wholly outside its image skipped" in caplog.text


def test_annotated_persons_without_a_box_are_counted(coco, caplog):
    from pycocotools.coco import COCO

    index = COCO()
    ann = coco.coco.loadAnns(coco.coco.getAnnIds(imgIds=coco.ids[0], iscrowd=False))[0]
    index.dataset = {"images": [coco.coco.imgs[coco.ids[0]]], "categories": coco.coco.dataset["categories"],
                     "annotations": [dict(ann, id=1), dict(ann, id=2, bbox=[10.0, 10.0, 0.0, 20.0])]}
    index.createIndex()
    with caplog.at_level(logging.WARNING):
        assert len(gt_instances(index, [coco.ids[0]], 17)) == 1
    assert "1 annotated persons with a box of zero size skipped" in caplog.text


def test_rescoring_is_box_score_times_confident_joints():
    kp = np.zeros((2, 3, 3))
    kp[0, :, 2] = [0.9, 0.5, 0.1]
    assert np.allclose(rescore(kp, np.array([0.5, 1.0])), [0.5 * 0.7, 0.0])


SMALL = ["data.num_images=30", "data.size=96", "batch_size=4", "data.max_val_images=3"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthcrowd")


def config(recipe, data_root, out, *extra):
    cfg = TrainConfig(recipe=recipe, data=DataConfig(root=str(data_root)), out=str(out), lr=1e-3)
    return apply_overrides(cfg, SMALL + list(extra))


def test_a_one_stage_data_config_is_read_as_top_down(data_root):
    cfg = config("simplebaseline_tiny", data_root, "x", "data.boxes=dets.json")
    assert isinstance(cfg.data, TopDownData) and cfg.data.boxes == "dets.json" and cfg.data.num_images == 30
    with pytest.raises(ValueError, match="data.nms must be a number in"):
        apply_overrides(cfg, ["data.nms=0"])
    with pytest.raises(ValueError, match="top-down recipe"):
        get_task("simplebaseline_tiny").check(TrainConfig(recipe="simplebaseline_tiny", data=LiftingData()))


@pytest.mark.parametrize("recipe", ["simplebaseline_tiny", "diffusionpose_tiny"])
def test_loss_falls_and_the_model_scores(recipe, data_root, tmp_path):
    cfg = config(recipe, data_root, tmp_path / "run", "max_steps=40", "ckpt_every=40", "lr=3e-3",
                 "backbone_lr_mult=1.0")
    result = train(cfg, progress=False)
    history = [h["loss"] for h in result["history"]]
    assert sum(history[-8:]) / 8 < 0.9 * sum(history[:8]) / 8
    assert set(result["metrics"]) >= {"AP", "AP50", "AR"}
    model = load_model(latest_checkpoint(tmp_path / "run")[0])
    assert model.predict(torch.rand(1, 3, 128, 96)).shape == (1, 17, 3)


@pytest.mark.usefixtures("cpu_only")
def test_resumed_diffusion_run_equals_an_uninterrupted_one(data_root, tmp_path):
    full = train(config("diffusionpose_tiny", data_root, tmp_path / "full", "max_steps=6", "ckpt_every=3"),
                 progress=False)
    train(config("diffusionpose_tiny", data_root, tmp_path / "cut", "max_steps=3", "ckpt_every=3"), progress=False)
    resumed = train(config("diffusionpose_tiny", data_root, tmp_path / "cut", "max_steps=6", "ckpt_every=3"),
                    resume=True, progress=False)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]


def test_scoring_with_detections(data_root, tmp_path):
    from posediff.tasks.topdown import crop_datasets, predict_crop_results

    cfg = config("simplebaseline_tiny", data_root, tmp_path / "run")
    gt = json.loads((data_root / "val" / "coco.json").read_text())
    dets = [dict(image_id=a["image_id"], category_id=1, bbox=a["bbox"], score=0.8) for a in gt["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    _, val, _, _, ids = crop_datasets(cfg.data, posediff.get_config(cfg.recipe), boxes=str(tmp_path / "dets.json"))
    assert len(val) == sum(a["image_id"] in ids for a in gt["annotations"])
    model = posediff.create_model("simplebaseline_tiny").eval()
    res = predict_crop_results(model, val, steps=(None,), nms=1.0)[None]
    assert len(res) == len(val) and all(r["image_id"] in ids for r in res)


def test_predict_runs_a_top_down_model_behind_the_detector(data_root, tmp_path):
    from posediff.engine.infer import predict_files

    train(config("simplebaseline_tiny", data_root, tmp_path / "run", "max_steps=2", "ckpt_every=2"), progress=False)
    ckpt = latest_checkpoint(tmp_path / "run")[0]
    image = DATA / "coco_images" / "000000117425.jpg"
    done = predict_files(ckpt, [image], tmp_path / "pred", score_threshold=0.0)
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert done["predicted"] == 1 and results and all(len(r["keypoints"]) == 51 for r in results)
    assert (tmp_path / "pred" / "000000117425_poses.png").is_file()
    with pytest.raises(ValueError, match="the zoo has no weights for it"):
        predict_files(None, [image], tmp_path / "p2", recipe="diffusionpose")
    with pytest.raises(ValueError, match="a detector is for a top-down model"):
        predict_files(None, [image], tmp_path / "p3", detector=str(ckpt))
    with pytest.raises(ValueError, match="one-pass head"):
        predict_files(ckpt, [image], tmp_path / "p4", steps=2)


def test_predict_runs_the_zoo_top_down_model_with_oks_nms(tmp_path):
    """``--recipe simplebaseline_tiny``: the zoo's weights behind the zoo's detector; two detections of one person
    give one pose after the OKS-NMS that scoring applies."""
    from posediff.engine.infer import TopDownPredictor, predict_files

    image = DATA / "coco_images" / "000000117425.jpg"
    done = predict_files(None, [image], tmp_path / "pred", recipe="simplebaseline_tiny", score_threshold=0.0)
    assert done["predicted"] == 1 and (tmp_path / "pred" / "000000117425_poses.png").is_file()
    model = posediff.create_model("simplebaseline_tiny", pretrained="synthcrowd")

    class TwinBoxes(torch.nn.Module):  # one person's box found twice, a third box of no area
        def forward(self, x, mask=None, steps=None, generator=None):
            return [dict(boxes=torch.tensor([[100.0, 50.0, 300.0, 400.0], [101.0, 50.0, 301.0, 400.0],
                                             [5.0, 5.0, 5.0, 60.0]]),
                         scores=torch.tensor([0.9, 0.8, 0.9]), keypoints=torch.zeros(3, 17, 3))]

    for nms, persons in [(0.9, 1), (1.0, 2)]:
        pred = TopDownPredictor(model, TwinBoxes(), box_threshold=0.0, nms=nms)
        _, _, out = next(pred._predicted([image]))
        assert len(out["keypoints"]) == persons and (np.diff(out["scores"]) <= 0).all()


def test_zoo_export_scores_a_top_down_run_on_the_test_split(data_root, tmp_path):
    from posediff.engine.zoo_export import export_and_score
    from posediff.zoo import read_zoo_file, zoo_metadata, zoo_path

    base = "resnet18_synthcrowd_heatmaps.safetensors"
    train(config("diffusionpose_tiny", data_root, tmp_path / "run", "max_steps=2", "ckpt_every=2",
                 "model.freeze_backbone=True", "model.frozen_bn=True"), init=str(zoo_path(base)), progress=False)
    summary = export_and_score(tmp_path / "run", tmp_path / "dp.safetensors", base=base)
    meta = zoo_metadata(tmp_path / "dp.safetensors")
    assert meta["recipe"] == "diffusionpose_tiny" and meta["metrics"]["test_split"]["boxes"] == "ground truth"
    assert summary["metrics"]["crowdpose"]["AP"] == meta["metrics"]["crowdpose"]["AP"]
    from safetensors.torch import load_file

    shipped = load_file(tmp_path / "dp.safetensors")
    assert summary["from_base"] > 0 and not any(k.startswith("backbone.") for k in shipped)
    assert any(k.startswith("backbone.") for k in read_zoo_file(tmp_path / "dp.safetensors"))
    from posediff import create_model
    from posediff.tasks.topdown import score_topdown_on_synthcrowd_test

    split = meta["metrics"]["test_split"]  # as the zoo test scores a shipped file: the split rendered afresh
    model = create_model("diffusionpose_tiny", **meta["overrides"])
    model.load_state_dict(read_zoo_file(tmp_path / "dp.safetensors"))
    again = score_topdown_on_synthcrowd_test(model.eval(), num_images=split["images"], size=split["size"],
                                             scene_seed=split["scene_seed"], nms=split["nms"])
    assert again["crowdpose"] == meta["metrics"]["crowdpose"] and again["test_split"]["persons"] == split["persons"]
    # a run trained before DiffusionPose's start changed (config version 3): stored with the start it was trained
    # at, or with the current one when asked (the weights are the same)
    from safetensors import safe_open
    from safetensors.torch import save_file

    from posediff.registry import CONFIG_VERSION

    weights = latest_checkpoint(tmp_path / "run")[0]
    with safe_open(str(weights), "pt") as f:
        made = dict(f.metadata(), config_version="3")
    save_file(load_file(str(weights)), str(weights), metadata=made)
    export_and_score(tmp_path / "run", tmp_path / "v3.safetensors", base=base)
    export_and_score(tmp_path / "run", tmp_path / "now.safetensors", base=base, current_sampling=True)
    assert zoo_metadata(tmp_path / "v3.safetensors")["overrides"]["start"] == "coarse"
    assert "start" not in zoo_metadata(tmp_path / "now.safetensors")["overrides"]
    now = zoo_metadata(tmp_path / "now.safetensors")
    assert now["config_version"] == str(CONFIG_VERSION)
    assert create_model("diffusionpose_tiny", **now["overrides"]).head.start == "coarse_clean"


def test_resuming_a_run_made_before_a_default_changed_names_the_fix(data_root, tmp_path):
    """A run whose checkpoint an earlier posediff wrote (no config_version) relied on the defaults of then:
    resuming it under the current ones would train another model, so it is refused with the overrides that
    continue it."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cfg = config("diffusionpose_tiny", data_root, tmp_path / "run", "max_steps=2", "ckpt_every=2")
    train(cfg, progress=False)
    weights = tmp_path / "run" / "step_0000002.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "config_version"}
    save_file(load_file(str(weights)), str(weights), metadata=meta)
    with pytest.raises(ValueError, match=r"made when start, residual, detach_features defaulted to coarse, False, "
                                         r"False .*resume it with model.start=coarse model.residual=False "
                                         r"model.detach_features=False"):
        train(apply_overrides(cfg, ["max_steps=4"]), resume=True, progress=False)
    done = train(apply_overrides(cfg, ["max_steps=4", "model.start=coarse", "model.residual=False",
                                       "model.detach_features=False"]), resume=True, progress=False)
    assert done["steps"] == 4
