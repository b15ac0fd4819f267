"""Top-down blocks: the heatmap codec, crops and their inverse, the flip test, the diffusion head's masks."""

import numpy as np
import pytest
import torch

import posediff
from posediff.data.topdown import (
    HeatmapCodec,
    box_to_region,
    crop_matrix,
    flip_heatmaps,
    invert_matrix,
    transform_points,
    warp_image,
)
from posediff.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from posediff.diffusion import ddim_sample, make_scheduler, trailing_timesteps
from posediff.models.heads.diffusion_heatmap import render_gaussians, render_limbs
from posediff.skeletons import get_skeleton


@pytest.mark.parametrize("blur", [False, True])
def test_heatmap_round_trip_is_sub_pixel(blur):
    codec = HeatmapCodec((96, 128), stride=4, sigma=1.5, blur=blur)
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(64, 17, 2, generator=g) * torch.tensor([60.0, 90.0]) + 18  # inside, away from the border
    heat, weight = codec.encode(kp, torch.ones(64, 17))
    assert heat.shape == (64, 17, 32, 24) and bool((weight == 1).all())
    out = codec.decode(heat)
    err = (out[..., :2] - kp).norm(dim=-1)
    assert err.max() < 0.1  # input pixels
    assert torch.allclose(out[..., 2], heat.flatten(2).amax(-1))


def test_encoding_weights_drop_unlabelled_and_far_joints():
    codec = HeatmapCodec((96, 128), stride=4, sigma=1.5)
    kp = torch.tensor([[[40.0, 50.0], [40.0, 50.0], [-100.0, 50.0]]])
    heat, weight = codec.encode(kp, torch.tensor([[2, 0, 1]]))
    assert weight.tolist() == [[1.0, 0.0, 0.0]]
    assert heat[0, 1].abs().sum() == 0 and heat[0, 2].abs().sum() == 0


def test_codec_refuses_a_size_the_stride_does_not_divide():
    with pytest.raises(ValueError, match="multiple of stride"):
        HeatmapCodec((90, 128), stride=4)


def test_crop_and_its_inverse_map_keypoints_back():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 300, 20), rng.uniform(0, 300, 20), rng.uniform(10, 200, 20),
                             rng.uniform(10, 200, 20)])
    centres, sizes = box_to_region(boxes, aspect=96 / 128)
    assert np.allclose(sizes[:, 0] / sizes[:, 1], 96 / 128)
    assert (sizes >= boxes[:, 2:] * 1.25 - 1e-9).all()  # the region holds the padded box
    for c, s in zip(centres, sizes):
        m = crop_matrix(c, s, rng.uniform(-80, 80), (96, 128))
        pts = rng.uniform(0, 500, (17, 2))
        back = transform_points(invert_matrix(m), transform_points(m, pts))
        assert np.abs(back - pts).max() < 0.5
        assert np.allclose(transform_points(m, c[None]), [[48.0, 64.0]])  # the centre lands mid-input


def test_warp_puts_image_content_where_the_matrix_sends_it():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:44, 70:74] = 255  # a bright square centred at (72, 42)
    m = crop_matrix(np.array([60.0, 50.0]), np.array([60.0, 80.0]), 30.0, (48, 64))
    crop = warp_image(image, m, (48, 64))[0].numpy()  # (64, 48)
    ys, xs = np.nonzero(crop > 0.5)
    expected = transform_points(m, np.array([[72.0, 42.0]]))[0]
    assert abs(xs.mean() + 0.5 - expected[0]) < 1.0 and abs(ys.mean() + 0.5 - expected[1]) < 1.0


@pytest.mark.parametrize("recipe", ["simplebaseline_tiny", "diffusionpose_tiny"])
def test_flip_test_of_a_symmetric_input_is_symmetric(recipe):
    """A model that reads a mirrored crop and flips its heatmaps back agrees with itself: on a crop that is its
    own mirror image, the averaged heatmaps of left and right joints are mirror images of each other (for the
    diffusion head: both passes sample from the same noise)."""
    torch.manual_seed(0)
    model = posediff.create_model(recipe, flip_test=True).eval()
    half = torch.randn(1, 3, 128, 48)
    crop = torch.cat([half, half.flip(-1)], -1)  # (1, 3, 128, 96): its own mirror image
    hm = model.heatmaps(crop, generator=torch.Generator().manual_seed(0))[0]  # (K, h, w)
    flip = list(model.skeleton.flip_index)
    assert flip == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # COCO-17's left / right pairs
    assert torch.allclose(hm, hm.flip(-1)[flip], atol=1e-6)
    assert torch.allclose(flip_heatmaps(flip_heatmaps(hm, flip), flip), hm)


