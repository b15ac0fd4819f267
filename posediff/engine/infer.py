"""Inference on images of any size: ``Predictor`` and ``posediff predict``."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.base import pad_images, read_image
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, _resized_hw

__all__ = ["Predictor"]


class Predictor:
    """Turns images (paths or (H, W, 3) uint8 arrays) into poses in the images' own pixels, batched.

    Args:
        model: a one-stage pose model (eval mode is set here).
        size: shorter side the network sees; ``max_size`` caps the longer side.
        batch_size: images per forward pass. steps: sampling steps of a diffusion head (default: its own).
        device: where to run (default: CUDA if present).

    Calling it returns one dict per image: ``keypoints`` (N, K, 3: x, y, score), ``scores`` (N,),
    ``boxes`` (N, 4: x0, y0, x1, y1), numpy arrays in the original image's pixels, best first.
    """

    def __init__(self, model, size: int = 512, max_size: int = 1333, batch_size: int = 4, steps: int | None = None,
                 device=None, seed: int = 0):
        if size < 32 or batch_size < 1 or (steps is not None and steps < 1):
            raise ValueError(f"Predictor: size (shorter side, got {size}) must be at least 32 pixels; batch_size "
                             f"(got {batch_size}) and steps (got {steps}) at least 1")
        total = getattr(getattr(model, "head", None), "max_sampling_steps", None)  # None: a one-pass head
        if steps is not None and total is not None and steps > total:
            raise ValueError(f"Predictor: steps (--steps) {steps} exceeds the model's num_train_timesteps={total}, "
                             f"the most sampling steps its scheduler can take")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.size, self.max_size, self.batch_size, self.steps, self.seed = size, max_size, batch_size, steps, seed
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    @classmethod
    def from_checkpoint(cls, path, **kwargs) -> Predictor:
        from .checkpoint import load_model

        return cls(load_model(path), **kwargs)

    def _prepare(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[float, float]]:
        from PIL import Image

        h, w = image.shape[:2]
        oh, ow = _resized_hw(h, w, self.size, self.max_size)
        resized = np.array(Image.fromarray(image).resize((ow, oh), Image.BILINEAR))  # (oh, ow, 3), a writable copy
        x = torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0)  # (3, oh, ow)
        return (x - self.mean) / self.std, (w / ow, h / oh)

    def __call__(self, images: Sequence) -> list[dict]:
        return [result for _, result in self.iterate(images)]

    def iterate(self, images: Sequence) -> Iterator[tuple[int, dict]]:
        """``(position, result)`` for each image in order, ``batch_size`` images read and predicted at a time, so
        a long list of photographs is never decoded all at once. Every path's header and every array's shape
        is checked first: a missing or unidentifiable file at the end of the list stops the call before any work
        (a file whose header reads but whose pixels are corrupt still fails when its batch comes)."""
        for i, _, result in self._predicted(images):
            yield i, result

    @torch.no_grad()
    def _predicted(self, images: Sequence) -> Iterator[tuple[int, np.ndarray, dict]]:
        """``iterate``'s items with each image's (H, W, 3) array beside them, for drawing without reading it
        again."""
        for i, im in enumerate(images):
            if isinstance(im, (str, os.PathLike)):
                read_image(im, header_only=True)
            else:
                arr = np.asarray(im)
                if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                    raise ValueError(f"Predictor: image {i} must be a path or an (H, W, 3) uint8 array, got "
                                     f"{arr.dtype} {arr.shape}")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        for start in range(0, len(images), self.batch_size):
            arrays = [read_image(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im)
                      for im in images[start:start + self.batch_size]]
            chunk = [self._prepare(a) for a in arrays]
            batch, mask = pad_images([x for x, _ in chunk])  # (B, 3, H, W), (B, H, W)
            outs = self.model(batch.to(self.device), mask.to(self.device), steps=self.steps, generator=gen)
            for j, (out, (_, (sx, sy))) in enumerate(zip(outs, chunk)):
                kp = out["keypoints"].float().cpu().numpy().copy()  # (N, K, 3)
                kp[..., 0] *= sx
                kp[..., 1] *= sy
                boxes = out["boxes"].float().cpu().numpy() * np.array([sx, sy, sx, sy])  # (N, 4)
                yield start + j, arrays[j], dict(keypoints=kp, scores=out["scores"].float().cpu().numpy(),
                                                 boxes=boxes)


def predict_files(checkpoint, images: Sequence, out_dir, size: int = 512, score_threshold: float = 0.3,
                  steps: int | None = None, skeleton: str | None = None) -> Path:
    """``posediff predict``: COCO results JSON (image_id = position in ``images``) and PNGs with poses drawn."""
    from PIL import Image

    from ..evaluation import to_coco_results, write_coco_results
    from ..io import atomic_path, write_json
    from ..viz import draw_poses

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: is a file; expected the folder to write results.json and drawings to")
    predictor = Predictor.from_checkpoint(checkpoint, size=size, steps=steps)
    k = predictor.model.num_keypoints
    skeleton = skeleton or ("coco17" if k == 17 else "crowdpose14")
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = _listed_drawings(out_dir / "images.json")  # an earlier call's drawings: replaced, not left beside
    stems = [Path(path).stem for path in images]
    repeated = {stem for stem, n in Counter(stems).items() if n > 1}
    results, index = [], []
    for i, image, pred in predictor._predicted(images):  # drawn as they come: one batch in memory at a time
        path = images[i]
        keep = pred["scores"] >= score_threshold
        results += to_coco_results([i], [dict(keypoints=pred["keypoints"][keep], scores=pred["scores"][keep])])
        # a/img.jpg and b/img.png would draw over each other: names that repeat get the image's position
        drawing = f"{i:05d}_{stems[i]}_poses.png" if stems[i] in repeated else f"{stems[i]}_poses.png"
        index.append(dict(image_id=i, file_name=str(path), persons=int(keep.sum()), drawing=drawing))
        drawn = draw_poses(image, pred["keypoints"][keep], skeleton, min_visibility=0.0,
                           occluded_hollow=False)
        with atomic_path(out_dir / drawing) as tmp:
            Image.fromarray(drawn).save(tmp, format="PNG")
    write_coco_results(results, out_dir / "results.json")
    write_json(dict(checkpoint=str(checkpoint), score_threshold=score_threshold, images=index), out_dir / "images.json")
    # names compared case-folded (on macOS and Windows Photo_poses.png is photo_poses.png); never an input image
    folder = out_dir.resolve()
    current = {entry["drawing"].casefold() for entry in index} | {Path(p).name.casefold() for p in images
                                                                    if Path(p).parent.resolve() == folder}
    for stale in sorted(earlier):
        if stale.casefold() not in current:
            with contextlib.suppress(IsADirectoryError, PermissionError):
                (out_dir / stale).unlink(missing_ok=True)
    return out_dir


def _listed_drawings(index_file: Path) -> set[str]:
    """The drawings an earlier ``posediff predict`` listed in ``index_file`` (its ``images.json``): plain file
    names in the folder. Nothing else in the folder is touched; an unreadable index lists nothing."""
    try:
        entries = json.loads(index_file.read_text())["images"]
        names = {entry["drawing"] for entry in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n.endswith("_poses.png") and Path(n).name == n}
