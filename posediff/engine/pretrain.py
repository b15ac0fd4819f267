"""Backbone pretraining on SynthCrowd with keypoint heatmaps (the zoo's first step).

    posediff pretrain-backbone --out zoo/resnet18_synthcrowd_heatmaps.safetensors --minutes 60

Trains :class:`~posediff.models.pretrain.HeatmapPretrainer` on scenes rendered on the fly (train split,
train pose pool), checkpoints atomically (``--resume`` continues), and writes the backbone's weights in
fp16 with the command, the time, the machine and the validation hit rate in the file's metadata.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from ..io import atomic_path

__all__ = ["pretrain_backbone", "heatmap_hit_rate"]


@torch.no_grad()
def heatmap_hit_rate(model, dataset, batch_size: int = 16, radius_px: float = 8.0) -> float:
    """Share of (image, joint type) whose heatmap peak lies within ``radius_px`` of a labelled joint of that type."""
    from ..data import collate
    from ..models.pretrain import heatmap_peaks

    model.eval()
    hits = total = 0
    for start in range(0, len(dataset), batch_size):
        images, _, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        peaks = heatmap_peaks(model(images))  # (B, K, 2)
        h, w = images.shape[-2:]
        scale = torch.tensor([w, h], dtype=torch.float32)
        d = ((peaks[:, None] - targets.keypoints) * scale).norm(dim=-1)  # (B, M, K)
        ok = (targets.visibility > 0) & targets.valid[..., None]
        present = ok.any(1)  # (B, K)
        hit = ((d <= radius_px) & ok).any(1)
        hits += int((hit & present).sum())
        total += int(present.sum())
    model.train()
    return hits / max(total, 1)


def pretrain_backbone(out, backbone: str = "resnet18", steps: int = 100000, minutes: float | None = None,
                      batch_size: int = 16, lr: float = 1e-3, size: int = 256, num_images: int = 100000,
                      seed: int = 0, val_images: int = 200, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    from ..data import SynthCrowdDataset, collate
    from ..data.synthcrowd import RENDERER_VERSION, SceneConfig, refuse_other_renderer
    from ..data.transforms import PixelNoise
    from ..env import machine_info
    from ..models.pretrain import HeatmapPretrainer, heatmap_focal_loss, render_heatmaps

    bad = [f"{name}={value!r} (expected {want})" for name, value, ok, want in (
        ("steps", steps, steps >= 1, "at least 1"), ("batch_size", batch_size, batch_size >= 1, "at least 1"),
        ("size", size, size >= 32, "at least 32 pixels"), ("lr", lr, lr > 0, "positive"),
        ("minutes", minutes, minutes is None or minutes > 0, "positive or None"),
        ("num_images", num_images, num_images >= batch_size, f"at least batch_size, {batch_size}"),
        ("val_images", val_images, val_images >= 1, "at least 1")) if not ok]
    if bad:
        raise ValueError(f"pretrain_backbone: {'; '.join(bad)}")
    from ..io import check_output_file, remove_temporaries_of

    out = check_output_file(out, "pretrain_backbone: out")
    state_path = out.with_suffix(".state.pt")
    if resume and not state_path.is_file():
        raise FileNotFoundError(f"pretrain_backbone: resume=True (--resume) but there is no {state_path} to continue "
                                + (f"{out}'s run from; delete {out} or use another out (--out) to start afresh"
                                   if out.exists() else "from; start without it"))
    if not resume and (out.exists() or state_path.exists()):
        raise FileExistsError(f"pretrain_backbone: {out if out.exists() else state_path} is there already; pass "
                              f"resume=True (--resume) to continue its run, or another out (--out)")
    settings = dict(backbone=backbone, batch_size=batch_size, size=size, num_images=num_images, seed=seed)
    torch.manual_seed(seed)
    config = SceneConfig(size=size)
    # no horizontal flips: the renderer mirrors poses itself, and a flipped picture would show its darker left
    # limbs on the right
    train = SynthCrowdDataset(num_images, "train", scene_seed=seed, config=config, transforms=PixelNoise(8.0))
    val = SynthCrowdDataset(val_images, "val", scene_seed=seed, config=config)
    model = HeatmapPretrainer(backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    step, elapsed, history = 0, 0.0, []
    remove_temporaries_of(out)  # what a write killed half-way left beside the two files
    remove_temporaries_of(state_path)
    if resume:
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            state["model"], state["optimizer"], state["step"]  # noqa: B018  (the fields a resume reads)
        except Exception as err:  # torch raises RuntimeError, pickle and zip errors of its own  # noqa: BLE001
            raise ValueError(f"pretrain_backbone: {state_path}: cannot read the training state ({err!s:.200}); start "
                             f"afresh in another out (--out)") from err
        refuse_other_renderer(state.get("synthcrowd_renderer"), f"{state_path}: field synthcrowd_renderer",
                              "start afresh (without --resume) or use another --out")
        other = [f"{k}={state['settings'][k]!r} (this call: {v!r})" for k, v in settings.items()
                 if k in state.get("settings", {}) and state["settings"][k] != v]
        if other:
            raise ValueError(f"pretrain_backbone: {state_path} was trained with {', '.join(other)}; resume it with "
                             f"the same settings (--backbone, --batch-size, --size, --seed)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    order = np.random.default_rng(seed).permutation(num_images)
    t0 = time.time() - elapsed
    bar = tqdm(total=steps, initial=step, desc="pretrain backbone", disable=not progress)

    def save_state():
        with atomic_path(state_path) as tmp:
            torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(), step=step, elapsed=time.time() - t0,
                            history=history, torch_rng=torch.get_rng_state(), settings=settings,
                            synthcrowd_renderer=RENDERER_VERSION), tmp)

    while step < steps and (minutes is None or (time.time() - t0) < minutes * 60):
        idx = [int(order[(step * batch_size + j) % num_images]) for j in range(batch_size)]
        images, _, targets = collate([train[i] for i in idx])
        logits = model(images)
        heat = render_heatmaps(targets.keypoints, targets.visibility, targets.valid, targets.areas,
                               logits.shape[-2:], images.shape[-2:])
        loss = heatmap_focal_loss(logits, heat)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update(1)
        history.append(dict(step=step, loss=float(loss.detach())))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean([h['loss'] for h in history[-20:]]):.3f}")
        if step % 200 == 0:
            save_state()
    bar.close()
    save_state()
    hit = heatmap_hit_rate(model, val)
    seconds = time.time() - t0
    meta = {"format": "posediff.backbone/1", "backbone": backbone, "task": "SynthCrowd keypoint heatmaps (CenterNet)",
            "command": "posediff " + " ".join(sys.argv[1:]) if sys.argv and "posediff" in sys.argv[0] else "",
            "steps": str(step), "batch_size": str(batch_size), "seconds": f"{seconds:.0f}",
            "val_hit_rate_8px": f"{hit:.4f}", "machine": json.dumps(machine_info()),
            "synthcrowd_renderer": str(RENDERER_VERSION)}
    from safetensors.torch import save_file

    tensors = {k: v.detach().half().contiguous() for k, v in model.backbone_state_dict().items()
               if v.is_floating_point()}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return dict(steps=step, seconds=seconds, val_hit_rate_8px=hit, out=str(out),
                final_loss=float(np.mean([h["loss"] for h in history[-50:]])) if history else None)
