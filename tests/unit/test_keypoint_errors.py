"""keypoint_errors: per-joint errors, left / right swaps and collapse, and oracle APs, on hand-made cases and
on the ground truth of the real COCO and CrowdPose fixtures."""

import copy
from pathlib import Path

import numpy as np
import pytest

from posediff.evaluation import keypoint_errors
from posediff.skeletons import COCO17

DATA = Path(__file__).resolve().parents[1] / "data"


def _scene():
    """Two images with two persons each (COCO-17), every joint labelled, persons 100 px tall, 200 px apart."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id in (1, 2):
        images.append(dict(id=image_id, width=400, height=300, file_name=f"{image_id}.png"))
        for p in range(2):
            centre = np.array([100.0 + 200 * p, 150.0])
            kp = centre + np.stack([rng.uniform(-3, 3, 17), rng.uniform(-50, 50, 17)], 1)
            kp[5::2, 0] += 8  # limb joints: left ones shifted right, right ones left, so that a swap costs
            kp[6::2, 0] -= 8
            anns.append(dict(id=len(anns) + 1, image_id=image_id, category_id=1, iscrowd=0, area=5000.0,
                             bbox=[*(kp.min(0)), *(kp.max(0) - kp.min(0))], num_keypoints=17,
                             keypoints=np.concatenate([kp, np.full((17, 1), 2.0)], 1).flatten().tolist()))
    return dict(images=images, annotations=anns, categories=[dict(id=1, name="person")])


def _perfect(gt):
    return [dict(image_id=a["image_id"], category_id=1, keypoints=list(a["keypoints"]), score=1.0)
            for a in gt["annotations"] if not a.get("iscrowd", 0) and any(v > 0 for v in a["keypoints"][2::3])]


def _edit(result, fn):
    kp = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)
    result["keypoints"] = fn(kp).flatten().tolist()


def test_perfect_results_have_no_error_and_every_ap_is_one():
    gt = _scene()
    out = keypoint_errors(gt, _perfect(gt))
    assert out["persons"] == 4 and out["found"] == 1.0
    assert all(v == pytest.approx(0.0) for v in out["joint_error_px"].values())
    assert out["swap_share"] == 0.0 and out["mean_error_rel"] == pytest.approx(0.0)
    assert out["lr_spread"] == pytest.approx(1.0)
    assert out["AP"] == out["ap_oracle_keypoints"] == out["ap_oracle_scores"] == pytest.approx(1.0)


@pytest.mark.parametrize("gt_file, results_file, skeleton", [
    ("coco_val2017_150.json", "coco_val2017_150_gt_results.json", "coco17"),  # crowds, unlabelled persons
    ("crowdpose_fixture.json", "crowdpose_fixture_gt_results.json", "crowdpose14"),  # no 'area': box scale
])
def test_real_ground_truth_scored_against_itself(gt_file, results_file, skeleton):
    out = keypoint_errors(DATA / gt_file, DATA / results_file, skeleton=skeleton)
    assert out["persons"] > 0 and out["found"] == 1.0
    assert all(v is None or v == pytest.approx(0.0, abs=1e-3) for v in out["joint_error_px"].values())
    assert out["AP"] == pytest.approx(1.0) and out["ap_oracle_keypoints"] == pytest.approx(1.0)


def test_errors_swaps_and_oracles_read_what_was_done_to_the_results():
    gt = _scene()
    results = _perfect(gt)
    for r in results:  # the left wrist (joint 9) 3, 4 px off everywhere: 5 px
        _edit(r, lambda kp: kp + np.where(np.arange(17)[:, None] == 9, [3.0, 4.0, 0.0], 0.0))
    _edit(results[0], lambda kp: kp[list(COCO17.flip_index)])  # person 1: left and right swapped
    out = keypoint_errors(gt, results)
    assert out["found"] == 1.0  # the swapped pose still overlaps its person more than any other
    assert out["joint_error_px"]["left_wrist"] == pytest.approx(5.0)
    assert out["joint_error_px"]["nose"] == pytest.approx(0.0)
    assert out["joint_error_rel"]["left_wrist"] == pytest.approx(5.0 / np.sqrt(5000.0))
    assert out["swap_share"] == pytest.approx(0.25)
    assert out["AP"] < 0.9
    assert out["ap_oracle_keypoints"] == pytest.approx(1.0)  # joints replaced: every pose perfect again
    # a false positive scored above everything costs AP until predictions are scored by their pairing's OKS
    stray = dict(_perfect(gt)[1], score=2.0)
    _edit(stray, lambda kp: kp + [60.0, 0.0, 0.0])
    out = keypoint_errors(gt, _perfect(gt) + [stray])
    assert out["AP"] < out["ap_oracle_scores"] == pytest.approx(1.0)


def test_unlabelled_joints_do_not_count_and_collapsed_sides_show():
    gt = _scene()
    ann = gt["annotations"][0]
    _edit(ann, lambda kp: np.where(np.arange(17)[:, None] == 10, 0.0, kp))  # right wrist unlabelled
    results = _perfect(gt)
    _edit(results[0], lambda kp: np.where(np.arange(17)[:, None] == 10, [999.0, 999.0, 1.0], kp))
    out = keypoint_errors(gt, results)
    assert out["found"] == 1.0 and out["joint_error_px"]["right_wrist"] == pytest.approx(0.0)
    assert out["ap_oracle_keypoints"] == pytest.approx(1.0)
    collapsed = _perfect(gt)
    flip = list(COCO17.flip_index)
    for r in collapsed:  # both sides of every pair predicted at their midpoint
        _edit(r, lambda kp: np.concatenate([(kp[:, :2] + kp[flip, :2]) / 2, kp[:, 2:]], 1))
    out = keypoint_errors(gt, collapsed)
    assert out["lr_spread"] == pytest.approx(0.0, abs=1e-6)


def test_one_prediction_finds_one_person():
    gt = _scene()
    a, b = (np.asarray(x["keypoints"]).reshape(17, 3) for x in gt["annotations"][:2])
    gt["annotations"][1]["keypoints"] = (a + [30.0, 0.0, 0.0]).flatten().tolist()  # two persons side by side
    between = dict(image_id=1, category_id=1, score=1.0, keypoints=(a + [15.0, 0.0, 0.0]).flatten().tolist())
    out = keypoint_errors(gt, [between], image_ids=[1])
    assert out["persons"] == 2 and out["found"] == pytest.approx(0.5)


def test_image_subset_bad_input_and_empty_results():
    gt = _scene()
    out = keypoint_errors(gt, _perfect(gt), image_ids=[2])
    assert out["persons"] == 2 and out["found"] == 1.0 and out["swap_share"] == 0.0
    assert out["AP"] == pytest.approx(1.0)
    out = keypoint_errors(copy.deepcopy(gt), [])
    assert out["found"] == 0.0 and out["swap_share"] is None and out["AP"] == 0.0
    with pytest.raises(ValueError, match="not in the ground truth"):
        keypoint_errors(gt, [dict(_perfect(gt)[0], image_id=99)])
    with pytest.raises(ValueError, match="skeleton"):
        keypoint_errors(gt, _perfect(gt), skeleton="h36m17")
    no_area = copy.deepcopy(gt)
    del no_area["annotations"][0]["area"]
    with pytest.raises(ValueError, match="'area'"):
        keypoint_errors(no_area, _perfect(gt))
