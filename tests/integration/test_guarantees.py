"""What posediff guarantees (docs/architecture.md, "What posediff guarantees"): nothing the user wrote is lost,
nothing silently wrong, every mistake one line.

Each test reproduces a defect a hostile but fair user found, and holds the documented behaviour."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import posediff
from posediff.cli import main as cli
from posediff.cli import run
from posediff.data.base import read_image
from posediff.engine import save_checkpoint
from posediff.engine.config import TrainConfig, apply_overrides, load_config
from posediff.engine.train import train
from posediff.evaluation import evaluate_keypoints
from posediff.io import MANIFEST
from posediff.tasks.multiperson import DataConfig

SMALL = ["data.num_images=30", "data.size=96", "data.train_scales=(96,)", "data.crop_scales=(96,)",
         "data.crop_size=(80,96)", "data.eval_size=96", "data.max_size=128", "batch_size=2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt"), 0, posediff.create_model("edpose_tiny"), "edpose_tiny", {})


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = posediff.create_model("diffusion_regpose_tiny")
    return save_checkpoint(tmp_path_factory.mktemp("dckpt"), 0, model, "diffusion_regpose_tiny", {})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthcrowd")


@pytest.fixture
def photos(data_dir, tmp_path):
    """Two real photographs, a.jpg and b.png, in a folder of their own."""
    d = tmp_path / "photos"
    d.mkdir()
    src = sorted((data_dir / "coco_images").glob("*.jpg"))
    (d / "a.jpg").write_bytes(src[0].read_bytes())
    Image.open(src[1]).save(d / "b.png")
    return d


def one_line_error(argv, capsys) -> str:
    """``posediff ARGV`` through the console entry point: exit status 2 and one ``posediff: error:`` line."""
    assert run(lambda: cli(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("posediff: error: ") and err[-1].startswith("(POSEDIFF_TRACEBACK=1"), err
    return err[-2]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def small_config(data_root, out, *extra) -> TrainConfig:
    cfg = TrainConfig(recipe="diffusion_regpose_tiny", data=DataConfig(root=str(data_root)), out=str(out), lr=5e-4)
    return apply_overrides(cfg, SMALL + list(extra))


# ------------------------------------------------------------------------------------------------------------
# 1-3: predict and train write only what they own; one bad image does not end the run
# ------------------------------------------------------------------------------------------------------------

def test_predict_never_draws_over_an_input_image(checkpoint, photos, capsys):
    (photos / "good.jpg").write_bytes((photos / "a.jpg").read_bytes())
    (photos / "good_poses.png").write_bytes((photos / "b.png").read_bytes())  # a photo the user named so
    before = (photos / "good_poses.png").read_bytes()
    assert cli(["predict", str(photos / "good.jpg"), str(photos / "good_poses.png"), "--checkpoint", str(checkpoint),
                "--out", str(photos), "--size", "64"]) == 0
    assert (photos / "good_poses.png").read_bytes() == before
    index = json.loads((photos / "images.json").read_text())["images"]
    assert index[0]["drawing"] != "good_poses.png" and (photos / index[0]["drawing"]).is_file()
    assert len({im["drawing"] for im in index}) == 2


def test_predict_refuses_to_replace_files_it_did_not_write(checkpoint, photos, tmp_path, capsys):
    user = tmp_path / "userdir"
    user.mkdir()
    for name in ("results.json", "images.json"):
        (user / name).write_text('{"mine": true}')
    (user / "a_poses.png").write_bytes((photos / "b.png").read_bytes())
    before = snapshot(user)
    line = one_line_error(["predict", str(photos / "a.jpg"), "--checkpoint", str(checkpoint), "--out", str(user),
                           "--size", "64"], capsys)
    assert "which posediff did not write" in line and "pass another --out" in line
    assert snapshot(user) == before
    # a folder posediff made is its own: a second call replaces the first's files
    assert cli(["predict", str(photos / "a.jpg"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                "--size", "64"]) == 0
    assert cli(["predict", str(photos / "b.png"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                "--size", "64"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [MANIFEST, "b_poses.png", "images.json",
                                                                  "results.json"]


def test_train_refuses_a_folder_of_the_users_own_files(data_root, tmp_path, capsys):
    user = tmp_path / "userrun"
    user.mkdir()
    for name in ("config.json", "history.jsonl", "result.json"):
        (user / name).write_text("my notes\n")
    before = snapshot(user)
    with pytest.raises(ValueError, match=r"userrun: holds config.json \(and 2 more\), which posediff did not write"):
        train(small_config(data_root, user, "max_steps=1"), progress=False)
    assert snapshot(user) == before


def test_predict_goes_past_a_bad_image_and_reports_it(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["predict", str(photos / "b.png"), "--checkpoint", str(checkpoint), "--out", str(out),
                "--size", "64"]) == 0  # an earlier call: its results must not stay beside the new ones
    whole = (photos / "a.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(whole[: len(whole) // 2])  # its header reads; its pixels do not
    images = [str(photos / "a.jpg"), str(photos / "truncated.jpg"), str(photos / "a.jpg")]
    line = one_line_error(["predict", *images, "--checkpoint", str(checkpoint), "--out", str(out), "--size", "64",
                           "--score-threshold", "0"], capsys)
    assert "1 of 3 images could not be read" in line
    index = json.loads((out / "images.json").read_text())
    assert [im["image_id"] for im in index["images"]] == [0, 2]
    assert index["failed"][0]["image_id"] == 1 and "truncated.jpg" in index["failed"][0]["error"]
    assert {r["image_id"] for r in json.loads((out / "results.json").read_text())} == {0, 2}
    drawings = sorted(p.name for p in out.glob("*_poses.png"))
    assert drawings == sorted(im["drawing"] for im in index["images"])  # b.png's drawing went with its call


def test_an_image_that_fails_now_leaves_no_drawing_of_an_earlier_call(checkpoint, photos, tmp_path, capsys):
    out, a = tmp_path / "out", photos / "a.jpg"
    assert cli(["predict", str(a), str(photos / "b.png"), "--checkpoint", str(checkpoint), "--out", str(out),
                "--size", "64"]) == 0
    whole = a.read_bytes()
    a.write_bytes(whole[: len(whole) // 2])  # the same image, now damaged
    one_line_error(["predict", str(a), str(photos / "b.png"), "--checkpoint", str(checkpoint), "--out", str(out),
                    "--size", "64"], capsys)
    assert not (out / "a_poses.png").exists()  # the first call's drawing of it went with that call
    a.write_bytes(whole)
    assert cli(["predict", str(a), "--checkpoint", str(checkpoint), "--out", str(out), "--size", "64"]) == 0


def test_a_folder_an_earlier_posediff_wrote_without_a_manifest_is_adopted_by_its_index(checkpoint, photos, tmp_path,
                                                                                         capsys):
    out = tmp_path / "old"
    assert cli(["predict", str(photos / "a.jpg"), "--checkpoint", str(checkpoint), "--out", str(out),
                "--size", "64"]) == 0
    (out / MANIFEST).unlink()  # as an earlier posediff left it
    (out / "c_poses.png").write_bytes(b"the user's own")
    (photos / "c.jpg").write_bytes((photos / "a.jpg").read_bytes())
    before = snapshot(out)
    line = one_line_error(["predict", str(photos / "c.jpg"), "--checkpoint", str(checkpoint), "--out", str(out),
                           "--size", "64"], capsys)
    assert "holds c_poses.png, which posediff did not write" in line  # images.json never listed it
    assert snapshot(out) == before  # refused before anything was removed
    assert cli(["predict", str(photos / "b.png"), "--checkpoint", str(checkpoint), "--out", str(out),
                "--size", "64"]) == 0  # what images.json listed is posediff's: replaced
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "b_poses.png", "c_poses.png", "images.json",
                                                     "results.json"]
    assert (out / "c_poses.png").read_bytes() == b"the user's own"


def test_synthcrowd_and_bench_folders_refuse_the_users_files(tmp_path, capsys):
    from posediff.bench import BenchSpec, run_bench

    root = tmp_path / "sc"
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "images" / "000001.png").write_bytes(b"mine")
    line = one_line_error(["data", "synthcrowd", "--out", str(root), "--num-images", "10", "--size", "64",
                           "--splits", "test"], capsys)
    assert "holds test/images/000001.png, which posediff did not write" in line
    bench = tmp_path / "bench"
    (bench / "plots").mkdir(parents=True)
    (bench / "plots" / "ap_per_crowd_level.png").write_bytes(b"mine")
    with pytest.raises(ValueError, match=r"bench: holds plots/ap_per_crowd_level.png, which posediff did not write"):
        run_bench(BenchSpec(out=str(bench), train_steps=1))
    assert (bench / "plots" / "ap_per_crowd_level.png").read_bytes() == b"mine"


def test_a_call_whose_images_all_fail_leaves_an_index_saying_so(checkpoint, photos, tmp_path, capsys):
    whole = (photos / "a.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    line = one_line_error(["predict", str(photos / "truncated.jpg"), "--checkpoint", str(checkpoint), "--out",
                           str(tmp_path / "new"), "--size", "64"], capsys)
    assert "1 of 1 images could not be read" in line
    assert json.loads((tmp_path / "new" / "results.json").read_text()) == []  # not an empty folder
    assert [f["image_id"] for f in json.loads((tmp_path / "new" / "images.json").read_text())["failed"]] == [0]
    one_line_error(["predict", str(photos / "a.jpg"), "--checkpoint", str(tmp_path / "none.safetensors"),
                    "--out", str(tmp_path / "refused")], capsys)
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------------------------------------------------
# 4: sampling cost is linear in the pooled candidates
# ------------------------------------------------------------------------------------------------------------

def test_sampling_at_the_schedulers_maximum_steps_fits_in_memory():
    """``--steps 1000`` on a 64-pixel image pools 10 proposals x 1,000 steps = 10,000 candidates: an all-pairs
    (M, M, K, 2) OKS tensor needed 13.6 GB (killed at 24 GB); here the process may allocate 3 GB."""
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_DATA, (3 * 2**30, 3 * 2**30))
        import numpy as np, torch, posediff
        from posediff.engine import Predictor
        torch.manual_seed(0)
        model = posediff.create_model("diffusion_regpose_tiny")
        assert model.head.inference_proposals * model.head.max_sampling_steps == 10000
        image = np.zeros((64, 64, 3), np.uint8)
        pred = Predictor(model, size=64, steps=model.head.max_sampling_steps, device="cpu")([image])[0]
        print(pred["keypoints"].shape[1:], len(pred["keypoints"]) <= model.max_det)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(17, 3) True"


# ------------------------------------------------------------------------------------------------------------
# 5: metrics refuse NaN
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset,gt_file", [("coco", "coco_val2017_150.json"),
                                             ("crowdpose", "coco_val2017_150_as_crowdpose.json")])
def test_metrics_refuse_non_finite_results(dataset, gt_file, data_dir):
    gt = json.loads((data_dir / gt_file).read_text())
    people = [a for a in gt["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]][:20]
    far = []
    for a in people:
        kp = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, :2] += 200.0
        kp[:, 2] = 1.0
        far.append(dict(image_id=a["image_id"], category_id=1, keypoints=kp.reshape(-1).tolist(), score=0.9))
    image_ids = sorted({r["image_id"] for r in far})
    assert evaluate_keypoints(gt, far, dataset, image_ids=image_ids)["AP"] == 0.0
    nan = [dict(r, keypoints=[float("nan")] + r["keypoints"][1:]) for r in far]  # pycocotools scored this AP 1.0
    with pytest.raises(ValueError, match=r"results\[0\] \(image_id \d+\) has a non-finite keypoints"):
        evaluate_keypoints(gt, nan, dataset, image_ids=image_ids)
    with pytest.raises(ValueError, match=r"results\[3\] \(image_id \d+\) has a non-finite score \(nan\)"):
        evaluate_keypoints(gt, [dict(r, score=float("nan") if i == 3 else r["score"]) for i, r in enumerate(far)],
                           dataset, image_ids=image_ids)


# ------------------------------------------------------------------------------------------------------------
# 6: values that cannot be right are refused; images of every mode read right
# ------------------------------------------------------------------------------------------------------------

def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image[..., 0], ramp / 257.0, atol=0.51)  # was all 255: clipped
    Image.fromarray((ramp / 65535.0).astype(np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f.tif")[..., 1], ramp / 257.0, atol=0.51)


@pytest.mark.parametrize("override,field", [("lr=-1e-3", "lr must be a finite number > 0"),
                                            ("lr=0", "lr must be"), ("lr=1e400", "lr must be a finite number"),
                                            ("weight_decay=-1", "weight_decay must be"),
                                            ("clip_grad=-0.1", "clip_grad must be"), ("ema_decay=1.0", "ema_decay"),
                                            ("lr_gamma=0", "lr_gamma must be"), ("lr_drop=(0,)", "lr_drop must be"),
                                            ("seed=-1", "seed must be"), ("data.size=-5", "data.size must be"),
                                            ("data.num_images=0", "data.num_images must be an integer >= 1"),
                                            ("data.pixel_noise=-1", "data.pixel_noise"),
                                            ("data.train_scales=()", "data.train_scales"),
                                            ("data.eval_size=0", "data.eval_size")])
def test_values_that_cannot_be_right_are_refused_by_name(override, field, tmp_path, capsys):
    (tmp_path / "cfg.py").write_text(  # a run that would stop at its data (none named) if the value passed
        f"from posediff.engine import DataConfig, TrainConfig\n"
        f"config = TrainConfig(out={str(tmp_path / 'run')!r}, data=DataConfig(kind='coco'))\n")
    line = one_line_error(["train", str(tmp_path / "cfg.py"), override], capsys)
    assert field in line
    assert not (tmp_path / "run").exists()  # refused before anything was rendered or made


def test_predict_refuses_meaningless_flags(checkpoint, photos, tmp_path, capsys):
    base = ["predict", str(photos / "a.jpg"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    assert "--score-threshold nan: expected a number from 0 to 1" in one_line_error(
        base + ["--score-threshold", "nan"], capsys)
    assert "predicts in one pass and does not sample; sampling steps apply to diffusion models only" in \
        one_line_error(base + ["--steps", "4"], capsys)
    assert not (tmp_path / "o").exists()


def test_model_inputs_get_one_clear_error_at_the_entry():
    model = posediff.create_model("diffusion_regpose_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"steps \(steps=, --steps\) 0: expected an integer from 1 to 1000"):
        model(x, steps=0)
    with pytest.raises(ValueError, match="images are torch.float64, the model's weights torch.float32"):
        model(x.double())
    with pytest.raises(ValueError, match=r"images are torch.uint8.*pixels 0-255"):
        model((x * 50 + 128).clamp(0, 255).to(torch.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        model(x[:0])
    with pytest.raises(ValueError, match="values up to 255; expected pixels normalised"):
        model(torch.full((1, 3, 64, 64), 255.0))
    patched = x.clone()
    patched[0, 1, 10:20, 30:40] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(image 0, channel 1, row 10, column 30 is nan\)"):
        model(patched)
    with pytest.raises(ValueError, match="RegressionKeypointHead predicts in one pass and does not sample"):
        posediff.create_model("edpose_tiny").eval()(x, steps=4)


def test_completion_refuses_non_finite_labelled_joints():
    from posediff.diffusion.completion import GaussianPosePrior

    prior = GaussianPosePrior.from_pretrained("coco17")
    kp = np.zeros((2, 17, 3))
    kp[:, :, 0], kp[:, :, 1] = np.linspace(10, 60, 17), np.linspace(5, 90, 17)
    kp[:, :2, 2] = 2.0
    boxes = np.array([[0.0, 0.0, 70.0, 100.0]] * 2)
    assert np.isfinite(prior.complete(kp, boxes)).all()
    nan_joint = kp.copy()
    nan_joint[1, 0, 0] = np.nan  # before: all 15 filled joints of person 1 became NaN
    with pytest.raises(ValueError, match=r"keypoints\[1, 0\] = \[nan, 5.0, 2.0\] is not finite"):
        prior.complete(nan_joint, boxes)
    nan_flag = kp.copy()
    nan_flag[0, 5, 2] = np.nan  # before: passed through
    with pytest.raises(ValueError, match=r"keypoints\[0, 5\]"):
        prior.complete(nan_flag, boxes)
    hidden_nan = kp.copy()
    hidden_nan[0, 9, :2] = np.nan  # an unlabelled joint's coordinates are never read
    assert np.isfinite(prior.complete(hidden_nan, boxes)[..., :2]).all()


# ------------------------------------------------------------------------------------------------------------
# 7: every mistake is one line and exit 2
# ------------------------------------------------------------------------------------------------------------

def test_synthcrowd_command_mistakes_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert f"--out {tmp_path / 'file'}: is a file" in one_line_error(
        ["data", "synthcrowd", "--out", str(tmp_path / "file"), "--num-images", "10"], capsys)
    assert "--num-images must be at least 1" in one_line_error(
        ["data", "synthcrowd", "--out", str(tmp_path / "d"), "--num-images", "0"], capsys)
    assert "--splits must name distinct splits" in one_line_error(
        ["data", "synthcrowd", "--out", str(tmp_path / "d"), "--num-images", "10", "--splits", "train,nope"], capsys)
    assert not (tmp_path / "d").exists()


def test_train_paths_that_are_files_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "cfg.py").write_text("from posediff.engine import DataConfig, TrainConfig\n"
                                     "config = TrainConfig(data=DataConfig(kind='coco'))\n")
    line = one_line_error(["train", str(tmp_path / "cfg.py"), f"out={tmp_path / 'file'}"], capsys)
    assert "out= " in line and "is a file; expected a folder" in line
    line = one_line_error(["train", str(tmp_path / "cfg.py"), f"out={tmp_path / 'run'}", "data.kind=synthcrowd",
                           f"data.root={tmp_path / 'file'}"], capsys)
    assert "data.root " in line and "is a file" in line
    assert not (tmp_path / "run").exists()


def test_a_config_with_a_syntax_error_points_at_its_line(tmp_path, capsys):
    (tmp_path / "cfg.py").write_text("from posediff.engine import TrainConfig\n\nconfig = TrainConfig(lr=1e-4,,)\n")
    line = one_line_error(["train", str(tmp_path / "cfg.py")], capsys)
    assert f"{tmp_path / 'cfg.py'}:3: " in line and "config = TrainConfig(lr=1e-4,,)" in line
    (tmp_path / "cfg2.py").write_text("from posediff.engine import DataConfig, TrainConfig\n"
                                      "config = TrainConfig(lr=-1, data=DataConfig(kind='coco'))\n")
    line = one_line_error(["train", str(tmp_path / "cfg2.py")], capsys)
    assert f"{tmp_path / 'cfg2.py'}:2: " in line and "lr must be a finite number > 0" in line
    with pytest.raises(ValueError, match=r"cfg.py:3: "):
        load_config(tmp_path / "cfg.py")


# ------------------------------------------------------------------------------------------------------------
# 8: recovery without help
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("cpu_only")
def test_a_damaged_run_names_its_intact_checkpoint_and_resumes_from_it(data_root, tmp_path, capsys):
    full = train(small_config(data_root, tmp_path / "full", "max_steps=6", "ckpt_every=2"), progress=False)
    run_dir = tmp_path / "cut"
    train(small_config(data_root, run_dir, "max_steps=4", "ckpt_every=2"), progress=False)
    latest = run_dir / "step_0000004.state.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a truncated copy
    stray = run_dir / ".step_0000006.safetensors.abcd1234.tmp"  # what a SIGKILL during a write leaves
    stray.write_bytes(b"\0" * 100)
    cfg = small_config(data_root, run_dir, "max_steps=6", "ckpt_every=2")
    with pytest.raises(ValueError, match=r"step_0000004.state.pt: cannot read the training state .*the newest intact "
                                         r"checkpoint is .*step_0000002.safetensors: continue from it with "
                                         r"--resume-from"):
        train(cfg, resume=True, progress=False)
    resumed = train(cfg, resume_from=str(run_dir / "step_0000002.safetensors"), progress=False)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]  # bit-exact still
    assert not stray.exists()
    assert json.loads((run_dir / "last.json").read_text())["name"] == "step_0000006"


def test_resume_from_an_earlier_checkpoint_is_refused_while_a_later_one_is_intact(data_root, tmp_path):
    run_dir = tmp_path / "run"
    train(small_config(data_root, run_dir, "max_steps=2", "ckpt_every=1"), progress=False)
    (run_dir / "step_0000009.safetensors").write_bytes(b"a copy of the user's")  # not posediff's: never pruned
    with pytest.raises(ValueError, match=r"holds step_0000009.safetensors, which posediff did not write"):
        train(small_config(data_root, run_dir, "max_steps=3", "ckpt_every=1"), resume=True, progress=False)
    (run_dir / "step_0000009.safetensors").unlink()
    with pytest.raises(ValueError, match=r"step_0000002.safetensors is a later intact checkpoint"):
        train(small_config(data_root, run_dir, "max_steps=3", "ckpt_every=1"),
              resume_from=str(run_dir / "step_0000001.safetensors"), progress=False)


def test_an_empty_last_json_and_a_truncated_state_are_one_line(data_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(small_config(data_root, run_dir, "max_steps=2", "ckpt_every=1"), progress=False)
    (tmp_path / "cfg.py").write_text(textwrap.dedent(f"""
        from posediff.engine import TrainConfig, DataConfig
        config = TrainConfig(recipe="diffusion_regpose_tiny", data=DataConfig(root={str(data_root)!r}),
                             out={str(run_dir)!r}, lr=5e-4)
    """))
    args = ["train", str(tmp_path / "cfg.py"), *SMALL, "max_steps=3", "--no-progress"]
    state = run_dir / "step_0000002.state.pt"
    state.write_bytes(state.read_bytes()[:500])
    line = one_line_error(args + ["--resume"], capsys)
    assert "step_0000002.state.pt: cannot read the training state" in line and "--resume-from" in line
    (run_dir / "last.json").write_text("")
    line = one_line_error(args + ["--resume"], capsys)
    assert "last.json: cannot read the name of the last checkpoint" in line and "step_0000001" in line


def test_prior_fit_on_a_14_joint_file_suggests_its_skeleton(data_dir, tmp_path, capsys):
    line = one_line_error(["prior", "fit", str(data_dir / "crowdpose_fixture.json"), "--out",
                           str(tmp_path / "p.safetensors")], capsys)
    assert "pass --skeleton crowdpose14" in line


def test_single_file_outputs_replace_only_posediff_files(data_dir, tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes((data_dir / "matplotlib_grace_hopper.jpg").read_bytes())
    line = one_line_error(["prior", "fit", str(data_dir / "coco_val2017_fully_labelled_persons.json"), "--out",
                           str(photo)], capsys)
    assert "holds a file posediff did not write" in line
    assert photo.read_bytes() == (data_dir / "matplotlib_grace_hopper.jpg").read_bytes()


def test_traceback_is_there_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEDIFF_TRACEBACK", "1")
    with pytest.raises(ValueError, match="--num-images must be at least 1"):  # raised, not printed
        run(lambda: cli(["data", "synthcrowd", "--out", str(tmp_path / "d"), "--num-images", "0"]))
