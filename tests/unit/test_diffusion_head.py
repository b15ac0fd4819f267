"""DiffusionRegPose's head in the paper's form: no shortcut through x_t, training and every way of sampling."""

import pytest
import torch

import posediff
from posediff.data import collate
from posediff.data.synthcrowd import SceneConfig, synthcrowd_split, write_split


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthcrowd")
    write_split(root, "train", 24, seed=3, config=SceneConfig(size=128), progress=False)
    return synthcrowd_split(root, "train", prior="coco17")


def separability(scenes, **overrides) -> dict[int, float]:
    """The largest AUC per sampling timestep of :func:`~posediff.evaluation.shortcut.padding_separability` for
    ``diffusion_regpose_tiny`` (its own 10 candidates) on 24 SynthCrowd scenes in batches of 4."""
    from posediff.evaluation.shortcut import padding_separability

    torch.manual_seed(0)
    model = posediff.create_model("diffusion_regpose_tiny", **overrides)
    batches = [collate([scenes[i] for i in range(start, start + 4)]) for start in range(0, len(scenes), 4)]
    return {t: max(v.values()) for t, v in padding_separability(model, batches).items()}


def test_x_t_alone_cannot_tell_a_real_candidate_from_a_padded_one(scenes):
    """The person score must come from the image: at every sampling timestep neither ‖x_t‖ nor a probe on x_t and the
    candidate's index separates the candidates with a target from the padded ones (AUC <= 0.6), as the recipe
    trains. The paper's default padding ("empty"), per-image "GT repeat", candidates left in their order, and the
    person-bound head posediff had before (anchor="regression") all fail it: the shortcut."""
    for t, auc in separability(scenes).items():
        assert auc <= 0.6, (t, auc)
    for shortcut in (dict(anchor="regression"), dict(padding="empty"), dict(padding="repeat")):
        auc = separability(scenes, **shortcut)
        assert max(auc.values()) > 0.65, (shortcut, auc)


def test_candidates_in_their_order_would_leak(scenes, monkeypatch):
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: torch.arange(n, device=kw.get("device")))
    auc = separability(scenes)
    assert max(auc.values()) > 0.65, auc


def _batch(scenes, n=2):
    return collate([scenes[i] for i in range(n)])


