"""GaussianPosePrior completion is the Gaussian conditional mean (DiffusionRegPose Eq. 10-12)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff.diffusion import GaussianPosePrior, conditional_gaussian

SETTINGS = settings(deadline=None, max_examples=60)


@st.composite
def problems(draw, max_k=7, max_batch=5):
    """A random prior (mean (K,2), SPD cov (2K,2K)), poses (B,K,2) and visibility masks (B,K)."""
    k = draw(st.integers(1, max_k))
    b = draw(st.integers(1, max_batch))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2 * k, 2 * k))
    cov = a @ a.T + draw(st.floats(1e-3, 1.0)) * np.eye(2 * k)  # SPD, condition number up to ~1e4
    mean = rng.normal(size=(k, 2))
    y = rng.normal(size=(b, k, 2))
    visible = rng.random((b, k)) < draw(st.floats(0.0, 1.0))
    return mean, cov, y, visible


def reference(mean, cov, y, visible):
    """μ_I + Σ_IV Σ_VV⁻¹ (y_V - μ_V), one pose at a time, with explicit numpy inverses."""
    out = y.copy()
    mu = mean.reshape(-1)
    for i in range(len(y)):
        v = np.repeat(visible[i], 2)
        hid = ~v
        yi = y[i].reshape(-1)
        full = yi.copy()
        if hid.any():
            if v.any():
                full[hid] = mu[hid] + cov[np.ix_(hid, v)] @ np.linalg.inv(cov[np.ix_(v, v)]) @ (yi[v] - mu[v])
            else:
                full[hid] = mu[hid]
        out[i] = full.reshape(-1, 2)
    return out


@SETTINGS
@given(problems())
def test_equals_the_gaussian_conditional_mean(problem):
    mean, cov, y, visible = problem
    got = GaussianPosePrior(mean, cov).complete_normalized(y, visible)
    np.testing.assert_allclose(got, reference(mean, cov, y, visible), rtol=1e-7, atol=1e-7)


@SETTINGS
@given(problems())
def test_all_visible_unchanged_none_visible_mean(problem):
    mean, cov, y, _ = problem
    prior = GaussianPosePrior(mean, cov)
    np.testing.assert_array_equal(prior.complete_normalized(y, np.ones(y.shape[:2], bool)), y)
    none = prior.complete_normalized(y, np.zeros(y.shape[:2], bool))
    np.testing.assert_allclose(none, np.broadcast_to(mean, y.shape), atol=1e-12)


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_permuting_joints_commutes_with_completion(problem, rnd):
    mean, cov, y, visible = problem
    k = mean.shape[0]
    perm = list(range(k))
    rnd.shuffle(perm)
    perm = np.array(perm)
    p2 = np.stack([2 * perm, 2 * perm + 1], 1).reshape(-1)  # joint permutation on interleaved coordinates
    permuted = GaussianPosePrior(mean[perm], cov[np.ix_(p2, p2)]).complete_normalized(y[:, perm], visible[:, perm])
    direct = GaussianPosePrior(mean, cov).complete_normalized(y, visible)
    np.testing.assert_allclose(permuted, direct[:, perm], rtol=1e-8, atol=1e-8)


@SETTINGS
@given(problems())
def test_batched_equals_one_at_a_time_and_numpy_equals_torch(problem):
    mean, cov, y, visible = problem
    prior = GaussianPosePrior(mean, cov)
    batched = prior.complete_normalized(y, visible)
    singles = np.stack([prior.complete_normalized(y[i], visible[i]) for i in range(len(y))])
    np.testing.assert_allclose(batched, singles, rtol=1e-10, atol=1e-10)
    as_torch = prior.complete_normalized(torch.from_numpy(y), torch.from_numpy(visible))
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float64
    np.testing.assert_allclose(as_torch.numpy(), batched, rtol=1e-12, atol=1e-12)
    as_f32 = prior.complete_normalized(y.astype(np.float32), visible)
    assert as_f32.dtype == np.float32
    # extra batch dimensions are kept
    nested = prior.complete_normalized(y[None], visible[None])
    np.testing.assert_allclose(nested[0], batched, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(problems(max_k=5))
def test_conditional_covariance_and_likelihood(problem):
    mean, cov, y, visible = problem
    v2 = torch.from_numpy(np.repeat(visible, 2, axis=1))
    out = conditional_gaussian(torch.from_numpy(mean.reshape(-1)), torch.from_numpy(cov),
                               torch.from_numpy(y.reshape(len(y), -1)), v2, with_cov=True, with_loglik=True)
    from scipy.stats import multivariate_normal

    for i in range(len(y)):
        v = v2[i].numpy()
        h = ~v
        c = out.cov[i].numpy()
        if h.any() and v.any():
            ref = cov[np.ix_(h, h)] - cov[np.ix_(h, v)] @ np.linalg.solve(cov[np.ix_(v, v)], cov[np.ix_(v, h)])
            np.testing.assert_allclose(c[np.ix_(h, h)], ref, rtol=1e-7, atol=1e-7)
        assert np.all(c[v] == 0) and np.all(c[:, v] == 0)
        ll = multivariate_normal(mean.reshape(-1)[v], cov[np.ix_(v, v)]).logpdf(y[i].reshape(-1)[v]) if v.any() else 0.0
        np.testing.assert_allclose(float(out.loglik[i]), ll, rtol=1e-8, atol=1e-8)


def test_near_singular_covariance_stays_finite_and_exact_where_determined():
    # joint 1 is an exact copy of joint 0: Σ is singular
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    base = a @ a.T + 0.1 * np.eye(4)  # joints 0 and 2
    lift = np.zeros((6, 4))
    lift[0:2, 0:2] = lift[2:4, 0:2] = np.eye(2)
    lift[4:6, 2:4] = np.eye(2)
    cov = lift @ base @ lift.T
    mean = rng.normal(size=(3, 2))
    mean[1] = mean[0]
    y = rng.normal(size=(2, 3, 2))
    y[:, 1] = y[:, 0]
    prior = GaussianPosePrior(mean, cov)
    # joint 0 seen, its copy hidden: the copy must equal it
    got = prior.complete_normalized(y, np.array([[True, False, False], [True, True, False]]))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0, 1], y[0, 0], atol=1e-6)
    # both copies seen (singular Σ_VV): the hidden joint 2 is the conditional mean given joint 0 alone
    ref = reference(mean[[0, 2]], base, y[1:, [0, 2]], np.array([[True, False]]))
    np.testing.assert_allclose(got[1, 2], ref[0, 1], atol=1e-5)


def _persons(n=40, k=5, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(0, 200, (n, 2)), rng.uniform(20, 100, (n, 2))])
    rel = rng.uniform(0.1, 0.9, (n, k, 2))
    xy = boxes[:, None, :2] + rel * boxes[:, None, 2:]
    return np.concatenate([xy, np.full((n, k, 1), 2.0)], -1), boxes


@pytest.mark.parametrize("aspect", [False, True])
def test_pixel_completion_keeps_visible_joints_and_flags(aspect):
    kp, boxes = _persons()
    prior = GaussianPosePrior.fit(kp, boxes, condition_on_aspect=aspect)
    obs = kp.copy()
    obs[::2, 1:3] = 0.0  # unlabelled: (0, 0, 0)
    obs[1::3, 4, 2] = 0.0
    done = prior.complete(obs, boxes)
    vis = obs[..., 2] > 0
    np.testing.assert_array_equal(done[vis], obs[vis])
    np.testing.assert_array_equal(done[..., 2], obs[..., 2])
    assert np.all(done[~vis][:, :2] != 0)
    # the same in torch, float32 in -> float32 out
    t = prior.complete(torch.from_numpy(obs).float(), torch.from_numpy(boxes).float())
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), done, rtol=1e-4, atol=1e-3)
    # any leading shape, including no person at all
    assert prior.complete(obs.reshape(4, 10, 5, 3), boxes.reshape(4, 10, 4)).shape == (4, 10, 5, 3)
    assert prior.complete(np.zeros((0, 5, 3)), np.zeros((0, 4))).shape == (0, 5, 3)


def test_fit_recovers_a_known_gaussian_and_em_handles_missing_joints():
    rng = np.random.default_rng(1)
    k, n = 3, 20000
    a = rng.normal(size=(2 * k, 2 * k)) * 0.05
    cov = a @ a.T + 0.001 * np.eye(2 * k)
    mean = rng.normal(size=(k, 2)) * 0.2
    y = rng.multivariate_normal(mean.reshape(-1), cov, size=n).reshape(n, k, 2)
    boxes = np.tile([10.0, 20.0, 50.0, 100.0], (n, 1))
    xy = y * boxes[:, None, 2:] + boxes[:, None, :2] + boxes[:, None, 2:] / 2
    kp = np.concatenate([xy, np.full((n, k, 1), 2.0)], -1)
    full = GaussianPosePrior.fit(kp, boxes, condition_on_aspect=False, reg=0.0)
    np.testing.assert_allclose(full.mean, mean, atol=0.005)
    np.testing.assert_allclose(full.cov, cov, atol=0.002)
    kp_missing = kp.copy()
    kp_missing[rng.random((n, k)) < 0.3, 2] = 0  # missing completely at random
    em = GaussianPosePrior.fit(kp_missing, boxes, condition_on_aspect=False, min_visible=1, reg=0.0)
    np.testing.assert_allclose(em.mean, mean, atol=0.006)
    np.testing.assert_allclose(em.cov, cov, atol=0.003)
    assert em.meta["em_iters"] > 1
    import posediff.diffusion.completion as completion  # the E-step's chunks (4096 persons) change nothing

    chunk, completion._EM_CHUNK = completion._EM_CHUNK, n
    try:
        whole = GaussianPosePrior.fit(kp_missing, boxes, condition_on_aspect=False, min_visible=1, reg=0.0)
    finally:
        completion._EM_CHUNK = chunk
    assert n > chunk and whole.meta["em_iters"] == em.meta["em_iters"]
    np.testing.assert_allclose(whole.cov, em.cov, rtol=0, atol=1e-12)
    np.testing.assert_allclose(whole.mean, em.mean, rtol=0, atol=1e-12)


def test_bad_input_is_reported():
    prior = GaussianPosePrior(np.zeros((2, 2)), np.eye(4))
    with pytest.raises(ValueError, match=r"cov must have shape \(4, 4\)"):
        GaussianPosePrior(np.zeros((2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        GaussianPosePrior(np.zeros((1, 2)), np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="width, height > 0"):
        prior.complete(np.zeros((2, 2, 3)), np.array([[0, 0, 10, 10], [0, 0, -1, 5.0]]))
    with pytest.raises(ValueError, match=r"keypoints must have shape \(\.\.\., 2, 3\)"):
        prior.complete(np.zeros((2, 3, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="visible must have shape"):
        prior.complete_normalized(np.zeros((2, 2, 2)), np.zeros((2, 3), bool))
