"""Both tiny recipes, and the paper's diffusion head, fit one batch of two images to AP > 0.9 (slow: 5, 5 and
15 minutes on 2 cores).

Run: pytest -m slow tests/integration/test_overfit.py
"""

import pytest
import torch

import posediff
from posediff.data import collate
from posediff.data.synthcrowd import SceneConfig, synthcrowd_split, write_split
from posediff.evaluation import evaluate_keypoints, to_coco_results


@pytest.mark.slow
@pytest.mark.parametrize("recipe,overrides,steps", [("edpose_tiny", {}, 1200),
                                                    ("diffusion_regpose_tiny", {"anchor": "regression"}, 1200),
                                                    ("diffusion_regpose_tiny", {}, 3000)])
def test_overfit_one_batch_of_two_images(recipe, overrides, steps, tmp_path):
    """The paper's diffusion head (anchor="box") needs longer: t is uniform, so only a quarter of its steps train
    the high-noise end that sampling starts from (AP 0.04 after 1000 steps, 0.46 after 2000, 0.93 after 3000).
    Anchored to ED-Pose's regression (the bench's CPU presets) it fits in edpose's 1200 (passed in 6 min 28 s on
    2 cores, session 4)."""
    torch.manual_seed(0)
    write_split(tmp_path, "train", 2, seed=3, config=SceneConfig(size=128), progress=False)
    ds = synthcrowd_split(tmp_path, "train", prior="coco17")
    images, mask, targets = collate([ds[0], ds[1]])
    model = posediff.create_model(recipe, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * 0.7)], 0.1)
    for _ in range(steps):
        model.train()
        loss = model(images, mask, targets)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        out = model(images, mask, generator=torch.Generator().manual_seed(0))
    ap = evaluate_keypoints(tmp_path / "train" / "coco.json", to_coco_results(targets.image_ids.tolist(), out))["AP"]
    assert ap > 0.9, ap
