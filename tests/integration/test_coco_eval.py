"""evaluate_keypoints equals pycocotools ("keypoints") and xtcocotools ("keypoints_crowd") to 1e-12.

The xtcocotools numbers were computed by tests/data/xtcocotools_reference.py (xtcocotools 1.14.3 built
from source, numpy 2) on the fixtures that tests/data/make_eval_fixtures.py cut from ../shared/data:
150 real COCO val2017 images, the same persons converted to CrowdPose-14, and the real CrowdPose fixture;
each with ground truth as predictions and with seeded noisy predictions.
"""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from conftest import SHARED

from posediff.evaluation import COCO_KEYS, CROWDPOSE_KEYS, KeypointEvaluator, evaluate_keypoints, write_coco_results


def _reference(data_dir):
    return json.loads((data_dir / "xtcocotools_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", range(6))
def test_equals_xtcocotools(data_dir, case):
    ref = _reference(data_dir)[case]
    dataset = "coco" if ref["iouType"] == "keypoints" else "crowdpose"
    got = evaluate_keypoints(data_dir / ref["gt"], data_dir / ref["results"], dataset=dataset)
    keys = COCO_KEYS if dataset == "coco" else CROWDPOSE_KEYS
    assert list(got) == list(keys)
    np.testing.assert_allclose([got[k] for k in keys], ref["stats"][: len(keys)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("results", ["coco_val2017_150_gt_results.json", "coco_val2017_150_noisy_results.json"])
def test_coco_equals_pycocotools(data_dir, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(data_dir / "coco_val2017_150.json"))
        ev = COCOeval(gt, gt.loadRes(str(data_dir / results)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    got = evaluate_keypoints(data_dir / "coco_val2017_150.json", data_dir / results)
    np.testing.assert_allclose(list(got.values()), ev.stats, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dataset, stem", [("coco", "coco_val2017_150"), ("crowdpose", "crowdpose_fixture")])
def test_image_ids_score_a_subset_against_its_own_ground_truth(data_dir, dataset, stem):
    gt = json.loads((data_dir / f"{stem}.json").read_text())
    results = json.loads((data_dir / f"{stem}_gt_results.json").read_text())
    with_persons = sorted({a["image_id"] for a in gt["annotations"] if a.get("num_keypoints", 1) > 0})
    half = with_persons[: len(with_persons) // 2]
    subset = [r for r in results if r["image_id"] in set(half)]
    before = json.dumps(gt)
    assert evaluate_keypoints(gt, subset, dataset=dataset, image_ids=half)["AP"] > 0.99  # perfect on its images
    assert evaluate_keypoints(gt, subset, dataset=dataset)["AR"] < 0.75  # the other half's persons count as missed
    assert json.dumps(gt) == before  # the caller's ground truth is untouched


def test_dicts_and_lists_in_batched_evaluator_and_writer(data_dir, tmp_path):
    gt = json.loads((data_dir / "coco_val2017_150.json").read_text())
    results = json.loads((data_dir / "coco_val2017_150_noisy_results.json").read_text())
    direct = evaluate_keypoints(gt, results)
    # the same predictions fed as model outputs, in batches of 4 images, in a resized input frame
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    ids = sorted(by_image)
    ev = KeypointEvaluator(gt)
    for start in range(0, len(ids), 4):
        batch = ids[start:start + 4]
        outs, scales = [], []
        for i in batch:
            kp = torch.tensor([r["keypoints"] for r in by_image[i]], dtype=torch.float64).reshape(-1, 17, 3)
            kp[..., :2] /= 2.0  # the model saw the image at half size
            outs.append(dict(keypoints=kp, scores=torch.tensor([r["score"] for r in by_image[i]])))
            scales.append((2.0, 2.0))
        ev.update(batch, outs, scales=scales)
    batched = ev.compute()
    for k in COCO_KEYS:
        assert batched[k] == pytest.approx(direct[k], abs=1e-4)  # written results are rounded to 1e-3 px
    ev.save(tmp_path / "results.json")
    assert evaluate_keypoints(gt, tmp_path / "results.json") == batched
    write_coco_results(results, tmp_path / "raw.json")
    assert evaluate_keypoints(data_dir / "coco_val2017_150.json", tmp_path / "raw.json") == direct
    assert gt == json.loads((data_dir / "coco_val2017_150.json").read_text())  # the input is not modified


def test_errors_name_the_problem(data_dir, tmp_path, caplog):
    gt = data_dir / "coco_val2017_150.json"
    assert evaluate_keypoints(gt, []) == dict.fromkeys(COCO_KEYS, 0.0)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_keypoints(tmp_path / "missing.json", [])
    with pytest.raises(ValueError, match="'annotations'"):
        evaluate_keypoints({"images": [], "categories": []}, [])
    with pytest.raises(ValueError, match=r"results\[0\] has no field 'score'"):
        evaluate_keypoints(gt, [dict(image_id=1, keypoints=[0] * 51)])
    with pytest.raises(ValueError, match="51"):
        evaluate_keypoints(gt, [dict(image_id=1, keypoints=[0] * 42, score=1.0)])
    with pytest.raises(ValueError, match="image ids"):
        evaluate_keypoints(gt, [dict(image_id=-5, keypoints=[0] * 51, score=1.0)])
    no_ci = json.loads((data_dir / "crowdpose_fixture.json").read_text())
    del no_ci["images"][0]["crowdIndex"]
    with pytest.raises(ValueError, match="crowdIndex"):
        evaluate_keypoints(no_ci, data_dir / "crowdpose_fixture_gt_results.json", dataset="crowdpose")
    with pytest.raises(ValueError, match="dataset"):
        evaluate_keypoints(gt, [], dataset="mpii")
    partial = json.loads(gt.read_text())
    del partial["annotations"][3]["num_keypoints"]
    bad = partial["annotations"][3]
    with pytest.raises(ValueError, match=rf"annotation id {bad['id']} \(image_id {bad['image_id']}\) has no field "
                                         r"'num_keypoints'; coco keypoint ground truth needs"):
        evaluate_keypoints(partial, [])


def test_crowd_levels_are_the_official_evaluators(data_dir):
    """AP_E / AP_M / AP_H bin images as crowdpose-api scores them, crowd index < 0.2 / < 0.8 / the rest; the
    CrowdPose paper's text says 0.1 for the first bound."""
    gt = json.loads((data_dir / "crowdpose_fixture.json").read_text())
    first = gt["images"][0]["id"]
    gt["images"][0]["crowdIndex"], gt["images"][1]["crowdIndex"] = 0.15, 0.5
    perfect = [dict(image_id=a["image_id"], keypoints=a["keypoints"], score=1.0) for a in gt["annotations"]
               if a["image_id"] == first]
    got = evaluate_keypoints(gt, perfect, dataset="crowdpose")
    assert got["AP_E"] > 0.5 and (got["AP_M"], got["AP_H"]) == (0.0, -1.0)  # 0.15: easy; nothing predicted at 0.5
    gt["images"][0]["crowdIndex"] = 0.25
    got = evaluate_keypoints(gt, perfect, dataset="crowdpose")
    assert got["AP_E"] == -1.0 and got["AP_M"] > 0.0  # 0.25: medium, beside the image at 0.5


SHARED_SUBSET = SHARED / "coco" / "person_keypoints_val2017_subset.json"


@pytest.mark.skipif(not SHARED_SUBSET.is_file(), reason="../shared/data is not beside this checkout")
def test_full_shared_subset_ground_truth_as_predictions():
    """On all 614 images: AP_L is 0.9994, not 1.0, in pycocotools (shared/data/README.md)."""
    gt = json.loads(SHARED_SUBSET.read_text())
    res = [dict(image_id=a["image_id"], keypoints=a["keypoints"], score=1.0) for a in gt["annotations"]
           if not a["iscrowd"] and a["num_keypoints"] > 0]
    got = evaluate_keypoints(gt, res)
    assert got["AP"] == 1.0 and got["AP_L"] == pytest.approx(0.9994, abs=1e-4)
