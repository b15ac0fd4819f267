"""3D pose errors (posediff.evaluation.mpjpe): the properties P1, P2 and N-MPJPE must have."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from posediff.evaluation import action_means, hypothesis_errors, mpjpe, n_mpjpe, p_mpjpe, root_relative
from posediff.evaluation.mpjpe import joint_error

coords = st.floats(-1000, 1000, allow_nan=False, allow_infinity=False, width=64)


def poses(batch=(1, 4), joints=(3, 17)):
    return st.tuples(st.integers(*batch), st.integers(*joints)).flatmap(
        lambda bj: arrays(np.float64, (bj[0], bj[1], 3), elements=coords))


def pose_pairs(spread=True):
    """(prediction, target): targets with a real extent, predictions near or far from them."""
    def pair(target):
        return arrays(np.float64, target.shape, elements=st.floats(-300, 300, width=64)).map(
            lambda noise: (target + noise, target))
    return poses().filter(lambda t: np.ptp(t, axis=1).max() > 10).flatmap(pair)


def rotation(seed):
    q = np.random.default_rng(seed).normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@settings(max_examples=60, deadline=None)
@given(poses(), st.integers(0, 2**31))
def test_p1_zero_iff_equal(target, seed):
    assert mpjpe(target, target) == 0.0
    other = target.copy()
    j = np.random.default_rng(seed).integers(target.shape[1])
    other[0, j, 0] += 1.0
    assert mpjpe(other, target) > 0.0
    assert mpjpe(other, target, reduction="none")[0] > 0


@settings(max_examples=60, deadline=None)
@given(pose_pairs(), st.integers(0, 2**31), st.floats(0.05, 20), arrays(np.float64, 3, elements=st.floats(-1e3, 1e3)))
def test_p2_invariant_to_a_similarity_transform_of_the_prediction(pair, seed, scale, shift):
    pred, target = pair
    moved = scale * pred @ rotation(seed).T + shift
    before = p_mpjpe(pred, target, reduction="none")
    after = p_mpjpe(moved, target, reduction="none")
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6 * np.abs(target).max())


@settings(max_examples=60, deadline=None)
@given(pose_pairs())
def test_p2_le_n_le_p1_in_squared_error_on_root_relative_poses(pair):
    pred, target = (root_relative(x) for x in pair)
    p1 = joint_error(pred, target, "none", reduction="none", squared=True)
    n = joint_error(pred, target, "scale", reduction="none", squared=True)
    p2 = joint_error(pred, target, "procrustes", reduction="none", squared=True)
    tol = 1e-9 * (1 + p1)
    assert (p2 <= n + tol).all() and (n <= p1 + tol).all()


def test_distances_can_break_the_order_for_one_outlier():
    """MPJPE averages distances, not squares: least-squares scaling can raise it (documented)."""
    target = np.zeros((1, 18, 3))
    target[0, 1:, 0] = 1.0                                # 17 joints at distance 1 from the root
    pred = target.copy()
    pred[0, 1, 1] = 1.0                                   # one joint off by 1, orthogonally
    assert n_mpjpe(pred, target) > mpjpe(pred, target)
    assert joint_error(pred, target, "scale", squared=True) <= joint_error(pred, target, "none", squared=True)


@settings(max_examples=30, deadline=None)
@given(pose_pairs())
def test_batched_equals_one_at_a_time_and_numpy_equals_torch(pair):
    pred, target = pair
    for f in (mpjpe, p_mpjpe, n_mpjpe):
        batched = f(pred, target, reduction="none")
        single = np.array([f(pred[i:i + 1], target[i:i + 1]) for i in range(len(pred))])
        np.testing.assert_allclose(batched, single, rtol=1e-10, atol=1e-9)
        as_torch = f(torch.from_numpy(pred), torch.from_numpy(target), reduction="none")
        assert isinstance(as_torch, torch.Tensor)
        np.testing.assert_allclose(as_torch.numpy(), batched, rtol=1e-12, atol=1e-12)
        assert f(pred, target) == pytest.approx(batched.mean(), rel=1e-12, abs=1e-12)


def test_p2_of_a_mirrored_pose_is_not_zero():
    """Protocol 2 aligns by proper rotations only: a mirror image is an error, as in VideoPose3D."""
    target = np.random.default_rng(0).normal(size=(1, 17, 3)) * 100
    mirrored = target * np.array([-1.0, 1.0, 1.0])
    assert p_mpjpe(mirrored, target) > 1.0
    assert p_mpjpe(target * 3 + 5, target) == pytest.approx(0.0, abs=1e-9)


def test_hypotheses_mean_best_and_spread():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(5, 17, 3)) * 100
    hyps = target[:, None] + rng.normal(size=(5, 4, 17, 3)) * 20
    out = hypothesis_errors(hyps, target)
    each = np.stack([mpjpe(hyps[:, h], target, reduction="none") for h in range(4)], 1)
    np.testing.assert_allclose(out["best_p1"], each.min(1))
    np.testing.assert_allclose(out["first_p1"], each[:, 0])
    np.testing.assert_allclose(out["mean_p1"], mpjpe(hyps.mean(1), target, reduction="none"))
    assert (out["best_p1"] <= each.mean(1) + 1e-9).all()
    assert (out["spread"] > 0).all()
    same = hypothesis_errors(np.repeat(target[:, None], 3, 1), target)
    np.testing.assert_allclose(same["spread"], 0.0, atol=1e-12)
    np.testing.assert_allclose(same["best_p1"], 0.0, atol=1e-12)


def test_action_means_weighs_each_action_once():
    out = action_means([1.0, 1.0, 1.0, 4.0], ["walk", "walk", "walk", "sit"])
    assert out["per_action"] == {"sit": 4.0, "walk": 1.0}
    assert out["mean"] == 2.5


@pytest.mark.parametrize("bad, message", [
    ((np.zeros((2, 17, 2)), np.zeros((2, 17, 2))), "expected the same shape|expected \\(..., J, 3\\)"),
    ((np.zeros((2, 17, 3)), np.zeros((2, 16, 3))), "expected the same shape"),
    ((np.full((2, 17, 3), np.nan), np.zeros((2, 17, 3))), "non-finite value at index \\(0, 0, 0\\)"),
    ((np.zeros((2, 17, 3)), torch.zeros(2, 17, 3)), "both be numpy arrays or both torch tensors"),
])
def test_bad_input_is_named(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        mpjpe(*bad)
