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
