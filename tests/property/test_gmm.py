"""DiffPose's GMM forward process (Eq. 7)."""

import numpy as np
import pytest
import torch

from posediff.diffusion import GaussianMixture, GMMForwardProcess, make_scheduler


def mixture(d=3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(3, d)) * 2
    covs = []
    for _ in range(3):
        a = rng.normal(size=(d, d)) * 0.5
        covs.append(a @ a.T + 0.1 * np.eye(d))
    return GaussianMixture(np.array([0.5, 0.3, 0.2]), means, np.stack(covs))


def endpoint_scheduler(num=100):
    """β_0 = 0 (ᾱ_0 = 1) and β_{T-1} = 1 (ᾱ_{T-1} = 0): the process' endpoints are exact."""
    betas = np.linspace(0.0, 0.05, num)
    betas[-1] = 1.0
    return make_scheduler(num_train_timesteps=num, trained_betas=betas, clip_sample=False)


def test_endpoints_x0_at_k0_and_the_mixture_at_kK():
    gmm = mixture()
    sched = endpoint_scheduler()
    proc = GMMForwardProcess(gmm, sched)
    n = 200_000
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((n, 3), 0.7, dtype=torch.float64)
    x_start, _ = proc.q_sample(x0, 0, generator=g)
    torch.testing.assert_close(x_start, x0, rtol=0, atol=0)  # k = 0: exactly x_0
    x_end, comps = proc.q_sample(x0, sched.config.num_train_timesteps - 1, generator=g)
    mean, cov = gmm.moments()
    emp_cov = torch.cov(x_end.T)
    # standard errors: mixture std / sqrt(n) for the mean, ~ sqrt(2/n) relative for the covariance
    torch.testing.assert_close(x_end.mean(0), mean, rtol=0, atol=5 * float(cov.diagonal().max().sqrt()) / n**0.5)
    torch.testing.assert_close(emp_cov, cov, rtol=0, atol=6 * float(cov.abs().max()) * (2 / n) ** 0.5 * 2)
    freq = torch.bincount(comps, minlength=3).double() / n
    torch.testing.assert_close(freq, gmm.weights, rtol=0, atol=0.005)


def test_standard_schedule_moves_from_x0_towards_the_component():
    gmm = mixture(d=2)
    sched = make_scheduler(clip_sample=False)
    proc = GMMForwardProcess(gmm, sched)
    x0 = torch.zeros(50_000, 2, dtype=torch.float64)
    comps = torch.zeros(50_000, dtype=torch.long)
    for t in (0, 300, 999):
        xt, _ = proc.q_sample(x0, t, components=comps, generator=torch.Generator().manual_seed(t))
        a = float(sched.alphas_cumprod[t])
        expected_mean = (1 - a**0.5) * gmm.means[0]  # Eq. 7 with x_0 = 0
        expected_cov = (1 - a) * gmm.covs[0]
        torch.testing.assert_close(xt.mean(0), expected_mean, rtol=0, atol=0.03 * (1 - a) ** 0.5 + 1e-9)
        torch.testing.assert_close(torch.cov(xt.T), expected_cov, rtol=0, atol=0.05 * (1 - a) + 1e-9)


def test_q_sample_matches_eq7_for_given_noise_and_any_shape():
    gmm = mixture(d=6)
    sched = make_scheduler(clip_sample=False)
    proc = GMMForwardProcess(gmm, sched)
    x0 = torch.randn(4, 2, 3, dtype=torch.float64)  # (B, J, 3) poses flattened to D = 6
    comps = torch.tensor([0, 1, 2, 1])
    eps = proc.component_noise(comps, x0, torch.Generator().manual_seed(0))
    t = torch.tensor([0, 10, 500, 999])
    xt, _ = proc.q_sample(x0, t, components=comps, noise=eps)
    a = sched.alphas_cumprod.double()[t].reshape(-1, 1, 1)
    mu = gmm.means[comps].reshape(4, 2, 3)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a.sqrt()) * mu + (1 - a).sqrt() * eps)


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
def test_reverse_process_with_an_oracle_returns_x0(prediction, steps):
    gmm = mixture(d=6)
    sched = make_scheduler(prediction_type=prediction, clip_sample=False)
    proc = GMMForwardProcess(gmm, sched)
    x0 = torch.randn(5, 2, 3, dtype=torch.float64)
    x_T, comps = proc.prior_sample(x0, torch.Generator().manual_seed(1))
    mu = gmm.means[comps].reshape(x0.shape)
    abar = sched.alphas_cumprod.double()

    def oracle(x_t, t):
        if prediction == "sample":
            return x0
        a = abar[t].reshape(-1, 1, 1)
        return (x_t - a.sqrt() * x0 - (1 - a.sqrt()) * mu) / (1 - a).sqrt()  # ε_m of Eq. 7

    out = proc.sample(oracle, x_T, comps, steps)
    torch.testing.assert_close(out.x0, x0, rtol=0, atol=1e-8)
    assert out.x0_per_step.shape == (steps, *x0.shape)


def test_fit_per_sample_mixtures_and_errors():
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(-3, 0.5, (3000, 2)), rng.normal(3, 0.5, (1000, 2))])
    gmm = GaussianMixture.fit(samples, 2, seed=0)
    order = torch.argsort(gmm.means[:, 0])
    torch.testing.assert_close(gmm.weights[order], torch.tensor([0.75, 0.25], dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(gmm.means[order], torch.tensor([[-3.0, -3.0], [3.0, 3.0]], dtype=torch.float64),
                               atol=0.06, rtol=0)
    # one mixture per sample (DiffPose: per frame, from that frame's heatmaps)
    batched = GaussianMixture(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[[1.0], [9.0]], [[5.0], [-7.0]]]),
                              torch.full((2, 2, 1, 1), 1e-6))
    proc = GMMForwardProcess(batched, endpoint_scheduler())
    x_T, comps = proc.prior_sample(torch.zeros(2, 1))
    assert comps.tolist() == [0, 1]
    torch.testing.assert_close(x_T[:, 0], torch.tensor([1.0, -7.0]), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="batch"):
        proc.prior_sample(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="D=1"):
        proc.q_sample(torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 1), torch.ones(2, 1, 1))
