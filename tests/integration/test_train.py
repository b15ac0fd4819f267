"""Training: the loss falls; same seed, same losses; a resumed run equals an uninterrupted one; DDP."""

import json
import logging
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from posediff.engine import TrainConfig, apply_overrides, latest_checkpoint, load_model, train
from posediff.engine.train import epoch_batches
from posediff.tasks.multiperson import DataConfig, build_datasets

SMALL = ["data.num_images=30", "data.size=96", "data.train_scales=(96,)", "data.crop_scales=(96,)",
         "data.crop_size=(80,96)", "data.eval_size=96", "data.max_size=128", "batch_size=2"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthcrowd")


def config(recipe, data_root, out, *extra):
    cfg = TrainConfig(recipe=recipe, data=DataConfig(root=str(data_root)), out=str(out), lr=5e-4)
    return apply_overrides(cfg, SMALL + list(extra))


def losses(run_dir):
    return [json.loads(line)["loss"] for line in open(run_dir / "history.jsonl")]


@pytest.mark.parametrize("recipe", ["edpose_tiny", "diffusion_regpose_tiny"])
def test_loss_falls_and_checkpoint_loads(recipe, data_root, tmp_path):
    cfg = config(recipe, data_root, tmp_path / "run", "max_steps=40", "ckpt_every=40", "clip_grad=1.0")
    result = train(cfg, progress=False)
    history = [h["loss"] for h in result["history"]]
    assert len(history) == 40
    assert sum(history[-8:]) / 8 < 0.9 * sum(history[:8]) / 8  # falls by more than 10%
    assert set(result["metrics"]) >= {"AP", "AP50", "AR"}
    weights, state = latest_checkpoint(tmp_path / "run")
    model = load_model(weights)
    out = model(torch.rand(1, 3, 96, 128))
    assert out[0]["keypoints"].shape[1:] == (17, 3)


@pytest.mark.usefixtures("cpu_only")
@pytest.mark.parametrize("recipe", ["edpose_tiny", "diffusion_regpose_tiny"])
def test_same_seed_same_losses(recipe, data_root, tmp_path):
    a = train(config(recipe, data_root, tmp_path / "a", "max_steps=4", "ckpt_every=100"), progress=False)
    b = train(config(recipe, data_root, tmp_path / "b", "max_steps=4", "ckpt_every=100"), progress=False)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    c = train(config(recipe, data_root, tmp_path / "c", "max_steps=4", "ckpt_every=100", "seed=1"), progress=False)
    assert [h["loss"] for h in c["history"]] != [h["loss"] for h in a["history"]]


@pytest.mark.usefixtures("cpu_only")
def test_resumed_run_equals_an_uninterrupted_one(data_root, tmp_path):
    recipe = "diffusion_regpose_tiny"  # draws timesteps and noise: the RNG state must travel too
    full = train(config(recipe, data_root, tmp_path / "full", "max_steps=8", "ckpt_every=4", "lr_drop=(5,)"),
                 progress=False)
    train(config(recipe, data_root, tmp_path / "cut", "max_steps=4", "ckpt_every=4", "lr_drop=(5,)"), progress=False)
    resumed = train(config(recipe, data_root, tmp_path / "cut", "max_steps=8", "ckpt_every=4", "lr_drop=(5,)"),
                    resume=True, progress=False)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")


def test_epoch_batches_split_a_global_batch_across_ranks():
    whole = epoch_batches(10, 4, seed=0, epoch=1)
    parts = [epoch_batches(10, 2, seed=0, epoch=1, rank=r, world=2) for r in range(2)]
    for g, (a, b) in zip(whole, zip(*parts)):
        assert sorted(g) == sorted(a + b)
    assert epoch_batches(10, 4, seed=0, epoch=2) != whole


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    from posediff.data import SynthCrowdDataset, collate
    from posediff.data.synthcrowd import SceneConfig

    ds = SynthCrowdDataset(2, scene_seed=4, config=SceneConfig(size=96))
    return collate([ds[0], ds[1]])


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    import posediff
    from posediff.data import collate

    torch.manual_seed(0)
    model = posediff.create_model("edpose_tiny", dn_groups=0)  # box-denoising noise is drawn per process
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    images, mask, targets = _batch()
    from posediff.data import SynthCrowdDataset
    from posediff.data.synthcrowd import SceneConfig

    ds = SynthCrowdDataset(2, scene_seed=4, config=SceneConfig(size=96))
    images, mask, targets = collate([ds[rank]])
    ddp(images, mask, targets)["loss"].backward()
    if rank == 0:
        torch.save(_grads(model), out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_gives_the_one_process_gradients(tmp_path):
    import posediff

    torch.manual_seed(0)
    model = posediff.create_model("edpose_tiny", dn_groups=0)
    images, mask, targets = _batch()
    model(images, mask, targets)["loss"].backward()
    single = _grads(model)
    out = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    assert single.keys() == ddp.keys()
    worst = max(float((single[k] - ddp[k]).abs().max() / single[k].abs().max().clamp_min(1e-8)) for k in single)
    assert worst < 1e-4, worst


def test_train_command_line(data_root, tmp_path, capsys):
    from posediff.cli import main as cli

    config = Path(__file__).resolve().parents[2] / "configs" / "edpose_tiny_synthcrowd.py"
    args = ["train", str(config), f"data.root={data_root}", f"out={tmp_path / 'run'}", "max_steps=2", "ckpt_every=2",
            *SMALL, "--no-progress"]
    assert cli(args) == 0
    assert '"steps": 2' in capsys.readouterr().out
    assert latest_checkpoint(tmp_path / "run") is not None
    assert cli(args[:-1] + ["max_steps=3", "--resume", "--no-progress"]) == 0  # continues from step 2
    assert len(losses(tmp_path / "run")) == 3


def test_synthcrowd_folder_rendered_with_other_settings_is_reported(tmp_path):
    from posediff.data.synthcrowd import RENDERER_VERSION
    from posediff.tasks.multiperson import build_datasets

    d = config("edpose_tiny", tmp_path, tmp_path / "run").data
    (tmp_path / "synthcrowd.json").write_text(json.dumps(dict(num_images=99, size=d.size, scene_seed=d.scene_seed,
                                                              renderer=RENDERER_VERSION)))
    with pytest.raises(ValueError, match=rf"other settings: data\.num_images 99 \(wanted {d.num_images}\);"):
        build_datasets(config("edpose_tiny", tmp_path, tmp_path / "run"))
    # the same settings, drawn by renderer version 1 (which wrote no renderer)
    (tmp_path / "synthcrowd.json").write_text(json.dumps(dict(num_images=d.num_images, size=d.size,
                                                              scene_seed=d.scene_seed)))
    with pytest.raises(ValueError, match=rf"other settings: renderer version 1 \(wanted {RENDERER_VERSION}\);"):
        build_datasets(config("edpose_tiny", tmp_path, tmp_path / "run"))


def test_synthcrowd_is_not_flipped_unless_asked(data_root, tmp_path, caplog):
    from posediff.data.transforms import RandomHorizontalFlip
    from posediff.tasks.multiperson import build_datasets

    def flips(*extra):
        train_ds = build_datasets(config("edpose_tiny", data_root, tmp_path / "run", *extra))[0]
        found, todo = [], [train_ds.transforms]
        while todo:  # walk nested Compose / RandomSelect
            t = todo.pop()
            found.append(isinstance(t, RandomHorizontalFlip))
            todo += list(getattr(t, "transforms", [])) + [getattr(t, n) for n in ("first", "second") if hasattr(t, n)]
        return any(found)

    assert not flips()  # the darker left limbs would show on the right
    with caplog.at_level(logging.WARNING, logger="posediff.engine.train"):
        assert flips("data.flip=True")
    assert "darker left limbs" in caplog.text
    assert DataConfig(kind="coco").flips and not DataConfig(kind="coco", flip=False).flips  # photographs flip


def test_evaluation_is_at_the_largest_training_scale_unless_set(data_root, tmp_path):
    from posediff.tasks.multiperson import build_datasets, coco_data

    def eval_sizes(*extra):
        val_ds = build_datasets(config("edpose_tiny", data_root, tmp_path / "run", *extra))[1]
        (resize,) = val_ds.transforms.transforms
        return resize.sizes

    assert eval_sizes("data.eval_size=None", "data.train_scales=(64,96,80)") == [96]
    assert eval_sizes("data.eval_size=72") == [72]
    assert DataConfig().eval_scale == 288 and coco_data().eval_scale == 800  # ED-Pose: COCO at 800, its largest


def test_resuming_at_another_evaluation_size_is_reported(data_root, tmp_path, caplog):
    run = tmp_path / "run"
    train(config("edpose_tiny", data_root, run, "max_steps=1", "ckpt_every=1"), progress=False)
    assert json.loads((run / "config.json").read_text())["eval_size"] == 96  # the size used, not None
    with caplog.at_level(logging.WARNING, logger="posediff.engine.train"):
        train(config("edpose_tiny", data_root, run, "max_steps=2", "ckpt_every=1"), progress=False, resume=True)
    assert "validated at" not in caplog.text  # the same size: nothing to say
    with caplog.at_level(logging.WARNING, logger="posediff.engine.train"):
        train(config("edpose_tiny", data_root, run, "max_steps=3", "ckpt_every=1", "data.eval_size=80"),
              progress=False, resume=True)
    assert "validated at 96 px up to step 2 and validates at 80 px" in caplog.text
    assert "data.eval_size=96" in caplog.text


def test_checkpoints_record_the_synthcrowd_renderer(data_root, tmp_path):
    from posediff.data.synthcrowd import RENDERER_VERSION
    from posediff.engine.checkpoint import load_checkpoint

    train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=1", "ckpt_every=1"), progress=False)
    weights_path = latest_checkpoint(tmp_path / "run")[0]
    weights, _, meta = load_checkpoint(weights_path)
    assert meta["synthcrowd_renderer"] == str(RENDERER_VERSION)
    from safetensors.torch import save_file

    del meta["synthcrowd_renderer"]  # as renderer version 1 left it: resuming would mix two kinds of pictures
    save_file(weights, str(weights_path), metadata=meta)
    with pytest.raises(ValueError, match="synthcrowd_renderer is \\(missing: version 1\\).*cannot resume"):
        train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=2", "ckpt_every=1"), progress=False,
              resume=True)


@pytest.mark.usefixtures("cpu_only")
def test_ema_weights_are_saved_and_used(data_root, tmp_path):
    from posediff.engine.checkpoint import load_checkpoint

    train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=3", "ckpt_every=3", "ema_decay=0.5"),
          progress=False)
    weights_path, _ = latest_checkpoint(tmp_path / "run")
    weights, ema, meta = load_checkpoint(weights_path)
    assert meta["ema"] == "True" and ema.keys() == weights.keys()
    name = "head.decoder.kp_heads.0.layers.2.bias"
    assert not torch.equal(ema[name], weights[name])  # an average, not the last weights
    torch.testing.assert_close(load_model(weights_path).state_dict()[name], ema[name])
    torch.testing.assert_close(load_model(weights_path, use_ema=False).state_dict()[name], weights[name])
    # resumed, the average goes on where it stopped: equal to an uninterrupted run's
    train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=5", "ckpt_every=5", "ema_decay=0.5"),
          resume=True, progress=False)
    train(config("edpose_tiny", data_root, tmp_path / "full", "max_steps=5", "ckpt_every=5", "ema_decay=0.5"),
          progress=False)
    resumed, full = (load_checkpoint(latest_checkpoint(tmp_path / r)[0])[1] for r in ("run", "full"))
    torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0)


