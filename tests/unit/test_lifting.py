"""Lifting models: the recipes build, the heads train and sample, the public ``lift`` contract, bad input."""

import numpy as np
import pytest
import torch

import posediff
from posediff.diffusion import GaussianMixture
from posediff.models.lifter import weak_perspective_scale

SMALL = dict(dim=32, context_dim=32, blocks=1, context_blocks=1, heads=2, gmm_samples=64, em_iterations=3)


def batch(b=4, frames=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, frames, 17, 2, generator=g) - 0.5
    unc = torch.zeros(b, frames, 17, 2, 5)
    unc[..., 0, 0], unc[..., 1, 0] = 0.9, 0.1
    unc[..., 0, 1:3], unc[..., 1, 1:3] = kp, kp + 0.02
    unc[..., 3:5] = 0.01
    target = torch.randn(b, 17, 3, generator=g) * 0.2
    return kp, unc, target - target[:, :1]


@pytest.mark.parametrize("name", ["lifting_context", "lifting_baseline", "diffpose", "diffpose_control",
                                  "diffpose_released", "diffpose_video", "diffpose_video_tiny"])
def test_recipes_build(name):
    model = posediff.create_model(name, **({} if "video" in name else SMALL))
    assert name in posediff.list_models()
    assert model.frames == posediff.get_config(name).frames


@pytest.mark.parametrize("name, kw", [("lifting_baseline", {}), ("diffpose", {}), ("diffpose", {"loss": "x0"}),
                                      ("diffpose", {"covariance": "joint", "depth": "histogram"}),
                                      ("diffpose", {"freeze_context": False}), ("diffpose_released", {}),
                                      ("diffpose_control", {}),
                                      ("diffpose", {"state": "uvxyz", "timesteps": (12, 0), "loss": "epsilon"})])
