"""The model zoo: each shipped model scores its recorded metrics; export and loading."""

import pytest
import torch

from posediff import create_model
from posediff.data.synthcrowd import RENDERER_VERSION
from posediff.engine import zoo_export
from posediff.engine.checkpoint import init_from, save_checkpoint
from posediff.engine.zoo_export import export_zoo
from posediff.tasks.multiperson import score_on_synthcrowd_test
from posediff.zoo import PRETRAINED, ZOO_DIR, read_zoo_file, zoo_metadata, zoo_path

BACKBONE = "resnet18_synthcrowd_heatmaps.safetensors"


@pytest.mark.parametrize("recipe", ["edpose_tiny", "diffusion_regpose_tiny"])
def test_shipped_one_stage_models_score_their_recorded_ap(recipe):
    model = create_model(recipe, pretrained="synthcrowd")  # no network: files in the package
    assert not model.training
    recorded = zoo_metadata(zoo_path(PRETRAINED[(recipe, "synthcrowd")]))["metrics"]
    split = recorded["test_split"]
    assert split.get("renderer", 1) == RENDERER_VERSION, "the zoo was scored on other SynthCrowd pictures: re-export it"
    torch.set_num_threads(min(2, torch.get_num_threads()))
    got = score_on_synthcrowd_test(model, num_images=split["images"], size=split["size"],
                                   scene_seed=split["scene_seed"], eval_size=split["eval_size"],
                                   max_size=split["max_size"])  # rendered afresh: the same scenes
    for fmt in ("coco", "crowdpose"):
        for key in ("AP", "AP50", "AR"):
            assert got[fmt][key] == pytest.approx(recorded[fmt][key], abs=2e-3), (fmt, key)
    assert recorded["coco"]["AP50"] > 0.01  # a trained model (an untrained one scores 0.000)


TOPDOWN = sorted(r for r, tag in PRETRAINED
                 if tag == "synthcrowd" and r in ("simplebaseline_tiny", "diffusionpose_tiny"))


@pytest.mark.parametrize("recipe", TOPDOWN)
def test_shipped_topdown_models_score_their_recorded_ap(recipe):
    """Each shipped top-down model, loaded as users load it, scores its recorded AP on the persons of the
    SynthCrowd test split (ground-truth boxes), rendered afresh."""
    from posediff.tasks.topdown import score_topdown_on_synthcrowd_test

    model = create_model(recipe, pretrained="synthcrowd")
    recorded = zoo_metadata(zoo_path(PRETRAINED[(recipe, "synthcrowd")]))["metrics"]
    split = recorded["test_split"]
    assert split["renderer"] == RENDERER_VERSION, "the zoo was scored on other SynthCrowd pictures: re-export it"
    torch.set_num_threads(min(2, torch.get_num_threads()))
    got = score_topdown_on_synthcrowd_test(model, num_images=split["images"], size=split["size"],
                                           scene_seed=split["scene_seed"], nms=split["nms"])
    assert got["test_split"]["persons"] == split["persons"]
    for fmt in ("coco", "crowdpose"):
        for key in ("AP", "AP50", "AR"):
            assert got[fmt][key] == pytest.approx(recorded[fmt][key], abs=2e-3), (fmt, key)
    assert recorded["crowdpose"]["AP50"] > 0.05  # a trained model


def test_a_given_test_folder_must_hold_the_split_asked_for(tmp_path):
    from posediff.data.synthcrowd import SceneConfig, write_split

    write_split(tmp_path, "test", 2, seed=1, config=SceneConfig(size=64), progress=False)
    with pytest.raises(ValueError, match=r"crowdpose.json: field info holds another test split: seed 1 \(wanted 0\)"):
        score_on_synthcrowd_test(create_model("edpose_tiny"), root=tmp_path, num_images=2, size=64, scene_seed=0,
                                 eval_size=64)


def test_zoo_stays_small():
    total = sum(p.stat().st_size for p in ZOO_DIR.glob("*.safetensors"))
    # the backbone file 22.4 MB, the one-stage models 4.2 and 5.6 MB on it, the lifting models 4.3 MB each, the
    # top-down models (which train their backbone, so none rests on the backbone file) 12.8 and 13.3 MB in int8
    assert total < 70e6, f"the zoo is {total / 1e6:.1f} MB"


