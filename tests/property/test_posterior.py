"""gaussian_posterior_mean is E[x_0 | x_t] of the forward process under a Gaussian prior on x_0."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff.diffusion import conditional_gaussian, gaussian_posterior_mean, make_scheduler, q_sample

SETTINGS = settings(deadline=None, max_examples=60)
SCHED = make_scheduler("ddim", signal_scale=5.0)


@SETTINGS
@given(t=st.integers(0, 999), std=st.floats(0.05, 4.0), seed=st.integers(0, 2**31 - 1))
def test_matches_the_joint_gaussian_conditional(t, std, seed):
    """(x_0, x_t) is jointly Gaussian: [[s², √ᾱ s²], [√ᾱ s², ᾱ s² + 1 - ᾱ]] around (μ, √ᾱ μ); conditioning the
    pair on x_t with the library's general conditional must give the same mean, coordinate by coordinate."""
    rng = np.random.default_rng(seed)
    mu, x_t = rng.normal(size=6) * 3, rng.normal(size=6) * 3
    abar = float(SCHED.alphas_cumprod[t])
    cov = torch.tensor([[std**2, abar**0.5 * std**2], [abar**0.5 * std**2, abar * std**2 + 1 - abar]],
                       dtype=torch.float64)
    want = [conditional_gaussian(torch.tensor([m, abar**0.5 * m], dtype=torch.float64), cov,
                                 torch.tensor([[0.0, x]], dtype=torch.float64),
                                 torch.tensor([[False, True]])).mean[0, 0].item() for m, x in zip(mu, x_t)]
    got = gaussian_posterior_mean(SCHED, torch.tensor(x_t)[None], t, torch.tensor(mu)[None], std)[0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_limits_and_the_empirical_regression():
    mu = torch.tensor([[1.5, -2.0]])
    x_t = torch.tensor([[0.3, 0.7]])
    # a point prior is the prior mean at every t; at t = T - 1 (ᾱ ≈ 0) any prior is its mean
    torch.testing.assert_close(gaussian_posterior_mean(SCHED, x_t, 10, mu, 0.0), mu)
    torch.testing.assert_close(gaussian_posterior_mean(SCHED, x_t, 999, mu, 3.0), mu, atol=1e-3, rtol=0)
    # a flat prior trusts x_t: E[x_0 | x_t] -> x_t / √ᾱ
    abar = SCHED.alphas_cumprod[500]
    torch.testing.assert_close(gaussian_posterior_mean(SCHED, x_t, 500, mu, 1e4), x_t / abar.sqrt(),
                               atol=1e-4, rtol=0)
    # the estimate's error is uncorrelated with x_t (orthogonality), and smaller than trusting either side
    g = torch.Generator().manual_seed(0)
    n, std, t = 200_000, 1.5, 600
    x0 = 2.0 + std * torch.randn(n, 1, generator=g, dtype=torch.float64)
    xt = q_sample(SCHED, x0, t, torch.randn(n, 1, generator=g, dtype=torch.float64))
    est = gaussian_posterior_mean(SCHED, xt, t, torch.tensor(2.0, dtype=torch.float64), std)
    err = (x0 - est)[:, 0]
    assert abs(float(torch.corrcoef(torch.stack([err, xt[:, 0]]))[0, 1])) < 0.01
    abar = SCHED.alphas_cumprod[t].double()
    assert err.pow(2).mean() < min((x0 - 2.0).pow(2).mean(), (x0 - xt / abar.sqrt()).pow(2).mean())
    with pytest.raises(ValueError, match="std must be >= 0"):
        gaussian_posterior_mean(SCHED, x_t, 10, mu, -1.0)
    assert gaussian_posterior_mean(SCHED, x_t, 10, mu.double(), 1.0).dtype == torch.float32  # x_t's dtype


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), point=st.booleans())
def test_per_sample_timesteps_broadcast_and_dtype(seed, point):
    """(B, N, K, 2) poses with one t per sample equal the sample-by-sample results; s = 0 is the prior mean; the
    result keeps x_t's dtype, also in half precision where ᾱ_0 rounds to 1."""
    g = torch.Generator().manual_seed(seed)
    x_t, mu = torch.randn(3, 4, 5, 2, generator=g), torch.randn(3, 4, 5, 2, generator=g)
    t = torch.randint(0, 1000, (3,), generator=g)
    t[0] = 0
    std = 0.0 if point else 1.5
    got = gaussian_posterior_mean(SCHED, x_t, t, mu, std)
    for i in range(3):
        torch.testing.assert_close(got[i], gaussian_posterior_mean(SCHED, x_t[i:i + 1], int(t[i]), mu[i:i + 1], std)[0])
    if point:
        torch.testing.assert_close(got, mu)
    half = gaussian_posterior_mean(SCHED, x_t.half(), t, mu.half(), std)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    with pytest.raises(ValueError, match="not NaN"):
        gaussian_posterior_mean(SCHED, x_t, t, mu, float("nan"))
