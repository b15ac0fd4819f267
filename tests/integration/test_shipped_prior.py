"""The prior shipped in the package is the one its command makes from the real COCO poses."""

import numpy as np
import torch

from posediff.cli import main as cli
from posediff.data import load_person_arrays
from posediff.diffusion import GaussianPosePrior
from posediff.skeletons import COCO17


def test_shipped_prior_is_reproduced_by_its_command(data_dir, tmp_path):
    shipped = GaussianPosePrior.from_pretrained("coco17")
    assert shipped.meta["num_persons"] == 336 and shipped.meta["flip"] and shipped.meta["condition_on_aspect"]
    out = tmp_path / "prior.safetensors"
    assert cli(["prior", "fit", str(data_dir / "coco_val2017_fully_labelled_persons.json"), "--out", str(out)]) == 0
    refit = GaussianPosePrior.load(out)
    torch.testing.assert_close(refit.mean, shipped.mean)
    torch.testing.assert_close(refit.cov, shipped.cov)
    torch.testing.assert_close(refit.aspect_coef, shipped.aspect_coef)
    # mirror symmetry from the flip augmentation: left/right joints mirror each other
    flip = list(COCO17.flip_index)
    mirrored = shipped.mean[flip] * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(mirrored, shipped.mean, atol=1e-12, rtol=0)


def test_prior_and_posebank_commands_refuse_what_would_go_wrong(data_dir, tmp_path):
    import shutil

    import pytest

    from posediff.data import AnnotationError

    persons = tmp_path / "persons.json"
    shutil.copy(data_dir / "coco_val2017_fully_labelled_persons.json", persons)
    before = persons.read_bytes()
    with pytest.raises(AnnotationError, match=r"categories\[0\].keypoints names the joints \['nose'.* expected "
                                              r"\['hip'"):
        cli(["prior", "fit", str(persons), "--skeleton", "h36m17", "--out", str(tmp_path / "p.safetensors")])
    for command in (["prior", "fit"], ["data", "posebank"]):  # the output would replace the input
        with pytest.raises(ValueError, match="is also this command's input"):
            cli([*command, str(persons), "--out", str(persons)])
    assert persons.read_bytes() == before
    with pytest.raises(AnnotationError, match="no person has 18 or more labelled keypoints"):
        cli(["data", "posebank", str(persons), "--out", str(tmp_path / "bank.npz"), "--min-keypoints", "18"])
    assert not (tmp_path / "bank.npz").exists()


def test_shipped_prior_completes_real_persons_better_than_the_mean_pose(data_dir):
    prior = GaussianPosePrior.from_pretrained("coco17")
    persons = load_person_arrays(data_dir / "coco_val2017_fully_labelled_persons.json")
    kp, boxes = persons.keypoints, persons.boxes
    hidden = np.zeros(kp.shape[:2], bool)
    hidden[:, [9, 10, 15, 16]] = True  # wrists and ankles
    obs = np.where(hidden[..., None], 0.0, kp)
    nothing = np.zeros_like(kp)  # no joint labelled: the completion is the mean pose in the box
    scale = np.sqrt(boxes[:, 2] * boxes[:, 3])[:, None]  # (N, 1)

    def median_error(filled):
        return np.median((np.linalg.norm(filled[..., :2] - kp[..., :2], axis=-1) / scale)[hidden])

    with_joints, mean_pose = median_error(prior.complete(obs, boxes)), median_error(prior.complete(nothing, boxes))
    assert with_joints < 0.8 * mean_pose, (with_joints, mean_pose)


def test_save_load_round_trip_and_errors(tmp_path):
    prior = GaussianPosePrior.from_pretrained("coco17")
    path = tmp_path / "p.safetensors"
    prior.save(path)
    back = GaussianPosePrior.load(path)
    torch.testing.assert_close(back.cov, prior.cov)
    assert back.aspect_mean == prior.aspect_mean and back.meta == prior.meta
    import pytest

    with pytest.raises(FileNotFoundError, match="no file"):
        GaussianPosePrior.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_text("not a prior")
    with pytest.raises(ValueError, match="junk.safetensors"):
        GaussianPosePrior.load(tmp_path / "junk.safetensors")
    with pytest.raises(KeyError, match="available"):
        GaussianPosePrior.from_pretrained("mpii")