@pytest.mark.parametrize("recipe", ["lifting_baseline", "diffpose"])
def test_the_public_lift_of_a_shipped_model_lands_in_millimetres(recipe):
    """``create_model(recipe, pretrained="mocaplift").lift(pixels, image_size)`` on 64 MocapLift test poses: root-
    relative millimetres near the truth (the zoo's P1 over the whole split: 79-89 mm; a lift in metres, with the
    screen normalised wrongly or the root left in, is far off)."""
    from posediff.data.mocaplift import MocapLift

    ds = MocapLift("test", seed=0, size=64)
    items = [ds[i] for i in range(len(ds))]
    model = create_model(recipe, pretrained="mocaplift")
    lifted = torch.cat([model.lift(it["keypoints_px"][0][None], image_size=tuple(it["image_size"].tolist()))
                        for it in items])  # (64, 17, 3)
    truth = torch.stack([it["pose_3d"] for it in items])  # (64, 17, 3) mm
    assert lifted.shape == (64, 17, 3) and bool((lifted[:, 0] == 0).all())
    assert float((lifted - truth).norm(dim=-1).mean()) < 100.0


@pytest.mark.parametrize("recipe", sorted(r for r, tag in PRETRAINED if tag == "mocaplift"))
def test_shipped_lifting_models_score_their_recorded_mpjpe(recipe):
    """Each shipped lifting model, loaded as users load it, scores its recorded P1 / P2 on MocapLift's test split."""
    from posediff.tasks.lifting import score_on_mocaplift_test

    model = create_model(recipe, pretrained="mocaplift")
    recorded = zoo_metadata(zoo_path(PRETRAINED[(recipe, "mocaplift")]))["metrics"]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    got = score_on_mocaplift_test(model, seed=recorded["test_split"]["seed"])
    assert got["test_split"]["poses"] == recorded["test_split"]["poses"] == 2416
    for key in ("P1", "P2", "P1_best"):
        assert got[key] == pytest.approx(recorded[key], abs=0.05), key
    assert recorded["P1"] < 120  # a trained lifter (an untrained one: about 590 mm)


def test_unknown_pretrained_tag_names_what_exists():
    with pytest.raises(KeyError, match="synthcrowd"):
        create_model("edpose_tiny", pretrained="imagenet")
    with pytest.raises(KeyError, match="none"):
        create_model("edpose", pretrained="synthcrowd")


def test_export_leaves_out_the_frozen_base_and_refuses_a_changed_one(tmp_path):
    model = create_model("edpose_tiny")
    done = init_from(model, zoo_path(BACKBONE))
    assert done["loaded"] > 50 and not done["shape_mismatch"]
    ckpt = save_checkpoint(tmp_path / "run", 1, model, "edpose_tiny", {"freeze_backbone": True})
    summary = export_zoo(ckpt, tmp_path / "z.safetensors", base=BACKBONE)
    assert summary["from_base"] == done["loaded"] and summary["bytes"] < 6e6
    back = read_zoo_file(tmp_path / "z.safetensors")
    own = model.state_dict()
    assert set(back) == set(own)
    for k, v in own.items():
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(back[k], expected), k
    assert zoo_metadata(tmp_path / "z.safetensors")["overrides"] == {"freeze_backbone": True}
    with torch.no_grad():
        next(model.backbone.parameters()).add_(0.5)  # trained, not frozen: the base no longer fits
    ckpt = save_checkpoint(tmp_path / "run", 2, model, "edpose_tiny", {})
    with pytest.raises(ValueError, match="differ"):
        export_zoo(ckpt, tmp_path / "z2.safetensors", base=BACKBONE)


def test_int8_export_halves_the_file_and_reads_back_within_half_a_step(tmp_path):
    from posediff.zoo import INT8_SCALE, dequantize_int8, quantize_int8

    model = create_model("simplebaseline_tiny")
    ckpt = save_checkpoint(tmp_path / "run", 1, model, "simplebaseline_tiny", {})
    half = export_zoo(ckpt, tmp_path / "h.safetensors")
    small = export_zoo(ckpt, tmp_path / "q.safetensors", int8=True)
    assert small["bytes"] < 0.55 * half["bytes"]
    back, own = read_zoo_file(tmp_path / "q.safetensors"), model.state_dict()
    assert set(back) == set(own) and all(v.dtype == torch.float32 for v in back.values() if v.is_floating_point())
    stored = quantize_int8(own)
    quantized = [k for k in own if k + INT8_SCALE in stored]
    assert "backbone.body.layer4.1.conv2.weight" in quantized and "head.final.bias" not in quantized
    for k in quantized:  # each element within half a quantisation step of its channel (fp16 scale rounding aside)
        step = stored[k + INT8_SCALE].float()
        assert ((back[k] - own[k]).abs() <= step * 0.5 + 1e-3 * own[k].abs()).all(), k
    for k in own:
        if k not in quantized and own[k].is_floating_point():
            assert torch.equal(back[k], own[k].half().float()), k
    with pytest.raises(ValueError, match="scales no int8 tensor"):
        dequantize_int8({"w" + INT8_SCALE: torch.ones(2, 1)})