def test_training_step_gives_finite_losses_and_gradients(name, kw):
    model = posediff.create_model(name, **SMALL, **kw)
    kp, unc, target = batch()
    out = model(kp, target, unc, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in model.head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    frozen = [p.grad for p in model.context.parameters()]
    assert all(g is None for g in frozen) == kw.get("freeze_context", True)


def test_diffpose_samples_hypotheses_and_is_seeded():
    model = posediff.create_model("diffpose", **SMALL).eval()
    kp, unc, _ = batch()
    a = model.predict(kp, unc, hypotheses=3, steps=2, generator=torch.Generator().manual_seed(1))
    b = model.predict(kp, unc, hypotheses=3, steps=2, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 17, 3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a[:, 0] - a[:, 1]).abs().max() > 0  # hypotheses differ
    assert a[..., 0, :].abs().max() == 0  # root-relative


def test_lift_contract_in_millimetres():
    model = posediff.create_model("diffpose", **SMALL).eval()
    px = np.random.default_rng(0).uniform(300, 700, size=(2, 17, 2))
    out = model.lift(px, image_size=(1000, 1002))
    assert out.shape == (2, 17, 3) and out[:, 0].abs().max() == 0
    hyps = model.lift(px, image_size=(1000, 1002), hypotheses=4, steps=1, return_hypotheses=True)
    assert hyps.shape == (2, 4, 17, 3)
    unc = np.zeros((2, 17, 1, 5))
    unc[..., 0, 0], unc[..., 0, 1:3], unc[..., 0, 3:5] = 1.0, px, 5.0
    assert model.lift(px, image_size=(1000, 1002), uncertainty=unc).shape == (2, 17, 3)
    base = posediff.create_model("lifting_baseline", **SMALL).eval()
    assert base.lift(px, (1000, 1002), return_hypotheses=True).shape == (2, 1, 17, 3)


def test_lift_takes_coco17_and_converts_it():
    from posediff.skeletons import coco17_to_h36m17

    model = posediff.create_model("lifting_baseline", **SMALL).eval()
    coco = np.random.default_rng(1).uniform(300, 700, size=(2, 17, 2))
    h36m = coco17_to_h36m17(np.concatenate([coco, np.ones((2, 17, 1))], -1))[..., :2]
    torch.testing.assert_close(model.lift(coco, (1000, 1000), joints="coco17"), model.lift(h36m, (1000, 1000)))


@pytest.mark.parametrize("args, message", [
    (dict(keypoints_2d=np.zeros((2, 16, 2))), r"expected \(B, 17, 2\) pixels in the H36M-17 joint order"),
    (dict(keypoints_2d=np.full((2, 17, 2), np.nan)), r"non-finite value at index \(0, 0, 0, 0\)"),
    (dict(image_size=(0, 100)), "positive width and height"),
    (dict(image_size="big"), r"expected \(width, height\)"),
    (dict(uncertainty=np.zeros((2, 17, 5))), r"uncertainty has shape"),
    (dict(steps=0), r"steps=0, expected an integer in \[1, 50\]"),
    (dict(hypotheses=0), "hypotheses=0"),
    (dict(joints="mpii16"), r"joints='mpii16', expected 'h36m17' .* or 'coco17'"),
    (dict(joints="coco17", uncertainty=np.ones((2, 17, 1, 5))), "uncertainty is per H36M-17 joint"),
    (dict(uncertainty=np.concatenate([np.ones((2, 17, 1, 3)), -np.ones((2, 17, 1, 2))], -1)),
     r"σu, σv \(fields 3, 4\) must be positive"),
    (dict(uncertainty=np.concatenate([np.zeros((2, 17, 1, 1)), np.ones((2, 17, 1, 4))], -1)),
     r"weights π \(field 0\) must be >= 0 with a positive sum"),
    (dict(uncertainty=np.full((2, 17, 1, 5), np.inf)), "uncertainty holds a non-finite value"),
])
def test_lift_bad_input_is_named(args, message):
    model = posediff.create_model("diffpose", **SMALL).eval()
    call = dict(keypoints_2d=np.full((2, 17, 2), 500.0), image_size=(1000, 1000))
    call.update(args)
    with pytest.raises(ValueError, match=message):
        model.lift(**call)


def test_one_pass_model_refuses_steps():
    base = posediff.create_model("lifting_baseline", **SMALL).eval()
    with pytest.raises(ValueError, match="one pass"):
        base.lift(np.full((1, 17, 2), 500.0), (1000, 1000), steps=3)


def test_weak_perspective_scale_recovers_a_scaling():
    xyz = torch.randn(3, 17, 3)
    xyz = xyz - xyz[:, :1]
    uv = xyz[..., :2] / torch.tensor([2.0, 3.0, 4.0])[:, None, None] + 0.3
    torch.testing.assert_close(weak_perspective_scale(uv, xyz), torch.tensor([2.0, 3.0, 4.0]))


@pytest.mark.parametrize("block", [None, 3])
def test_batched_em_matches_scikit_learn(block):
    from sklearn.mixture import GaussianMixture as SkGMM

    rng = np.random.default_rng(0)
    rows = [np.concatenate([rng.normal(size=(300, 6)) * 0.5, rng.normal(size=(200, 6)) * 0.2 + 2]) for _ in range(2)]
    fit = GaussianMixture.fit_batched(torch.tensor(np.stack(rows)), 2, iterations=60, block=block,
                                      generator=torch.Generator().manual_seed(0))
    for i, x in enumerate(rows):
        sk = SkGMM(2, covariance_type="full", random_state=0).fit(x)
        order = np.argsort(fit.means[i, :, 0].numpy())
        sk_order = np.argsort(sk.means_[:, 0])
        np.testing.assert_allclose(fit.weights[i].numpy()[order], sk.weights_[sk_order], atol=1e-3)
        np.testing.assert_allclose(fit.means[i].numpy()[order], sk.means_[sk_order], atol=1e-2)
        if block is None:  # the same family: the same covariances
            np.testing.assert_allclose(fit.covs[i].numpy()[order], sk.covariances_[sk_order], atol=1e-2)
        else:  # block-diagonal: no covariance between blocks
            assert fit.covs[i, :, :3, 3:].abs().max() == 0


def test_released_code_behaviours():
    """diffpose_released: uvxyz state, zero-mean per-joint noise, ε loss, an H_K point as start (no test-time
    noise), timesteps (12, 0), no context."""
    model = posediff.create_model("diffpose_released", **SMALL).eval()
    head = model.head
    assert (head.state, head.noise, head.loss_kind, head.test_start, head.timesteps, head.context_input) == (
        "uvxyz", "per_joint", "epsilon", "point", (12, 0), False)
    assert head.scheduler.config.num_train_timesteps == 51 and head.scheduler.config.prediction_type == "epsilon"
    torch.testing.assert_close(head.scheduler.betas[[0, -1]], torch.tensor([1e-4, 1e-3]))
    kp, unc, _ = batch()
    one = unc.clone()
    one[..., 0, 0], one[..., 1, 0] = 1.0, 0.0
    out = model.predict(kp, one, hypotheses=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 17, 3)
    torch.testing.assert_close(out[:, 0], out[:, 2])  # no test-time noise: one component, one pose, repeated
    seen = []
    model.context.register_forward_hook(lambda m, args, res: seen.append(args[0][:, 0]))
    out = model.predict(kp, unc, hypotheses=3, generator=torch.Generator().manual_seed(0))
    read = seen[-1].reshape(4, 3, 17, 2)  # each hypothesis's 2D, as its context encoder read it
    first = (read - kp[:, None, 0]).abs().amax(-1) < 1e-6
    second = (read - (kp[:, None, 0] + 0.02)).abs().amax(-1) < 1e-6
    assert (first | second).all() and first.any() and second.any()  # per joint one component's μ, drawn by π
    assert first.float().mean() > 0.7
    calls = []
    head.denoiser.register_forward_hook(lambda m, args, res: calls.append((int(args[1][0]), args[2].abs().max())))
    model.predict(kp, unc, hypotheses=1)
    assert [t for t, _ in calls] == [12, 0] and all(c == 0 for _, c in calls)  # timesteps 12, 0; no context
    with pytest.raises(ValueError, match="needs state='uvxyz'"):
        posediff.create_model("diffpose", noise="per_joint", **SMALL)
    with pytest.raises(ValueError, match="descending"):
        posediff.create_model("diffpose", timesteps=(0, 12), **SMALL)


def test_explicit_timesteps_match_the_loop_when_they_are_its_own():
    """Explicit timesteps equal to the loop's own trailing DDIM steps give the loop's samples."""
    model = posediff.create_model("diffpose", **SMALL).eval()
    kp, unc, _ = batch()
    a = model.predict(kp, unc, hypotheses=2, steps=2, generator=torch.Generator().manual_seed(3))
    model.head.timesteps = (49, 24)
    b = model.predict(kp, unc, hypotheses=2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw, message", [
    ({"noise": "per_joint", "state": "uvxyz"}, "samples from the H_K point"),
    ({"test_start": "point"}, "samples from the H_K point"),
    ({"hypotheses": 0}, "hypotheses=0, expected an integer >= 1"),
    ({"num_components": 0}, "num_components=0"),
    ({"steps": 60}, "steps=60 exceeds num_train_timesteps=50"),
    ({"diffusion": False, "loss": "epsilon"}, "diffusion-off control .* needs noise='gmm' and loss='x0'"),
])
def test_bad_head_settings_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        posediff.create_model("diffpose", **{**SMALL, **kw})


