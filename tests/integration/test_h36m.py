"""Human3.6M in VideoPose3D's format, on fixtures made from 4 real frames (tests/data/h36m/)."""

from pathlib import Path

import numpy as np
import pytest

from posediff.data.h36m import (
    CAMERA_IDS,
    H36M32_TO_17,
    H36MError,
    H36MLifting,
    action_group,
    load_cameras,
    load_positions_3d,
    unnormalize_screen,
)

DATA = Path(__file__).parents[1] / "data" / "h36m"
P3D, P2D, PGMM = DATA / "data_3d_h36m.npz", DATA / "data_2d_h36m_gt.npz", DATA / "data_2d_h36m_gmm.npz"
SUBJECTS = ("S1", "S5", "S7", "S8")  # the subjects of the 4 real frames


def real_frames():
    z = np.load(DATA / "h36m_body3d_4frames.npz")
    for name, joints, part in zip(z["imgname"], z["S"], z["part"]):
        subject, rest = name.split("/")[:2]
        yield subject, rest.split(".")[1], joints[:, :3], part[:, :2]


def test_projection_reproduces_the_real_2d():
    cams = load_cameras()  # the shipped table
    for subject, cam_id, joints, part in real_frames():
        uv = cams[(subject, cam_id)].project(joints)
        assert np.abs(uv - part).max() < 0.5, (subject, cam_id)
        assert np.abs(cams[(subject, cam_id)].project(joints, distort=False) - part).max() > 0.5  # distortion matters


def test_world_to_camera_round_trip_and_depth():
    cams = load_cameras()
    x = np.random.default_rng(0).normal(size=(5, 17, 3))
    for cam in cams.values():
        np.testing.assert_allclose(cam.camera_to_world(cam.world_to_camera(x)), x, atol=1e-12)
        assert 3.0 < cam.world_to_camera(np.zeros(3))[2] < 8.0  # the capture area lies 3-8 m in front


def test_dataset_targets_and_2d_match_the_real_frames():
    ds = H36MLifting(P3D, P2D, subjects=SUBJECTS)
    assert len(ds) == 4 * 4  # 4 takes of one frame, 4 cameras each
    cams = load_cameras()
    by_key = {(it["subject"], it["camera"]): it for it in (ds[i] for i in range(len(ds)))}
    for subject, cam_id, joints, part in real_frames():
        item = by_key[(subject, cam_id)]
        mm = joints * 1000.0
        np.testing.assert_allclose(item["pose_3d"].numpy(), mm - mm[:1], atol=0.05)  # float32 mm
        cam = cams[(subject, cam_id)]
        uv = unnormalize_screen(item["keypoints_2d"][0].numpy(), cam.w, cam.h)
        np.testing.assert_allclose(uv, part, atol=1e-3)
        assert item["keypoints_2d"].shape == (1, 17, 2)


def test_mixture_files_give_the_mean_and_normalised_uncertainty():
    ds = H36MLifting(P3D, PGMM, subjects=SUBJECTS)
    gt = H36MLifting(P3D, P2D, subjects=SUBJECTS)
    item, ref = ds[0], gt[0]
    assert item["uncertainty"].shape == (1, 17, 2, 5)
    cam = load_cameras()[(item["subject"], item["camera"])]
    shift = 10.0 / cam.w * 2 * 0.2  # the 0.2-weight component lies 10 px to the right
    np.testing.assert_allclose(item["keypoints_2d"][0, :, 0] - ref["keypoints_2d"][0, :, 0], shift, atol=1e-5)
    np.testing.assert_allclose(item["uncertainty"][0, :, 0, 3], 3.0 / cam.w * 2, rtol=1e-5)


def test_frames_window_repeats_the_edges_and_stride():
    ds = H36MLifting(P3D, P2D, subjects=SUBJECTS, frames=5)
    item = ds[0]
    assert item["keypoints_2d"].shape == (5, 17, 2)
    assert (item["keypoints_2d"] == item["keypoints_2d"][2]).all()  # a one-frame take: all repeats
    assert len(H36MLifting(P3D, P2D, subjects=SUBJECTS, stride=2)) == 16  # F = 1: frame 0 only