def test_a_model_whose_base_changed_since_its_export_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_model("edpose_tiny")
    init_from(model, zoo_path(BACKBONE))
    ckpt = save_checkpoint(tmp_path / "run", 1, model, "edpose_tiny", {"freeze_backbone": True})
    export_zoo(ckpt, tmp_path / "z.safetensors", base=BACKBONE)
    meta = zoo_metadata(tmp_path / "z.safetensors")
    assert len(meta["base_digest"]) == 64
    raw = {k: v for k, v in meta.items() if k not in ("overrides", "metrics", "made_by")}
    raw.update(overrides="{}", metrics="{}", made_by="{}", base_digest="0" * 64)  # exported against another base
    save_file(load_file(tmp_path / "z.safetensors"), str(tmp_path / "z.safetensors"), metadata=raw)
    with pytest.raises(ValueError, match="base_digest"):
        read_zoo_file(tmp_path / "z.safetensors")


def test_export_refuses_a_run_trained_on_another_synthcrowd_renderer(tmp_path):
    from posediff.engine.zoo_export import export_and_score

    ckpt = save_checkpoint(tmp_path / "run", 1, create_model("edpose_tiny"), "edpose_tiny", {},
                           extra_meta={"config": {"data": {"kind": "synthcrowd"}}})  # no synthcrowd_renderer: v1
    with pytest.raises(ValueError, match="synthcrowd_renderer is \\(missing: version 1\\)"):
        export_and_score(ckpt, tmp_path / "z.safetensors")


def test_export_scores_at_the_runs_evaluation_size_or_the_asked_one(tmp_path, monkeypatch):
    asked = []
    from posediff.tasks import multiperson

    monkeypatch.setattr(multiperson, "score_on_synthcrowd_test", lambda model, **kw: asked.append(kw) or {})
    data = {"kind": "synthcrowd", "num_images": 30, "size": 96, "train_scales": [80, 96], "eval_size": None}
    ckpt = save_checkpoint(tmp_path / "run", 1, create_model("edpose_tiny"), "edpose_tiny", {},
                           extra_meta={"config": {"data": data}, "synthcrowd_renderer": RENDERER_VERSION})
    zoo_export.export_and_score(ckpt, tmp_path / "a.safetensors")
    zoo_export.export_and_score(ckpt, tmp_path / "b.safetensors", eval_size=72)
    assert [kw["eval_size"] for kw in asked] == [96, 72]  # the largest training scale, then as asked
    # refused before scoring: an --out that is a folder, the checkpoint itself, or the base
    for out, expected in ((tmp_path, "is a folder"), (ckpt, "is also this command's input")):
        with pytest.raises(ValueError, match=expected):
            zoo_export.export_and_score(ckpt, out)
    with pytest.raises(ValueError, match="is also this command's input"):
        zoo_export.export_and_score(ckpt, zoo_path(BACKBONE), base=BACKBONE)
    assert len(asked) == 2


def test_loading_zoo_weights_imports_neither_the_bench_nor_the_engine():
    import subprocess
    import sys

    code = ("import sys, posediff; posediff.create_model('edpose_tiny', pretrained='synthcrowd'); "
            "print(sorted(m for m in sys.modules if m.startswith(('posediff.bench', 'posediff.engine'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_init_skips_tensors_of_another_shape(tmp_path):
    model = create_model("edpose_tiny", num_keypoints=14)
    source = create_model("edpose_tiny")
    ckpt = save_checkpoint(tmp_path / "run", 1, source, "edpose_tiny", {})
    done = init_from(model, ckpt)
    assert done["shape_mismatch"] and done["loaded"] > 100
    key = "backbone.body.conv1.weight"
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])