def test_steps_and_explicit_timesteps_are_one_or_the_other():
    model = posediff.create_model("diffpose_released", **SMALL).eval()
    kp, unc, _ = batch()
    with pytest.raises(ValueError, match="explicit timesteps"):
        model.predict(kp, unc, steps=2)


def test_a_frozen_untrained_context_is_refused_for_training():
    from posediff.engine.config import TrainConfig
    from posediff.tasks import get_task

    cfg = TrainConfig(recipe="diffpose", model=SMALL)
    model = posediff.create_model("diffpose", **SMALL)
    with pytest.raises(ValueError, match="no pretrained one is given"):
        get_task("diffpose").check_model(model, get_task("diffpose").resolve(cfg))
    get_task("diffpose").check_model(model, TrainConfig(recipe="diffpose", model={**SMALL, "freeze_context": False}))


def test_sampling_in_blocks_of_rows_gives_the_same_hypotheses(monkeypatch):
    """On a CPU the denoiser runs over the B·N hypothesis rows in blocks (faster per row); the result is the
    one call's (to float rounding: a matrix product's sums may run in another order for another row count)."""
    from posediff.models import lifter

    model = posediff.create_model("diffpose", **SMALL).eval()
    px = np.random.default_rng(0).uniform(300, 700, size=(3, 17, 2))
    whole = model.lift(px, (1000, 1000), hypotheses=4, return_hypotheses=True)
    monkeypatch.setattr(lifter, "CPU_ROWS", 5)  # 12 rows in blocks of 5, 5 and 2
    torch.testing.assert_close(model.lift(px, (1000, 1000), hypotheses=4, return_hypotheses=True), whole,
                               atol=1e-2, rtol=1e-4)  # mm