def test_actions_are_grouped_as_the_protocol():
    assert action_group("Directions 1") == "Directions"
    assert action_group("WalkingDog") == "WalkDog"
    assert action_group("TakingPhoto 1") == "Photo"
    ds = H36MLifting(P3D, P2D, subjects=SUBJECTS, actions=["Greeting"])
    assert {ds[i]["action"] for i in range(len(ds))} == {"Greeting"}


def test_32_joints_are_reduced_to_the_usual_17():
    p = load_positions_3d(P3D)
    raw = np.load(P3D, allow_pickle=True)["positions_3d"].item()
    np.testing.assert_allclose(p["S1"]["Directions 1"], raw["S1"]["Directions 1"][:, list(H36M32_TO_17)], atol=1e-6)


def write(path, **fields):
    np.savez(path, **fields)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing_key", "has no field 'positions_3d'"),
    ("joints", r"positions_3d\['S1'\]\['Walking'\] has shape \(2, 16, 3\), expected \(F, 32, 3\) or \(F, 17, 3\)"),
    ("nan", r"positions_3d\['S1'\]\['Walking'\] holds a non-finite value at frame 1"),
    ("subject", "subject 'S9' is absent"),
    ("cameras", r"has 3 cameras, expected 4"),
    ("joints_2d", r"positions_2d\['S1'\]\['Walking'\]\[0\] has shape \(2, 16, 2\), expected \(F, 17, 2\) pixels"),
    ("nan_2d", r"positions_2d\['S1'\]\['Walking'\]\[0\] holds a non-finite value at frame 0"),
    ("gmm_fields", r"positions_2d\['S1'\]\['Walking'\]\[0\] has shape \(2, 17, 3, 4\), expected \(F, 17, K, 5\) "
                   r"\[π, μu, μv, σu, σv\]"),
    ("nan_gmm", r"positions_2d\['S1'\]\['Walking'\]\[0\] holds a non-finite value at frame 1"),
    ("symmetry", r"metadata\['keypoints_symmetry'\] is .*, expected H36M-17's left and right joints"),
    ("num_joints", r"metadata\['num_joints'\] is 32, expected 17"),
])
def test_bad_files_are_named(tmp_path, case, message):
    good = np.zeros((2, 17, 3), np.float32)
    two_d = {"S1": {"Walking": [np.zeros((2, 17, 2), np.float32)] * len(CAMERA_IDS)}}
    p3d = {"S1": {"Walking": good}}
    if case == "joints":
        p3d = {"S1": {"Walking": np.zeros((2, 16, 3))}}
    if case == "nan":
        bad = good.copy()
        bad[1, 3, 2] = np.nan
        p3d = {"S1": {"Walking": bad}}
    if case == "cameras":
        two_d = {"S1": {"Walking": two_d["S1"]["Walking"][:3]}}
    bad_2d = {"joints_2d": np.zeros((2, 16, 2)), "nan_2d": np.full((2, 17, 2), np.nan),
              "gmm_fields": np.ones((2, 17, 3, 4))}
    if case == "nan_gmm":
        bad_2d[case] = np.ones((2, 17, 3, 5))
        bad_2d[case][1, 0, 0, 3] = np.inf
    if case in bad_2d:
        two_d = {"S1": {"Walking": [bad_2d[case]] + two_d["S1"]["Walking"][1:]}}
    f3 = write(tmp_path / "p3d.npz", **({"other": 1} if case == "missing_key" else {"positions_3d": p3d}))
    meta = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    if case == "symmetry":
        meta["keypoints_symmetry"] = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 16, 15]]
    if case == "num_joints":
        meta["num_joints"] = 32
    f2 = write(tmp_path / "p2d.npz", positions_2d=two_d, metadata=meta)
    with pytest.raises(H36MError, match=message) as err:
        H36MLifting(f3, f2, subjects=("S9",) if case == "subject" else ("S1",))
    assert str(f3 if case in ("missing_key", "joints", "nan", "subject") else f2) in str(err.value)