def test_coco_data_names_its_unset_files():
    cfg = TrainConfig(data=DataConfig(kind="coco", train_images="img", val_images="img", val_ann="val.json"))
    with pytest.raises(ValueError, match=r"data.train_ann not set"):
        build_datasets(cfg)


def test_a_run_is_not_overwritten_without_resume(data_root, tmp_path):
    train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=1"), progress=False)
    with pytest.raises(FileExistsError, match=r"run: holds a training run already \(step_0000001.safetensors\); "
                                              r"pass --resume"):
        train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=2"), progress=False)
    state_path = latest_checkpoint(tmp_path / "run")[1]
    state = torch.load(state_path, weights_only=False)
    torch.save(dict(state, torch_rng=state["torch_rng"] * 2), state_path)  # as two processes save it
    with pytest.raises(ValueError, match=r"trained on 2 process\(es\), this call has 1"):
        train(config("edpose_tiny", data_root, tmp_path / "run", "max_steps=2"), resume=True, progress=False)


def test_resume_follows_the_asked_schedule_or_refuses(data_root, tmp_path):
    recipe, out = "edpose_tiny", tmp_path / "run"
    train(config(recipe, data_root, out, "max_steps=4", "ckpt_every=4", "lr_drop=(2,)"), progress=False)
    with pytest.raises(ValueError, match=r"dropped its learning rate at steps \[2\].*lr_drop=\(3,\)"):
        train(config(recipe, data_root, out, "max_steps=6", "ckpt_every=2", "lr_drop=(3,)"), resume=True,
              progress=False)
    with pytest.raises(ValueError, match=r"base learning rates.*lr=0.001"):
        train(config(recipe, data_root, out, "max_steps=6", "ckpt_every=2", "lr_drop=(2,)", "lr=1e-3"),
              resume=True, progress=False)
    # a later drop, added on resume, is taken: 5e-4 x 0.1 (step 2) x 0.1 (step 5)
    train(config(recipe, data_root, out, "max_steps=6", "ckpt_every=2", "lr_drop=(2, 5)"), resume=True,
          progress=False)
    _, state_path = latest_checkpoint(out)
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    assert state["step"] == 6
    schedule = state["schedule"]
    assert max(schedule["base_lrs"]) == pytest.approx(5e-4)
    assert schedule["_last_lr"] == pytest.approx([lr * 0.01 for lr in schedule["base_lrs"]])