def test_the_control_never_sees_x_t(monkeypatch):
    """``diffpose_control`` reads the context and H_K's mixture alone: its training input is a draw of the GMM at
    t = K − 1 whatever the target, and an x_t of NaNs at every sampling step leaves its poses finite, where
    DiffPose's turn NaN."""
    from posediff.diffusion import gmm as gmm_module

    control = posediff.create_model("diffpose_control", **SMALL)
    kp, unc, target = batch()
    seen = []
    monkeypatch.setattr(control.head, "denoiser", _Spy(control.head.denoiser, seen))
    control.eval()  # the running training-set statistics (H_K's depth spread) held still
    for shift in (0.0, 1.0):  # another target, the same input
        control(kp, target + shift, unc, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0][0], seen[1][0])
    assert (seen[0][1] == 49).all()
    original = gmm_module._sample

    def poisoned(model_fn, x, *args, **kwargs):  # the DDIM loop hands the head an x_t of NaNs at every step
        return original(lambda u, t: model_fn(torch.full_like(u, float("nan")), t), x, *args, **kwargs)

    monkeypatch.setattr(gmm_module, "_sample", poisoned)
    assert torch.isfinite(control.predict(kp, unc, hypotheses=2, steps=2)).all()
    diffpose = posediff.create_model("diffpose", **SMALL).eval()
    assert not torch.isfinite(diffpose.predict(kp, unc, hypotheses=2, steps=2)).all()


class _Spy(torch.nn.Module):
    def __init__(self, net, seen):
        super().__init__()
        self.net, self.seen = net, seen

    def forward(self, x, t, context):
        self.seen.append((x.detach().clone(), t.clone()))
        return self.net(x, t, context)


def test_the_released_denoiser():
    """denoiser="released": ChebConv over the Chebyshev basis of the released code's graph (T_0 = I, T_1 the
    Laplacian of the row-normalised adjacency with self loops, T_2 = 2 L T_1 − I), width 96, 5 blocks, a 384-wide
    time embedding, no context read."""
    from posediff.models.denoisers.graph import ChebConv, ReleasedGraphDenoiser, chebyshev_basis, skeleton_adjacency

    adj = skeleton_adjacency("h36m17")
    basis = chebyshev_basis(adj, 2)
    a = (adj + torch.eye(17)) / (adj + torch.eye(17)).sum(-1, keepdim=True)
    lap = torch.eye(17) - a  # rows of Â sum to 1, so D = I
    torch.testing.assert_close(basis, torch.stack([torch.eye(17), lap, 2 * lap @ lap - torch.eye(17)]))
    conv = ChebConv(3, 4, adj)
    x = torch.randn(2, 17, 3)
    want = sum(basis[k] @ x @ conv.weight[k] for k in range(3)) + conv.bias
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)

    model = posediff.create_model("diffpose_released", context_blocks=1, context_dim=32)
    den = model.head.denoiser
    assert isinstance(den, ReleasedGraphDenoiser) and (den.dim, len(den.blocks)) == (96, 5)
    assert den.time[-1].out_features == 384
    den.eval()
    h, t = torch.randn(3, 17, 5), torch.tensor([0, 12, 50])
    out = den(h, t, torch.randn(3, 17, 32))
    assert out.shape == (3, 17, 5)
    torch.testing.assert_close(out, den(h, t, torch.zeros(3, 17, 32)))  # the context is never read
    with pytest.raises(ValueError, match="denoiser must be 'graph' or 'released'"):
        posediff.create_model("diffpose", denoiser="chebnet", **SMALL)
    with pytest.raises(ValueError, match="reads no context"):
        posediff.create_model("diffpose", denoiser="released", **SMALL)
    w = ChebConv(96, 96, adj).weight  # the released init's spread: √(2 / ((K + 2)·in·out))
    assert abs(w.std().item() / (2 / (4 * 96 * 96)) ** 0.5 - 1) < 0.05
    # files made before version 3 rebuild as they were trained
    from posediff.registry import as_trained

    assert as_trained("diffpose_released", {}, 2) == {"denoiser": "graph", "dim": 128, "blocks": 3}
    assert as_trained("diffpose_video_tiny", {"frames": 9}, 2)["frames"] == 9
