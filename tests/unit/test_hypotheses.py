"""Best-of-S and spread against error of several samples' results (posediff.evaluation.hypotheses)."""

import json

import numpy as np
import pytest

from posediff.evaluation.hypotheses import sample_hypotheses


@pytest.fixture
def gt_and_truth(data_dir):
    gt = json.loads((data_dir / "coco_val2017_150.json").read_text())
    truth = json.loads((data_dir / "coco_val2017_150_gt_results.json").read_text())
    ids = sorted({r["image_id"] for r in truth})[:20]
    return gt, [r for r in truth if r["image_id"] in ids], ids


def _moved(results, rng, scale, occluded_only=False):
    out = []
    for r in results:
        kp = np.asarray(r["keypoints"], dtype=float).reshape(-1, 3)
        move = rng.normal(0, scale, (len(kp), 2))
        if occluded_only:
            move[kp[:, 2] != 1] = 0.0
        kp[:, :2] += move
        out.append(dict(r, keypoints=kp.reshape(-1).tolist()))
    return out


def test_a_deterministic_head_is_flat_and_has_no_spread(gt_and_truth):
    gt, truth, ids = gt_and_truth
    noisy = _moved(truth, np.random.default_rng(0), 6.0)
    out = sample_hypotheses(gt, [noisy] * 4, image_ids=ids, counts=(1, 2, 4))
    assert out["persons"] > 20 and len(set(out["best_oks"])) == 1 and len(set(out["visible"])) == 1
    assert out["spread_rel"] == 0.0 and out["spread_error_spearman"]["all"] is None
    exact = sample_hypotheses(gt, [truth], image_ids=ids, counts=(1,))
    assert exact["best_oks"] == [pytest.approx(1.0)] and exact["visible"] == [pytest.approx(1.0)]


def test_samples_that_differ_rise_with_s_where_they_differ(gt_and_truth):
    """Samples that scatter the occluded joints only: best-of-S rises on occluded joints, visible stay flat, and
    the spread knows the error."""
    gt, truth, ids = gt_and_truth
    rng = np.random.default_rng(1)
    samples = [_moved(truth, rng, 15.0, occluded_only=True) for _ in range(8)]
    out = sample_hypotheses(gt, samples, image_ids=ids, counts=(1, 2, 4, 8))
    assert out["joints"]["occluded"] > 20
    occ, vis = out["occluded"], out["visible"]
    assert all(a < b for a, b in zip(occ, occ[1:])) and occ[-1] - occ[0] > 0.1
    assert vis == [pytest.approx(1.0)] * 4
    assert out["spread_error_spearman"]["all"] > 0.3


def test_bad_counts_are_refused(gt_and_truth):
    gt, truth, ids = gt_and_truth
    with pytest.raises(ValueError, match="counts must lie in 1..2"):
        sample_hypotheses(gt, [truth, truth], image_ids=ids, counts=(1, 4))
    with pytest.raises(ValueError, match="no samples"):
        sample_hypotheses(gt, [], image_ids=ids)


def test_left_right_assignments_are_counted(gt_and_truth):
    """Half the samples give every person with its sides exchanged: half the hypotheses are swapped and nearly every
    person's samples cover both assignments (0.49 and 0.98 on these 59 persons); identical samples never do."""
    from posediff import COCO17

    gt, truth, ids = gt_and_truth
    flip = list(COCO17.flip_index)
    mirrored = []
    for r in truth:
        kp = np.asarray(r["keypoints"], dtype=float).reshape(-1, 3)
        mirrored.append(dict(r, keypoints=kp[flip].reshape(-1).tolist()))
    out = sample_hypotheses(gt, [truth, mirrored, truth, mirrored], image_ids=ids, counts=(4,))
    assert 0.4 < out["swap_share"] < 0.55 and out["both_assignments"] > 0.9
    same = sample_hypotheses(gt, [truth] * 4, image_ids=ids, counts=(4,))
    assert same["swap_share"] == 0.0 and same["both_assignments"] == 0.0
