"""Every config file loads and builds its model; overrides reach the right field."""

import re
from pathlib import Path

import pytest

from posediff import create_model, list_models
from posediff.engine import apply_overrides, load_config
from posediff.tasks import get_task, task_name

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.py")
                 if not p.name.startswith("data_"))


def test_there_is_a_config_per_recipe_and_dataset():
    names = {p.stem for p in CONFIGS}
    for recipe in ("edpose", "diffusion_regpose"):
        for data in ("coco", "crowdpose", "tiny_synthcrowd", "tiny_synthcrowd_crowdpose"):
            assert f"{recipe}_{data}" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path):
    cfg = load_config(path)
    assert cfg.recipe in list_models()
    if task_name(cfg.recipe) == "lifting":  # the context encoder a run was to start from is not trained here
        model = create_model(cfg.recipe, **dict(cfg.model, context_weights=""))
        assert model.num_joints == 17 and get_task(cfg.recipe).resolve(cfg).data.kind == "mocaplift"
        return
    overrides = dict(cfg.model, pretrained_backbone=False)  # no weights can be downloaded here
    model = create_model(cfg.recipe, **overrides)
    assert model.num_keypoints == (14 if cfg.data.skeleton == "crowdpose14" else 17)


def test_overrides():
    cfg = load_config(next(p for p in CONFIGS if p.stem == "diffusion_regpose_coco"))
    cfg = apply_overrides(cfg, ["lr=3e-4", "data.num_images=50", "model.sampling_steps=2", "out=runs/x"])
    assert cfg.lr == 3e-4 and cfg.data.num_images == 50 and cfg.model["sampling_steps"] == 2 and cfg.out == "runs/x"
    with pytest.raises(ValueError, match="no field 'lrr'"):
        apply_overrides(cfg, ["lrr=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["lr"])
    with pytest.raises(TypeError, match="unknown config field"):
        create_model("edpose_tiny", dimm=3)
    # values take the field's declared type, or are refused by name
    cfg = apply_overrides(cfg, ["lr=1", "lr_drop=[5]", "data.root=2024", "data.prior=None", "data.flip=True",
                                "data.kind='coco'", "data.eval_size=320", "data.crop_size=(64, 96)"])
    assert (cfg.lr, cfg.lr_drop, cfg.data.root, cfg.data.prior, cfg.data.flip, cfg.data.kind, cfg.data.eval_size,
            cfg.data.crop_size) == (1.0, (5,), "2024", None, True, "coco", 320, (64, 96))
    for item, expected in (("data.num_images=abc", r"field num_images is int \(now 50\)"),
                           ("lr_drop=5", r"field lr_drop is tuple\[int, \.\.\.\] \(now \(5,\)\)"),
                           ("data.crop_size=(80,)", r"field crop_size is tuple\[int, int\] \(now \(64, 96\)\)"),
                           ("batch_size=2.5", "field batch_size is int"), ("amp=1", "field amp is bool"),
                           ("lr=fast", "field lr is float"),
                           ("data.eval_size=abc", r"field eval_size is int \| None \(now 320\)"),
                           ("data.flip=1", r"field flip is bool \| None")):
        with pytest.raises(ValueError, match=rf"override '{re.escape(item)}': {expected}"):
            apply_overrides(cfg, [item])
    # model fields are typed by the recipe's config (posediff.get_config), like the others
    cfg = apply_overrides(cfg, ["model.prior_std=1", "model.inference_proposals=None", "model.strides=(8, 16)"])
    assert (cfg.model["prior_std"], cfg.model["inference_proposals"], cfg.model["strides"]) == (1.0, None, (8, 16))
    for item, expected in (("model.freeze_backbone=false", "field freeze_backbone is bool"),
                           ("model.dim=128.0", "field dim is int"),
                           ("model.dimm=3", f"recipe {cfg.recipe} has no config field 'dimm'")):
        with pytest.raises(ValueError, match=rf"override '{re.escape(item)}': {expected}"):
            apply_overrides(cfg, [item])
    for item, expected in (("batch_size=0", "batch_size must be an integer >= 1, got 0"),
                           ("log_every=0", "log_every must be"),
                           ("eval_every=-1", r"eval_every must be an integer >= 0 \(0: only at the end\)"),
                           ("keep_checkpoints=-1", r"keep_checkpoints must be an integer >= 0 \(0: keep them all\)")):
        with pytest.raises(ValueError, match=f"config field {expected}"):
            apply_overrides(cfg, [item])


def test_bad_model_settings_are_refused_before_the_data_is_rendered(tmp_path):
    from posediff.engine import train

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "diffusion_regpose_tiny_synthcrowd.py")
    cfg = apply_overrides(cfg, [f"data.root={tmp_path / 'sc'}", f"out={tmp_path / 'run'}"])
    for item, expected in (("model.padding='emtpy'", "padding must be one of"),
                           ("model.num_keypoints=14", "set model.num_keypoints=17"),
                           ("model.skeleton='crowdpose14'", "skeleton 'crowdpose14' has 14 joints")):
        with pytest.raises(ValueError, match=expected):
            train(apply_overrides(cfg, [item]))
    assert not (tmp_path / "sc").exists() and not (tmp_path / "run").exists()
    assert apply_overrides(cfg, ["keep_checkpoints=0"]).keep_checkpoints == 0  # 0 keeps every checkpoint


def test_get_config_reads_what_create_model_builds():
    from posediff import get_config
    from posediff.registry import _RECIPES, register_model

    cfg = get_config("diffusion_regpose_tiny", sampling_steps=2, num_keypoints=14)
    model = create_model("diffusion_regpose_tiny", sampling_steps=2, num_keypoints=14)
    assert (cfg.head, cfg.sampling_steps, cfg.skeleton) == ("diffusion", 2, "crowdpose14")
    assert model.head.sampling_steps == 2 and model.num_keypoints == 14
    assert get_config("edpose").backbone == "resnet50" and get_config("edpose_tiny").backbone == "resnet18"
    assert get_config("diffusion_regpose_tiny").dim == 128 and get_config("diffusion_regpose").dim == 256
    with pytest.raises(TypeError, match="unknown config field"):
        get_config("edpose_tiny", dimm=3)

    @register_model
    def _no_config_recipe(**overrides):
        raise AssertionError("get_config must not build the model")

    try:
        with pytest.raises(TypeError, match="does not expose its config"):
            get_config("_no_config_recipe")
    finally:
        del _RECIPES["_no_config_recipe"]


def test_recorded_command_is_quoted_to_paste_back():
    import argparse

    from posediff.cli import _command

    assert _command(argparse.Namespace(argv=["bench", "--out", "my runs/a"])) == "posediff bench --out 'my runs/a'"


def test_the_command_line_prints_posediffs_own_errors_in_one_line(capsys, monkeypatch, tmp_path):
    from posediff.cli import main, run

    config = str(Path(__file__).resolve().parents[2] / "configs" / "edpose_tiny_synthcrowd.py")
    assert run(lambda: main(["train", config, "model.dim=1.5", f"out={tmp_path}"])) == 2
    assert capsys.readouterr().err.startswith("posediff: error: override 'model.dim=1.5': field dim is int")
    with pytest.raises(ValueError, match="invalid literal"):  # raised outside posediff: the traceback stays
        run(lambda: int("x"))
    monkeypatch.setenv("POSEDIFF_TRACEBACK", "1")
    with pytest.raises(ValueError, match="field dim is int"):
        run(lambda: main(["train", config, "model.dim=1.5", f"out={tmp_path}"]))
