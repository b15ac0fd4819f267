"""MocapLift: real CMU poses through the real Human3.6M cameras, with a detector-like 2D error model."""

import numpy as np
import pytest
import torch

from posediff.data.h36m import load_cameras
from posediff.data.mocaplift import SPLIT_SUBJECTS, MocapBank, MocapLift, MocapLiftConfig, action_group

CLEAN = MocapLiftConfig(noise=0.0, swap_prob=0.0, snap_prob=0.0)
BONES = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 11), (11, 12), (12, 13)]


def project(item):
    cam = load_cameras()[tuple(item["camera"].split("/"))]
    xyz = (item["pose_3d"] + item["root_3d"]).double().numpy() / 1000.0
    return cam.project(xyz)


def test_splits_are_by_subject_and_cover_every_pose():
    bank = MocapBank.shipped()
    parts = {name: bank.split(name) for name in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(bank.joints) == 21085
    subjects = {name: set(bank.subject[p].tolist()) for name, p in parts.items()}
    assert subjects["test"] == set(SPLIT_SUBJECTS["test"]) and subjects["val"] == set(SPLIT_SUBJECTS["val"])
    assert not (subjects["train"] & subjects["test"]) and not (subjects["train"] & subjects["val"])


def test_deterministic_by_seed_and_epoch():
    a, b = MocapLift("train", seed=3), MocapLift("train", seed=3)
    for key in ("keypoints_2d", "uncertainty", "pose_3d"):
        torch.testing.assert_close(a[5][key], b[5][key], rtol=0, atol=0)
    assert not torch.equal(MocapLift("train", seed=4)[5]["keypoints_2d"], a[5]["keypoints_2d"])
    b.set_epoch(1)
    assert not torch.equal(b[5]["keypoints_2d"], a[5]["keypoints_2d"])
    torch.testing.assert_close(b[5]["pose_3d"].norm(dim=-1), a[5]["pose_3d"].norm(dim=-1), rtol=0, atol=1e-3)


def test_clean_2d_is_the_projection_of_the_3d_and_bones_keep_their_length():
    ds = MocapLift("test", config=CLEAN)
    bank = ds.bank
    for i in (0, 100, 2000):
        item = ds[i]
        np.testing.assert_allclose(item["keypoints_px"][0].double().numpy(), project(item), atol=0.05)
        joints = bank.joints[item["frame"]]
        for a, b in BONES:
            assert float(torch.linalg.norm(item["pose_3d"][a] - item["pose_3d"][b])) == pytest.approx(
                float(np.linalg.norm(joints[a] - joints[b])), abs=0.05)
        assert item["pose_3d"][0].abs().max() == 0
        assert 2000 < item["root_3d"][2] < 9000  # metres in front of the camera, in mm


def test_people_fall_inside_the_image_at_h36m_sizes():
    ds = MocapLift("test", config=CLEAN)
    inside, height = [], []
    for i in range(0, len(ds), 10):
        it = ds[i]
        px, (w, h) = it["keypoints_px"][0].numpy(), it["image_size"].numpy()
        inside.append(((px >= 0) & (px < [w, h])).all())
        height.append(np.ptp(px[:, 1]))
    assert np.mean(inside) > 0.98
    assert 200 < np.median(height) < 450  # the real Human3.6M frames: 165-336 px


def test_the_mixture_is_the_error_model():
    """With no gross errors the truth lies N(0, σ) from the observation, σ the mixture's first component."""
    ds = MocapLift("test", config=MocapLiftConfig(swap_prob=0.0, snap_prob=0.0))
    z = []
    for i in range(0, 600, 3):
        it = ds[i]
        sigma = it["uncertainty"][0, :, 0, 3].double().numpy() * it["image_size"][0].item() / 2  # pixels
        z.append((it["keypoints_px"][0].double().numpy() - project(it)) / sigma[:, None])
        np.testing.assert_allclose(it["uncertainty"][0, :, 0, 0].numpy(), 1.0)
    z = np.concatenate(z)
    assert abs(z.mean()) < 0.05 and 0.93 < z.std() < 1.07


def test_swaps_happen_at_their_rate_and_the_mixture_says_where():
    ds = MocapLift("test", config=MocapLiftConfig(noise=0.0, swap_prob=0.5, snap_prob=0.0))
    swapped = 0
    n = 400
    for i in range(n):
        it = ds[i]
        px, true = it["keypoints_px"][0].double().numpy(), project(it)
        if np.abs(px[13] - true[16]).max() < 1e-3 and np.abs(px[13] - true[13]).max() > 1:  # l-wrist at r-wrist
            swapped += 1
        np.testing.assert_allclose(it["uncertainty"][0, 13, 1, 0].item(), 0.25)  # P(this arm joint swapped)
        np.testing.assert_allclose(it["uncertainty"][0, 13, 1, 1:3].numpy(), it["keypoints_2d"][0, 16].numpy())
    assert 0.18 < swapped / n < 0.32


def test_a_swapped_joint_lies_its_own_error_from_the_partners_observation():
    """The swap component: the truth of joint a, when swapped, is N(observation of its partner, σ_a²)."""
    ds = MocapLift("test", config=MocapLiftConfig(swap_prob=0.5, snap_prob=0.0, confidence_spread=1.0))
    z = []
    for i in range(600):
        it = ds[i]
        true, obs = project(it), it["keypoints_px"][0].double().numpy()
        mix = it["uncertainty"][0].double().numpy()                            # (17, 3, 5), screen units
        for a, b in ((13, 16), (6, 3)):                                        # a wrist, a foot
            swapped = (np.linalg.norm(obs[b] - true[a]) < 0.3 * np.linalg.norm(obs[b] - true[b])
                       and np.linalg.norm(obs[a] - true[b]) < 0.3 * np.linalg.norm(obs[a] - true[a]))
            if swapped:
                mu = (mix[a, 1, 1:3] + np.array([1.0, it["image_size"][1].item() / it["image_size"][0].item()])) \
                    * it["image_size"][0].item() / 2
                z.append((true[a] - mu) / (mix[a, 1, 3] * it["image_size"][0].item() / 2))
    z = np.concatenate(z)
    assert len(z) > 200 and 0.85 < z.std() < 1.15


def test_sequences_are_uniform_in_time_and_centred_on_the_pose():
    bank = MocapBank.shipped()
    i = int(bank.take_poses[0][10])
    win = bank.window(i, 9)
    np.testing.assert_allclose(win[4], bank.joints[i])
    first = int(bank.take_poses[0][0])
    held = bank.window(first, 9)
    np.testing.assert_allclose(held[:4], np.repeat(bank.joints[first][None], 4, 0))  # held before the take
    ds = MocapLift("train", frames=9)
    assert ds[0]["keypoints_2d"].shape == (9, 17, 2) and ds[0]["uncertainty"].shape == (9, 17, 3, 5)


def test_a_sized_subset_spans_the_split():
    full, part = MocapLift("test"), MocapLift("test", size=200)
    assert len(part) == 200 and part.indices[0] == full.indices[0] and part.indices[-1] == full.indices[-1]
    assert len({part[i]["subject"] for i in range(len(part))}) == len(SPLIT_SUBJECTS["test"])


def test_actions_and_bad_arguments():
    assert action_group("soccer - kick ball") == "sports"
    assert action_group("jump kick") == "martial arts"
    assert action_group("salsa dance") == "dance"
    with pytest.raises(ValueError, match="split='dev'"):
        MocapLift("dev")
    with pytest.raises(ValueError, match=r"MocapLiftConfig.swap_prob=0.9"):
        MocapLiftConfig(swap_prob=0.9)
    with pytest.raises(IndexError, match="out of range"):
        MocapLift("val")[10**6]
