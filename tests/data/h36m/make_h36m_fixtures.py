"""Make the Human3.6M fixtures in VideoPose3D's format from the 4 real frames of ``shared/data/h36m``.

Each real frame (camera-space joints ``S``, metres; its 2D ``part``) becomes a one-frame take of its subject
and action: the joints are taken to the world frame with the real camera table, stored with 32 joints (the
15 dropped ones filled with the pelvis) in ``data_3d_h36m.npz``; its 2D for the 4 cameras in
``data_2d_h36m_gt.npz`` (the real 2D for its own camera, the projection for the 3 others); and a 2-component
mixture per joint in ``data_2d_h36m_gmm.npz`` (DiffPose's [π, μu, μv, σu, σv] layout: the 2D itself with
weight 0.8 and σ 3 px, and a point 10 px right of it with weight 0.2 and σ 8 px).

Run from the repository root: ``python tests/data/h36m/make_h36m_fixtures.py ../shared/data/h36m``.
"""

import sys
from pathlib import Path

import numpy as np

from posediff.data.h36m import CAMERA_IDS, H36M32_TO_17, load_cameras

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/h36m")
out = Path(__file__).parent
real = np.load(src / "h36m_body3d_4frames.npz")
cams = load_cameras(src / "cameras.json")
p3d, p2d, pgmm = {}, {}, {}
for name, joints, part in zip(real["imgname"], real["S"], real["part"]):
    subject, rest = name.split("/")[0], name.split("/")[1]
    action = rest.split(".")[0].split("_", 1)[1].replace("_", " ")
    own = rest.split(".")[1]
    world = cams[(subject, own)].camera_to_world(joints[:, :3])             # (17, 3) metres
    full = np.repeat(world[:1], 32, axis=0)
    full[list(H36M32_TO_17)] = world
    p3d.setdefault(subject, {})[action] = full[None].astype(np.float32)
    views = []
    for cam_id in CAMERA_IDS:
        cam = cams[(subject, cam_id)]
        uv = part[:, :2] if cam_id == own else cam.project(cam.world_to_camera(world))
        views.append(uv[None].astype(np.float32))                           # (1, 17, 2)
    p2d.setdefault(subject, {})[action] = views
    gmm = []
    for uv in views:
        comp = np.zeros((1, 17, 2, 5), np.float32)
        comp[..., 0, :] = np.concatenate([np.full((1, 17, 1), 0.8), uv, np.full((1, 17, 2), 3.0)], -1)
        comp[..., 1, :] = np.concatenate([np.full((1, 17, 1), 0.2), uv + [10.0, 0.0], np.full((1, 17, 2), 8.0)], -1)
        gmm.append(comp)
    pgmm.setdefault(subject, {})[action] = gmm
meta = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
np.savez_compressed(out / "data_3d_h36m.npz", positions_3d=p3d)
np.savez_compressed(out / "data_2d_h36m_gt.npz", positions_2d=p2d, metadata=meta)
np.savez_compressed(out / "data_2d_h36m_gmm.npz", positions_2d=pgmm, metadata=meta)