@pytest.mark.parametrize("overrides", [{}, {"diffusion": False}, {"train_timestep": "zero"}])
def test_paper_head_trains_every_block(scenes, overrides):
    torch.manual_seed(0)
    model = posediff.create_model("diffusion_regpose_tiny", **overrides).train()
    images, mask, targets = _batch(scenes)
    losses = model(images, mask, targets)
    assert torch.isfinite(losses["loss"]) and {"pose0_keypoints", "pose1_keypoints", "keypoints"} <= losses.keys()
    losses["loss"].backward()
    for name in ("denoiser.kca.in_proj_weight", "denoiser.kca_pose.in_proj_weight", "denoiser.ksa.in_proj_weight",
                 "init_keypoints.layers.0.weight", "decoder.kp_heads.0.layers.2.weight"):
        grad = dict(model.head.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_sampling_ensembles_and_the_control(scenes):
    torch.manual_seed(0)
    images, mask, _ = _batch(scenes)
    base = posediff.create_model("diffusion_regpose_tiny").eval()
    state = base.state_dict()
    shapes = {}
    for ensemble in ("trajectory", "pool", "last"):
        model = posediff.create_model("diffusion_regpose_tiny", ensemble=ensemble, nms_threshold=1.0).eval()
        model.load_state_dict(state)
        logits, _, keypoints = _head_outputs(model, images, mask, steps=3)
        shapes[ensemble] = logits.shape[1]
        assert keypoints.shape[:2] == logits.shape and torch.isfinite(logits).all()
    assert shapes == {"trajectory": 10, "pool": 30, "last": 10}  # pooling multiplies the candidates by the steps
    traj = posediff.create_model("diffusion_regpose_tiny", ensemble="trajectory").eval()
    last = posediff.create_model("diffusion_regpose_tiny", ensemble="last").eval()
    traj.load_state_dict(state)
    last.load_state_dict(state)
    (tl, tb, tk), (ll, lb, lk) = (_head_outputs(m, images, mask, steps=3) for m in (traj, last))
    torch.testing.assert_close(tk, lk)  # the same poses: the last step's
    assert not torch.allclose(tl, ll)  # scored over the whole trajectory
    one = _head_outputs(traj, images, mask, steps=1)
    torch.testing.assert_close(one[0], _head_outputs(last, images, mask, steps=1)[0])  # one step: the same
    control = posediff.create_model("diffusion_regpose_tiny", diffusion=False).eval()
    control.load_state_dict(state)
    a = _head_outputs(control, images, mask, steps=2, seed=1)[2]
    b = _head_outputs(control, images, mask, steps=2, seed=2)[2]
    assert not torch.allclose(a, b)  # fresh noise at every step: another seed, other candidates


def test_the_control_never_sees_x_t(scenes, monkeypatch):
    """The diffusion-off control reads the image alone: in training its x_t is noise whatever x_0 is, at t = T - 1;
    in sampling, an x_t made of NaNs at every step leaves its poses finite, while the diffusion head's turn NaN."""
    from posediff.models.heads import diffusion as head_module

    torch.manual_seed(0)
    images, mask, _ = _batch(scenes)
    control = posediff.create_model("diffusion_regpose_tiny", diffusion=False).eval()
    x0 = torch.randn(2, 10, 17, 2)
    torch.manual_seed(1)
    a = control.head.noisy_candidates(x0, torch.zeros(2, dtype=torch.long))
    torch.manual_seed(1)
    b = control.head.noisy_candidates(x0 + 100.0, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(a, b)
    assert (control.head._timesteps(4, "cpu") == control.head.scheduler.config.num_train_timesteps - 1).all()
    original = head_module.sample

    def poisoned(model_fn, x_T, *args, **kwargs):  # every step's x_t replaced by NaNs before the head reads it
        return original(lambda x_t, t: model_fn(torch.full_like(x_t, float("nan")), t), x_T, *args, **kwargs)

    monkeypatch.setattr(head_module, "sample", poisoned)
    assert torch.isfinite(_head_outputs(control, images, mask, steps=2)[2]).all()
    diffusion = posediff.create_model("diffusion_regpose_tiny").eval()
    diffusion.load_state_dict(control.state_dict())
    assert not torch.isfinite(_head_outputs(diffusion, images, mask, steps=2)[2]).all()


def test_training_timesteps_follow_train_timestep():
    uniform = posediff.create_model("diffusion_regpose_tiny").head
    torch.manual_seed(0)
    t = uniform._timesteps(4096, "cpu")
    assert int(t.min()) >= 0 and int(t.max()) < 1000 and len(t.unique()) > 900  # U{0 .. T-1}
    zero = posediff.create_model("diffusion_regpose_tiny", train_timestep="zero").head
    assert (zero._timesteps(64, "cpu") == 0).all()  # the released code's t = 0
    visited = posediff.create_model("diffusion_regpose_tiny", train_timestep="sampling").head
    assert set(visited._timesteps(256, "cpu").tolist()) == {999, 749, 499, 249}  # the 4-step sampler's


def test_pooling_can_leave_the_last_step_out(scenes):
    """``ensemble="pool", ensemble_drop_last=True`` (the released code's ensemble) pools every step but the last;
    with one step it keeps that one."""
    torch.manual_seed(0)
    images, mask, _ = _batch(scenes)
    pool = posediff.create_model("diffusion_regpose_tiny", ensemble="pool").eval()
    drop = posediff.create_model("diffusion_regpose_tiny", ensemble="pool", ensemble_drop_last=True).eval()
    drop.load_state_dict(pool.state_dict())
    everything, but_last = (_head_outputs(m, images, mask, steps=3) for m in (pool, drop))
    assert but_last[0].shape[1] == 20 and everything[0].shape[1] == 30
    torch.testing.assert_close(but_last[2], everything[2][:, :20])  # the first two steps' candidates
    assert _head_outputs(drop, images, mask, steps=1)[0].shape[1] == 10


def _head_outputs(model, images, mask, steps, seed=0):
    with torch.no_grad():
        enc = model.encode(images, mask)
        humans = model.human_decoder(enc.memory, enc.padding_mask, enc.spatial_shapes, enc.valid_ratios)
        return model.head.predict(humans, enc, steps=steps, generator=torch.Generator().manual_seed(seed))


def test_bad_head_settings_are_refused():
    with pytest.raises(ValueError, match="ensemble must be one of"):
        posediff.create_model("diffusion_regpose_tiny", ensemble=True)
    with pytest.raises(ValueError, match="repeat_batch"):
        posediff.create_model("diffusion_regpose_tiny", anchor="regression", padding="repeat_batch")
    with pytest.raises(ValueError, match="padding must be one of"):
        posediff.create_model("diffusion_regpose_tiny", padding="zeros")
