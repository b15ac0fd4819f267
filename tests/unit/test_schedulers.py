import pytest
import torch
from diffusers import DDIMScheduler

from posediff.diffusion import check_scheduler, make_scheduler, q_sample, sample

SHAPES = {"poses (B,N,K,2)": (2, 4, 17, 2), "3d poses (B,J,3)": (3, 17, 3), "heatmaps (B,K,H,W)": (2, 17, 8, 8)}
STEPS = (1, 2, 3, 5, 10)


def _x0(shape, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * scale * 0.9


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_spacing_that_evaluates_only_t0_is_refused(spacing):
    with pytest.raises(ValueError, match="timestep_spacing"):
        make_scheduler(timestep_spacing=spacing)
    with pytest.raises(ValueError, match="timestep_spacing"):
        sample(lambda x, t: x, torch.zeros(1, 2), DDIMScheduler(timestep_spacing=spacing), 1)


def test_clip_range_and_thresholding_pitfalls_are_refused():
    with pytest.raises(ValueError, match="clip_sample_range"):
        make_scheduler(signal_scale=5.0, clip_sample_range=1.0)
    with pytest.raises(ValueError, match="thresholding"):
        make_scheduler(signal_scale=5.0, thresholding=True)
    make_scheduler(signal_scale=1.0, thresholding=True)  # scale 1 is what thresholding assumes
    with pytest.raises(ValueError, match="kind"):
        make_scheduler("euler")
    with pytest.raises(ValueError, match="prediction_type"):
        make_scheduler(prediction_type="v_prediction")


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_configured_as_asked(kind):
    s = make_scheduler(kind, num_train_timesteps=500, prediction_type="epsilon", signal_scale=2.5)
    assert s.config.num_train_timesteps == 500
    assert s.config.clip_sample_range == 2.5
    assert s.config.timestep_spacing == "trailing"
    assert s.config.prediction_type == "epsilon"
    check_scheduler(s, signal_scale=2.5)


def test_q_sample_moments_and_per_sample_t():
    s = make_scheduler()
    n = 200_000
    g = torch.Generator().manual_seed(0)
    for t in (0, 10, 250, 500, 900, 999):
        x0 = torch.full((n, 2), 1.7, dtype=torch.float64)
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        xt = q_sample(s, x0, torch.full((n,), t), eps)
        abar = float(s.alphas_cumprod[t])
        var = 1.0 - abar
        se_mean = (var / (2 * n)) ** 0.5
        assert abs(float(xt.mean()) - abar**0.5 * 1.7) < 5 * se_mean + 1e-12
        if var > 1e-6:
            assert abs(float(xt.var()) / var - 1.0) < 5 * (2.0 / (2 * n)) ** 0.5
    # one t per sample, matching diffusers' own add_noise
    x0 = _x0((4, 3, 2), 1.0)
    eps = torch.randn(4, 3, 2, dtype=torch.float64)
    t = torch.tensor([0, 5, 500, 999])
    torch.testing.assert_close(q_sample(s, x0, t, eps), s.add_noise(x0, eps, t))
    with pytest.raises(ValueError, match="one timestep per sample"):
        q_sample(s, x0, torch.tensor([1, 2]), eps)
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        q_sample(s, x0, torch.tensor([0, 1, 2, 1000]), eps)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kind,prediction", [("ddim", "sample"), ("ddim", "epsilon"), ("ddpm", "sample")])
def test_loop_with_an_oracle_model_returns_x0_exactly(shape, kind, prediction):
    scale = 5.0
    sched = make_scheduler(kind, prediction_type=prediction, signal_scale=scale)
    abar = sched.alphas_cumprod.to(torch.float64)
    x0 = _x0(shape, scale)
    seen = []

    def oracle(x_t, t):
        assert t.dtype == torch.long and t.shape == (shape[0],)
        seen.append(int(t[0]))
        if prediction == "sample":
            return x0
        a = abar[t].reshape(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()  # the true ε of x_t

    for steps in STEPS:
        seen.clear()
        g = torch.Generator().manual_seed(steps)
        out = sample(oracle, torch.randn(shape, dtype=torch.float64, generator=g), sched, steps, generator=g)
        torch.testing.assert_close(out.x0, x0, rtol=0, atol=1e-9)
        assert out.x0_per_step.shape == (steps, *shape)
        torch.testing.assert_close(out.x0_per_step[-1], x0, rtol=0, atol=1e-9)
        assert seen[0] == 999 and len(seen) == steps and seen == out.timesteps.tolist()
        assert seen == sorted(seen, reverse=True)


def test_loop_leaves_the_scheduler_alone_and_checks_shapes():
    sched = make_scheduler()
    sched.set_timesteps(7)
    before = sched.timesteps.clone()
    sample(lambda x, t: torch.zeros_like(x), torch.randn(2, 3), sched, 2)
    assert torch.equal(sched.timesteps, before)
    with pytest.raises(ValueError, match="model_fn returned shape"):
        sample(lambda x, t: x[:, :1], torch.randn(2, 3), sched, 2)
    with pytest.raises(ValueError, match="num_steps"):
        sample(lambda x, t: x, torch.randn(2, 3), sched, 0)


def test_stochastic_ddim_is_reproducible_with_a_generator():
    sched = make_scheduler(signal_scale=1.0)

    def model(x, t):
        return torch.tanh(x)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return sample(model, torch.randn(2, 5, generator=g), sched, 4, eta=1.0, generator=g).x0

    torch.testing.assert_close(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
