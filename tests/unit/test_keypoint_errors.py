"""keypoint_errors: per-joint errors, the left / right swap share and oracle APs, on hand-made cases."""

import copy

import numpy as np
import pytest

from posediff.evaluation import keypoint_errors
from posediff.skeletons import COCO17


def _scene():
    """Two images with two persons each (COCO-17), every joint labelled, persons 100 px tall."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id in (1, 2):
        images.append(dict(id=image_id, width=400, height=300, file_name=f"{image_id}.png"))
        for p in range(2):
            centre = np.array([100.0 + 200 * p, 150.0])
            kp = centre + np.stack([rng.uniform(-3, 3, 17), rng.uniform(-50, 50, 17)], 1)
            kp[5::2, 0] += 8  # left joints 16 px from the right ones: swapping them costs, but finds the person
            kp[6::2, 0] -= 8
            anns.append(dict(id=len(anns) + 1, image_id=image_id, category_id=1, iscrowd=0, area=5000.0,
                             bbox=[*(kp.min(0)), *(kp.max(0) - kp.min(0))], num_keypoints=17,
                             keypoints=np.concatenate([kp, np.full((17, 1), 2.0)], 1).flatten().tolist()))
    return dict(images=images, annotations=anns, categories=[dict(id=1, name="person")])


def _perfect(gt):
    return [dict(image_id=a["image_id"], category_id=1, keypoints=list(a["keypoints"]), score=1.0)
            for a in gt["annotations"]]


def test_perfect_results_have_no_error_and_every_ap_is_one():
    gt = _scene()
    out = keypoint_errors(gt, _perfect(gt))
    assert out["persons"] == 4 and out["found"] == 1.0
    assert all(v == pytest.approx(0.0) for v in out["joint_error_px"].values())
    assert out["swap_share"] == 0.0 and out["mean_error_rel"] == pytest.approx(0.0)
    assert out["AP"] == out["ap_oracle_keypoints"] == out["ap_oracle_scores"] == pytest.approx(1.0)


def test_errors_swaps_and_oracles_read_what_was_done_to_the_results():
    gt = _scene()
    results = _perfect(gt)
    for r in results:  # the left wrist (joint 9) 3, 4 px off everywhere: 5 px
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        kp[9, :2] += (3.0, 4.0)
        r["keypoints"] = kp.flatten().tolist()
    swapped = np.asarray(results[0]["keypoints"]).reshape(17, 3)[list(COCO17.flip_index)]
    results[0]["keypoints"] = swapped.flatten().tolist()  # person 1: left and right swapped
    out = keypoint_errors(gt, results)
    assert out["found"] == 1.0  # the swapped pose still overlaps its person more than any other
    assert out["joint_error_px"]["left_wrist"] == pytest.approx(5.0)
    assert out["joint_error_px"]["nose"] == pytest.approx(0.0)
    assert out["joint_error_rel"]["left_wrist"] == pytest.approx(5.0 / np.sqrt(5000.0))
    assert out["swap_share"] == pytest.approx(0.25)
    assert out["AP"] < 0.9
    assert out["ap_oracle_keypoints"] == pytest.approx(1.0)  # joints replaced: every pose perfect again
    # scores only reorder: a duplicate of a perfect pose, scored high, hurts AP until scored by its OKS
    worse = _perfect(gt) + [dict(_perfect(gt)[0], score=2.0, keypoints=list(
        (np.asarray(gt["annotations"][1]["keypoints"]) + np.tile([60.0, 0.0, 0.0], 17)).tolist()))]
    out = keypoint_errors(gt, worse)
    assert out["AP"] < out["ap_oracle_scores"] == pytest.approx(1.0)


def test_image_subset_and_empty_results():
    gt = _scene()
    out = keypoint_errors(gt, _perfect(gt), image_ids=[2])
    assert out["persons"] == 2
    out = keypoint_errors(copy.deepcopy(gt), [])
    assert out["found"] == 0.0 and out["swap_share"] is None and out["AP"] == 0.0
