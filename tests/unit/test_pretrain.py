"""Heatmap pretext pretraining: targets, loss, peaks, and weights that load into the recipes."""

import pytest
import torch

import posediff
from posediff.engine.checkpoint import load_init_weights
from posediff.engine.pretrain import pretrain_backbone
from posediff.models.pretrain import heatmap_focal_loss, heatmap_peaks, render_heatmaps


def test_heatmaps_peak_at_labelled_joints_and_loss_prefers_them():
    kp = torch.tensor([[[[0.25, 0.5], [0.75, 0.25]]]])  # (B=1, M=1, K=2, 2)
    vis = torch.tensor([[[2, 0]]])
    heat = render_heatmaps(kp, vis, torch.tensor([[True]]), torch.tensor([[400.0]]), (16, 16), (64, 64))
    assert heat.shape == (1, 2, 16, 16) and float(heat[0, 0].max()) > 0.99 and float(heat[0, 1].max()) == 0.0
    torch.testing.assert_close(heatmap_peaks(heat)[0, 0], torch.tensor([0.25 + 1 / 32, 0.5 + 1 / 32]),
                               atol=1 / 16, rtol=0)
    good = torch.logit(heat.clamp(1e-3, 1 - 1e-3))
    assert float(heatmap_focal_loss(good, heat)) < float(heatmap_focal_loss(torch.zeros_like(good), heat))


def test_a_few_steps_write_weights_the_recipes_load(tmp_path):
    out = tmp_path / "bb.safetensors"
    result = pretrain_backbone(out, steps=2, batch_size=2, size=96, num_images=4, val_images=2, progress=False)
    assert result["steps"] == 2 and torch.isfinite(torch.tensor(result["final_loss"]))
    weights = load_init_weights(out)
    model = posediff.create_model("edpose_tiny")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and not any(k.startswith("backbone.") for k in missing)
    # resumable: two more steps continue from the saved state
    assert pretrain_backbone(out, steps=4, batch_size=2, size=96, num_images=4, val_images=2, resume=True,
                             progress=False)["steps"] == 4
    # the run is not replaced without --resume, nor resumed with other settings
    with pytest.raises(FileExistsError, match="bb.safetensors is there already; pass resume=True"):
        pretrain_backbone(out, steps=4, batch_size=2, size=96, num_images=4, val_images=2, progress=False)
    with pytest.raises(ValueError, match=r"trained with batch_size=2 \(this call: 3\)"):
        pretrain_backbone(out, steps=6, batch_size=3, size=96, num_images=4, val_images=2, resume=True,
                          progress=False)
    with pytest.raises(ValueError, match="is a folder"):
        pretrain_backbone(tmp_path, steps=1, batch_size=2, size=96, num_images=4, val_images=2, progress=False)
    with pytest.raises(FileNotFoundError, match=r"there is no .*new.state.pt to continue from; start without it"):
        pretrain_backbone(tmp_path / "new.safetensors", steps=1, batch_size=2, size=96, num_images=4, val_images=2,
                          resume=True, progress=False)
    state = torch.load(out.with_suffix(".state.pt"), weights_only=False)
    del state["synthcrowd_renderer"]  # as renderer version 1 left it: trained on other pictures, with flips
    torch.save(state, out.with_suffix(".state.pt"))
    with pytest.raises(ValueError, match="synthcrowd_renderer"):
        pretrain_backbone(out, steps=6, batch_size=2, size=96, num_images=4, val_images=2, resume=True, progress=False)


def test_shipped_backbone_fills_the_tiny_recipes():
    from pathlib import Path

    path = Path(posediff.__file__).parent / "assets" / "zoo" / "resnet18_synthcrowd_heatmaps.safetensors"
    weights = load_init_weights(path)
    model = posediff.create_model("diffusion_regpose_tiny")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and not any(k.startswith("backbone.") for k in missing) and len(weights) == 100


def test_bad_arguments_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=0 \(expected at least 1\); size=8 \(expected at least 32"):
        pretrain_backbone(tmp_path / "w.safetensors", steps=1, batch_size=0, size=8)
    (tmp_path / "model.pt").write_bytes(b"a torch pickle, not safetensors")
    with pytest.raises(ValueError, match=r"model\.pt: not a safetensors file .*expected init weights"):
        load_init_weights(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match=r"no file .*missing\.safetensors"):
        load_init_weights(tmp_path / "missing.safetensors")
    from posediff.zoo import PRETRAINED, zoo_path

    zoo_file = str(zoo_path(PRETRAINED[("edpose_tiny", "synthcrowd")]))  # a str, as --init passes it
    assert load_init_weights(zoo_file)["backbone.body.conv1.weight"].dtype == torch.float32