def test_mask_rendering_follows_the_skeletons_limbs():
    sk = get_skeleton("coco17")
    limbs = torch.tensor(sk.limbs)
    pts = torch.rand(1, 17, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([20.0, 28.0]) + 2
    masks = render_limbs(pts, limbs, (24, 32), width=1.0)  # (1, L, h, w)
    assert masks.shape == (1, len(sk.limbs), 32, 24)
    for li, (a, b) in enumerate(sk.limbs):
        for s in (0.0, 0.25, 0.5, 0.75, 1.0):  # cells on the segment from joint a to joint b are lit
            p = pts[0, a] + s * (pts[0, b] - pts[0, a])
            ix, iy = int(p[0].clamp(0, 23)), int(p[1].clamp(0, 31))
            d = torch.tensor([ix + 0.5, iy + 0.5]) - p  # the cell centre's offset from the point: < 0.71 cell
            assert masks[0, li, iy, ix] >= torch.exp(-(d ** 2).sum() / 2) - 1e-5
        far = (torch.stack(torch.meshgrid(torch.arange(32) + 0.5, torch.arange(24) + 0.5, indexing="ij")[::-1], -1)
               - (pts[0, a] + pts[0, b]) / 2).norm(dim=-1) > (pts[0, a] - pts[0, b]).norm() / 2 + 4
        assert masks[0, li][far].max() < 0.01  # far from the limb: dark
    g = render_gaussians(pts, (24, 32), sigma=1.0)
    idx = g[0].flatten(1).argmax(-1)
    assert torch.equal(torch.stack([idx % 24, idx // 24], -1), pts[0].floor().long())


def test_ddim_over_explicit_timesteps_matches_the_trailing_loop():
    sched = make_scheduler("ddim", num_train_timesteps=100, prediction_type="sample")
    assert trailing_timesteps(99, 4) == [99, 74, 49, 24]
    target = torch.tensor([[0.3, -0.2]])
    x = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(lambda x_t, t: target.expand_as(x_t), x, sched, [60, 30, 0])
    assert torch.allclose(out.x0, target) and out.x0_per_step.shape == (3, 1, 2)
    from posediff.diffusion import sample

    a = sample(lambda x_t, t: x_t * 0.5, x, sched, 4).x0
    b = ddim_sample(lambda x_t, t: x_t * 0.5, x, sched, trailing_timesteps(99, 4)).x0
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="descending"):
        ddim_sample(lambda x_t, t: x_t, x, sched, [0, 10])


@pytest.mark.parametrize("recipe", ["simplebaseline_tiny", "diffusionpose_tiny"])
def test_tiny_recipes_train_and_predict(recipe):
    torch.manual_seed(0)
    model = posediff.create_model(recipe)
    codec = model.codec
    kp = torch.rand(2, 17, 2) * torch.tensor([80.0, 110.0]) + 8
    vis = torch.ones(2, 17)
    heat, w = codec.encode(kp, vis)
    targets = dict(heatmaps=heat, weights=w, keypoints=torch.cat([kp, vis[..., None]], -1))
    losses = model(torch.randn(2, 3, 128, 96), targets)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    model.eval()
    out = model.predict(torch.randn(2, 3, 128, 96), steps=1)
    assert out.shape == (2, 17, 3)
    image = np.zeros((200, 150, 3), np.uint8)
    assert model.predict_persons(image, np.array([[10.0, 20.0, 50.0, 90.0]])).shape == (1, 17, 3)
    assert model.predict_persons(image, np.zeros((0, 4))).shape == (0, 17, 3)
    with pytest.raises(ValueError, match="no area"):
        model.predict_persons(image, np.array([[10.0, 20.0, 0.0, 90.0]]))
    with pytest.raises(ValueError, match="uint8"):
        model.predict_persons(image.astype(np.float32), np.array([[10.0, 20.0, 5.0, 9.0]]))


def test_diffusion_heatmap_head_options():
    for space in ("coordinates", "pixels"):
        m = posediff.create_model("diffusionpose_tiny", space=space, start="noise").eval()
        assert m.predict(torch.randn(1, 3, 128, 96), steps=2).shape == (1, 17, 3)
    with pytest.raises(ValueError, match="space"):
        posediff.create_model("diffusionpose_tiny", space="latent")
    with pytest.raises(ValueError, match="start must be one of"):
        posediff.create_model("diffusionpose_tiny", start="truth")
    with pytest.raises(ValueError, match=r"start_timestep must be in \[0, 1000\), got 1000"):
        posediff.create_model("diffusionpose_tiny", start_timestep=1000)
    with pytest.raises(ValueError, match="train_start"):
        posediff.create_model("diffusionpose_tiny", space="pixels", train_start="coarse")
    m = posediff.create_model("diffusionpose_tiny", train_start="coarse", detach_features=True)
    kp = torch.rand(2, 17, 2) * torch.tensor([80.0, 110.0]) + 8
    heat, w = m.codec.encode(kp, torch.ones(2, 17))
    losses = m(torch.randn(2, 3, 128, 96), dict(heatmaps=heat, weights=w, keypoints=torch.cat([kp, w[..., None]], -1)))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert posediff.get_config("diffusionpose").backbone == "hrnet_w32"


@pytest.mark.parametrize("start", ["coarse", "coarse_clean", "noise"])
def test_each_sampling_start_gives_the_denoiser_its_own_first_x_t(start):
    torch.manual_seed(0)
    m = posediff.create_model("diffusionpose_tiny", start=start, start_timestep=500).eval()
    head = m.head
    torch.nn.init.normal_(head.unet.head[-1].weight, std=0.1)  # zero at init: the output would ignore x_t
    seen = []
    denoise = head.denoise
    head.denoise = lambda feats, coarse, x_t, t: seen.append((x_t.clone(), int(t[0]))) or denoise(feats, coarse, x_t, t)
    x = m.backbone(torch.randn(2, 3, 128, 96))[-1]
    with torch.no_grad():
        x0 = head._x0(head.prepare(x)[1])  # (2, 17, 2) the coarse estimate as a signal
        outs = [head.predict(x, steps=1, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    (a, ta), (b, _) = seen
    assert ta == (999 if start == "noise" else 500)
    if start == "coarse_clean":  # the coarse estimate itself, whatever the generator
        assert torch.equal(a, x0) and torch.equal(b, x0) and torch.equal(outs[0], outs[1])
    else:  # noise drawn from the generator; "coarse" keeps √ᾱ_500 x_0 of the estimate in it
        assert not torch.equal(a, b) and not torch.allclose(a, x0, atol=0.1)
        ab = head.scheduler.alphas_cumprod[500]
        resid = (a - ab.sqrt() * x0) / (1 - ab).sqrt()  # ε if x_t = √ᾱ x_0 + √(1-ᾱ) ε
        assert (resid.std() - 1).abs() < 0.3 if start == "coarse" else (a.std() - 1).abs() < 0.3
        assert not torch.equal(outs[0], outs[1])
    head.start, head.start_timestep = start, 1000  # changed after construction: checked when sampling
    if start == "noise":
        assert head.first_timestep() == 999
    else:
        with pytest.raises(ValueError, match="start_timestep"):
            head.predict(x, steps=1)


@pytest.mark.parametrize("recipe", ["simplebaseline_tiny", "diffusionpose_tiny"])
def test_several_step_counts_share_one_backbone_pass_and_equal_one_count_at_a_time(recipe):
    torch.manual_seed(0)
    m = posediff.create_model(recipe, flip_test=True).eval()
    with torch.no_grad():
        crops = torch.randn(2, 3, 128, 96)
        many = m.heatmaps_at_steps(crops, (1, 2), [torch.Generator().manual_seed(s) for s in (5, 6)])
        for hm, (steps, seed) in zip(many, ((1, 5), (2, 6))):
            assert torch.equal(hm, m.heatmaps(crops, steps, torch.Generator().manual_seed(seed)))


def test_a_residual_head_starts_at_the_coarse_estimate_and_learns_a_correction():
    torch.manual_seed(0)
    m = posediff.create_model("diffusionpose_tiny", residual=True).eval()
    x = m.backbone(torch.randn(2, 3, 128, 96))[-1]
    coarse = m.head.coarse(x)  # (2, 17, 32, 24)
    assert torch.equal(m.head.predict(x, steps=2), coarse)  # the U-Net's last conv starts at zero
    kp = torch.rand(2, 17, 2) * torch.tensor([80.0, 110.0]) + 8
    heat, w = m.codec.encode(kp, torch.ones(2, 17))
    m.train()
    losses = m.head.losses(x.detach(), dict(heatmaps=heat, weights=w, keypoints=torch.cat([kp, w[..., None]], -1)))
    losses["heatmap"].backward()
    assert m.head.coarse.final.weight.grad is None  # the correction's loss does not move the coarse head
    assert m.head.unet.head[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("recipe", ["simplebaseline", "diffusionpose"])
def test_full_recipes_build_with_the_papers_sizes(recipe):
    model = posediff.create_model(recipe).eval()
    assert model.input_size == (192, 256) and model.codec.heatmap_size == (48, 64) and model.flip_test
    with torch.no_grad():
        out = model.predict(torch.randn(1, 3, 256, 192), steps=1 if recipe == "diffusionpose" else None)
    assert out.shape == (1, 17, 3)
    backbone = type(model.backbone.body).__name__
    assert ("HighResolution" in backbone) == (recipe == "diffusionpose")


def test_a_box_outside_the_image_is_a_named_error():
    model = posediff.create_model("simplebaseline_tiny").eval()
    image = np.full((100, 80, 3), 200, np.uint8)
    out = model.predict_persons(image, np.array([[-30.0, 60.0, 50.0, 90.0]]))  # partly outside: padded with zeros
    assert out.shape == (1, 17, 3) and np.isfinite(out).all()
    with pytest.raises(ValueError, match=r"box 1 \[500.0, 500.0, 40.0, 80.0\] lies wholly outside the 80x100 image"):
        model.predict_persons(image, np.array([[10.0, 10.0, 40.0, 80.0], [500.0, 500.0, 40.0, 80.0]]))


def test_predicted_keypoints_return_to_the_image_pixel_they_were_seen_at():
    """The path every prediction takes: crop (warp_image), the model's keypoints in input pixels, back to the image
    (to_image). A stand-in model answers the intensity-weighted centroid of the crop, with the pixel-centre
    convention; regions of other scales give back the spot's centre in the image to < 0.1 px."""
    model = posediff.create_model("simplebaseline_tiny").eval()

    def centroid(crops, steps=None, generator=None):  # (B, 3, H, W) normalised -> (B, K, 3) input px
        lit = crops[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # (B, H, W) intensity: the square, 0 elsewhere
        ys, xs = torch.meshgrid(torch.arange(crops.shape[2]) + 0.5, torch.arange(crops.shape[3]) + 0.5,
                                indexing="ij")
        n = lit.sum((1, 2))
        c = torch.stack([(lit * xs).sum((1, 2)) / n, (lit * ys).sum((1, 2)) / n, torch.ones_like(n)], -1)
        return c[:, None].expand(-1, model.num_keypoints, 3)

    model.predict = centroid
    ys, xs = np.mgrid[:240, :320] + 0.5  # pixel centres
    blob = np.exp(-((xs - 205.3) ** 2 + (ys - 105.7) ** 2) / (2 * 6.0 ** 2))  # a smooth spot at (205.3, 105.7)
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, -1)
    boxes = np.array([[150.0, 40.0, 100.0, 140.0], [180.0, 90.0, 40.0, 40.0], [120.0, 20.0, 160.0, 200.0]])
    kp = model.predict_persons(image, boxes)  # (3, K, 3) image px
    assert np.abs(kp[:, 0, :2] - [205.3, 105.7]).max() < 0.1  # a half-pixel slip in any convention shows


def test_a_peak_on_the_border_is_not_pushed_off_the_map():
    codec = HeatmapCodec((96, 128), stride=4, sigma=1.5)
    kp = torch.tensor([[[2.0, 64.0], [94.0, 64.0], [48.0, 2.0], [48.0, 126.0]]])  # in the border cells
    out = codec.decode(codec.encode(kp, torch.ones(1, 4))[0])
    assert (out[..., :2] - kp).abs().max() <= 2.0  # at most the cell's half-width (stride 4), never a whole cell
    from posediff.models.heads.diffusion_heatmap import DiffusionHeatmapHead

    pts = DiffusionHeatmapHead.peaks(render_gaussians(kp / 4, (24, 32), 1.5))
    assert (pts * 4 - kp).abs().max() <= 2.0


def test_window_attention_masks_the_padding():
    from posediff.models.heads.diffusion_heatmap import StructureGuidance

    g = StructureGuidance(16, 16, heads=2, window=8).eval()
    mask = g._key_mask(12, 10, "cpu")  # (nW, 1, 1, 64): 2 x 2 windows over a 16 x 16 padded map
    assert mask.shape == (4, 1, 1, 64) and int(mask.sum()) == 12 * 10
    assert g._key_mask(16, 8, "cpu") is None  # whole windows: nothing to mask
    out = g(torch.randn(2, 16, 12, 10), torch.ones(2, 1, 12, 10), torch.ones(2, 1, 12, 10))
    assert out.shape == (2, 16, 12, 10) and torch.isfinite(out).all()


def test_a_checkpoint_loads_as_the_model_it_was_trained_as(tmp_path):
    """A checkpoint made before a default changed (no config_version: 0) is rebuilt with the earlier default; one
    made at the current version keeps the current ones; resuming the old one without naming the field is refused
    with the fix."""
    import json

    from safetensors.torch import load_file, save_file

    from posediff.engine.checkpoint import load_model, save_checkpoint
    from posediff.registry import CONFIG_VERSION, as_trained

    model = posediff.create_model("diffusionpose_tiny", residual=False, detach_features=False)
    path = save_checkpoint(tmp_path / "now", 1, model, "diffusionpose_tiny", {})
    assert load_model(path).head.residual is True  # made at the current version: the current defaults
    old = tmp_path / "old.safetensors"  # the same file as an earlier posediff wrote it: no config_version
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "config_version"}
    save_file(load_file(str(path)), str(old), metadata=meta)
    rebuilt = load_model(old)
    assert rebuilt.head.residual is False and rebuilt.head.detach_features is False
    assert as_trained("diffusionpose_tiny", {"residual": True}, 0)["residual"] is True  # what a file set stays
    assert as_trained("edpose_tiny", {}, 0) == {} and as_trained("diffusionpose_tiny", {}, CONFIG_VERSION) == {}
    assert as_trained("simplebaseline_tiny", {}, 0) == {}  # the change does not alter SimpleBaseline's model
    assert as_trained("diffusionpose_tiny", {}, 3) == {"start": "coarse"}  # the start it was scored with
    # the weights as trained, sampled as the recipe samples now: only the sampling fields take their current defaults
    assert as_trained("diffusionpose_tiny", {}, 3, current_sampling=True) == {}
    assert as_trained("diffusionpose_tiny", {"start": "noise"}, 3, current_sampling=True) == {"start": "noise"}
    assert as_trained("diffusionpose_tiny", {}, 0, current_sampling=True) == {"residual": False,
                                                                             "detach_features": False}
    assert rebuilt.head.start == "coarse" and load_model(old, current_sampling=True).head.start == "coarse_clean"
    assert load_model(old, current_sampling=True).head.residual is False
    assert json.loads(meta["overrides"]) == {}


def test_attributes_set_within_a_block_are_restored_after_it_even_on_error():
    from posediff.models.utils import attributes_set

    m = posediff.create_model("diffusionpose_tiny")
    with attributes_set(m.head, start="noise", start_timestep=300) as head:
        assert head.start == "noise" and head.start_timestep == 300
    assert (m.head.start, m.head.start_timestep) == ("coarse_clean", 500)
    with pytest.raises(RuntimeError), attributes_set(m.head, start="noise"):
        raise RuntimeError("an evaluation that fails")
    assert m.head.start == "coarse_clean"
    with pytest.raises(AttributeError), attributes_set(m.head, start="noise", no_such_field=1):
        pass
    assert m.head.start == "coarse_clean"  # nothing was set


def test_blend_is_the_mean_of_the_coarse_heatmap_and_the_denoisers():
    torch.manual_seed(0)
    plain = posediff.create_model("diffusionpose_tiny", residual=False).eval()
    blended = posediff.create_model("diffusionpose_tiny", residual=False, blend=True).eval()
    blended.load_state_dict(plain.state_dict())
    crops = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        coarse = plain.head.prepare(plain.backbone(crops)[-1])[1]
        own = plain.heatmaps(crops, steps=2, generator=torch.Generator().manual_seed(3))
        mixed = blended.heatmaps(crops, steps=2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mixed, (coarse + own) / 2)
    with pytest.raises(ValueError, match="blend=True averages the coarse heatmap"):
        posediff.create_model("diffusionpose_tiny", residual=True, blend=True)
