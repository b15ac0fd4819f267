"""Inference on images of any size: ``Predictor`` and ``posediff predict``."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.base import ImageError, pad_images, read_image
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, _resized_hw

__all__ = ["Predictor", "TopDownPredictor"]


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
        if size < 32 or batch_size < 1:
            raise ValueError(f"Predictor: size (shorter side, got {size}) must be at least 32 pixels and batch_size "
                             f"(got {batch_size}) at least 1")
        if hasattr(model, "check_steps"):  # before any image is read: what the head cannot take (--steps)
            model.check_steps(steps)
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
    def _predicted(self, images: Sequence, failed: dict[int, str] | None = None, headers_read: bool = False
                   ) -> Iterator[tuple[int, np.ndarray, dict]]:
        """``iterate``'s items with each image's (H, W, 3) array beside them, for drawing without reading it
        again. With a ``failed`` dict, an image that cannot be read is recorded there (position -> reason) and
        skipped instead of stopping the call; ``headers_read``: the caller read every path's header already
        (those that failed are in ``failed``)."""
        todo = []
        for i, im in enumerate(images):
            if failed is not None and i in failed:  # found unreadable by the caller already
                continue
            try:
                if isinstance(im, (str, os.PathLike)):
                    if headers_read:
                        todo.append(i)
                        continue
                    read_image(im, header_only=True)
                else:
                    arr = np.asarray(im)
                    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 1:
                        raise ValueError(f"Predictor: image {i} must be a path or an (H, W, 3) uint8 array, got "
                                         f"{arr.dtype} {arr.shape}")
            except (ImageError, ValueError) as err:
                if failed is None:
                    raise
                failed[i] = str(err)
                continue
            todo.append(i)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        for start in range(0, len(todo), self.batch_size):
            batch_ids, arrays = [], []
            for i in todo[start:start + self.batch_size]:
                im = images[i]
                try:
                    arrays.append(read_image(im) if isinstance(im, (str, os.PathLike)) else np.asarray(im))
                except ImageError as err:
                    if failed is None:
                        raise
                    failed[i] = str(err)
                    continue
                batch_ids.append(i)
            if not batch_ids:
                continue
            chunk = [self._prepare(a) for a in arrays]
            batch, mask = pad_images([x for x, _ in chunk])  # (B, 3, H, W), (B, H, W)
            outs = self.model(batch.to(self.device), mask.to(self.device), steps=self.steps, generator=gen)
            for j, (out, (_, (sx, sy))) in enumerate(zip(outs, chunk)):
                kp = out["keypoints"].float().cpu().numpy().copy()  # (N, K, 3)
                kp[..., 0] *= sx
                kp[..., 1] *= sy
                boxes = out["boxes"].float().cpu().numpy() * np.array([sx, sy, sx, sy])  # (N, 4)
                yield batch_ids[j], arrays[j], dict(keypoints=kp, scores=out["scores"].float().cpu().numpy(),
                                                    boxes=boxes)


class TopDownPredictor(Predictor):
    """A top-down model behind a person detector, called as a :class:`Predictor` is.

    The detector (a one-stage model: the zoo's ``edpose_tiny`` by default) runs as a Predictor does; its persons
    scoring at least ``box_threshold`` whose box has some area inside the image are cropped from the original image
    and read by the top-down ``model`` (``steps``: its sampling steps); a person's score is its box's times the
    mean of its keypoint scores above 0.2, and the persons are OKS-NMSed at ``nms``, as the top-down literature
    scores them (and the bench). Results: the Predictor's dict, ``boxes`` the detector's.
    """

    def __init__(self, model, detector=None, box_threshold: float = 0.3, steps: int | None = None,
                 nms: float = 0.9, **kwargs):
        if detector is None:
            from ..registry import create_model

            detector = create_model("edpose_tiny", pretrained="synthcrowd")
        model.check_steps(steps)  # before any image is read
        super().__init__(detector, **kwargs)
        self.topdown, self.topdown_steps, self.box_threshold = model.to(self.device).eval(), steps, box_threshold
        self.num_keypoints, self.nms = model.num_keypoints, nms

    @torch.no_grad()
    def _predicted(self, images, failed=None, headers_read=False):
        from ..data.topdown import overlaps_image
        from ..tasks.topdown import oks_nms, rescore

        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        for i, image, det in super()._predicted(images, failed, headers_read):
            boxes = det["boxes"].astype(np.float64)  # (N, 4) x0, y0, x1, y1
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)  # (N, 4)
            keep = ((det["scores"] >= self.box_threshold) & (xywh[:, 2:] > 0).all(1)
                    & overlaps_image(xywh, (image.shape[1], image.shape[0])))
            boxes, xywh = boxes[keep], xywh[keep]
            kp = self.topdown.predict_persons(image, xywh, steps=self.topdown_steps, generator=gen)  # (N, K, 3)
            scores = rescore(kp, det["scores"][keep].astype(np.float64))
            order = oks_nms(kp, scores, xywh[:, 2] * xywh[:, 3], self.topdown.skeleton, self.nms)
            yield i, image, dict(keypoints=kp[order].astype(np.float32), scores=scores[order].astype(np.float32),
                                 boxes=boxes[order].astype(np.float32))


def predict_files(checkpoint, images: Sequence, out_dir, size: int = 512, score_threshold: float = 0.3,
                  steps: int | None = None, skeleton: str | None = None, lift=None,
                  hypotheses: int | None = None, recipe: str | None = None, detector=None) -> dict:
    """``posediff predict``: COCO results JSON (image_id = position in ``images``) and PNGs with poses drawn.

    ``checkpoint``: a 2D model's checkpoint, or None for the zoo's ``edpose_tiny`` (SynthCrowd); ``recipe``: a zoo
    model by its recipe instead. A top-down model runs behind ``detector`` (a one-stage checkpoint; None: the
    zoo's ``edpose_tiny``) as a :class:`TopDownPredictor`, its persons' boxes those scoring ``score_threshold``.
    ``lift``: also lift every kept person to 3D: ``"zoo"`` (the zoo's ``diffpose``, MocapLift) or a lifting
    checkpoint; each person's COCO-17 pose is mapped to H36M-17 (:func:`~posediff.skeletons.coco17_to_h36m17`) and
    lifted with the image's size (``hypotheses``: the diffusion head's N). Writes ``poses3d.json`` (per image and
    person: the H36M-17 pixels and the root-relative camera-frame millimetres, the mean and every hypothesis)
    and ``STEM_3d.png`` (the drawing beside each person's 3D skeleton).

    The folder is an :class:`~posediff.io.OutputFolder`: a file in it that posediff did not write is never
    replaced (the call is refused first), a drawing is never written over an input image, and an earlier call's
    results and drawings are removed before this call's are written, so the folder never mixes two calls. An
    image that cannot be read is skipped and reported; the others' results are written all the same.
    ``results.json`` and ``images.json`` (which drawing is which image; the unread ones under ``failed``) are
    written last.

    Returns ``{"out": folder, "predicted": count, "failed": [{"image_id", "file_name", "error"}]}``.
    """
    from PIL import Image

    from ..evaluation import to_coco_results, write_coco_results
    from ..io import OutputFolder, atomic_path, write_json
    from ..viz import draw_poses

    if not (isinstance(score_threshold, (int, float)) and math.isfinite(score_threshold)
            and 0.0 <= score_threshold <= 1.0):
        raise ValueError(f"--score-threshold {score_threshold}: expected a number from 0 to 1 (person scores are "
                         f"probabilities)")
    if not images:
        raise ValueError("posediff predict: no images given")
    folder = OutputFolder(out_dir, "--out", adopt=_made_by_predict)
    from ..registry import create_model
    from .checkpoint import load_model

    if recipe is not None and checkpoint is not None:
        raise ValueError("posediff predict: give --recipe (a zoo model) or --checkpoint, not both")
    if recipe is not None:
        from ..zoo import PRETRAINED

        tags = [t for r, t in PRETRAINED if r == recipe]
        if not tags:
            raise ValueError(f"--recipe {recipe}: the zoo has no weights for it; zoo models: "
                             f"{sorted({r for r, _ in PRETRAINED})}")
        model = create_model(recipe, pretrained=tags[0])
    else:
        model = load_model(checkpoint) if checkpoint is not None else create_model("edpose_tiny",
                                                                                   pretrained="synthcrowd")
    if type(model).__name__ == "TopDownModel":
        det = load_model(detector) if detector is not None else None
        predictor = TopDownPredictor(model, det, box_threshold=score_threshold, size=size, steps=steps)
    else:
        if detector is not None:
            raise ValueError(f"--detector {detector}: a detector is for a top-down model; this one is one-stage")
        predictor = Predictor(model, size=size, steps=steps)
    k = predictor.num_keypoints if isinstance(predictor, TopDownPredictor) else predictor.model.num_keypoints
    skeleton = skeleton or ("coco17" if k == 17 else "crowdpose14")
    lifter = None
    if lift is not None:
        if k != 17:
            raise ValueError(f"--lift maps COCO-17 poses to Human3.6M-17; the 2D model predicts {k} joints")
        lifter = _lifter(lift)
    failed: dict[int, str] = {}
    for i, path in enumerate(images):  # every header before the folder is touched
        try:
            read_image(path, header_only=True)
        except ImageError as err:
            failed[i] = str(err)
    if len(failed) == len(images):
        raise ImageError(f"no image could be read: {'; '.join(failed[i] for i in sorted(failed))}")
    drawings = _drawing_names(images, folder.path)
    drawings_3d = _drawing_names(images, folder.path, "_3d.png") if lifter is not None else []
    written = ["results.json", "images.json", *(["poses3d.json"] if lifter is not None else []), *drawings,
               *drawings_3d]
    folder.check(written)  # a refused call removes nothing
    # the earlier call's index goes first, then its drawings (never an input): the folder never mixes two calls
    for name in ["results.json", "images.json", "poses3d.json",
                 *sorted(n for n in folder.names if n.endswith(("_poses.png", "_3d.png")))]:
        if folder.owns(name):
            folder.remove(name, keep=images)
    folder.claim(written)
    results, index, lifted = [], [], []
    topdown = isinstance(predictor, TopDownPredictor)  # its persons are those whose boxes scored the threshold
    for i, image, pred in predictor._predicted(images, failed, headers_read=True):  # drawn as they come
        keep = np.ones(len(pred["scores"]), bool) if topdown else pred["scores"] >= score_threshold
        results += to_coco_results([i], [dict(keypoints=pred["keypoints"][keep], scores=pred["scores"][keep])])
        index.append(dict(image_id=i, file_name=str(images[i]), persons=int(keep.sum()), drawing=drawings[i]))
        drawn = draw_poses(image, pred["keypoints"][keep], skeleton, min_visibility=0.0,
                           occluded_hollow=False)
        with atomic_path(folder.path / drawings[i]) as tmp:
            Image.fromarray(drawn).save(tmp, format="PNG")
        if lifter is not None:
            lifted.append(_lift_image(lifter, i, images[i], image, pred["keypoints"][keep], pred["scores"][keep],
                                      hypotheses))
            index[-1]["drawing_3d"] = drawings_3d[i]
            _draw_3d(folder.path / drawings_3d[i], drawn, lifted[-1])
    unread = [dict(image_id=i, file_name=str(images[i]), error=failed[i]) for i in sorted(failed)]
    folder.release(drawings[i] for i in failed)
    if lifter is not None:
        folder.release(drawings_3d[i] for i in failed)
        write_json(dict(lifting=str(lift), units="mm, root-relative, camera frame (x right, y down, z forward)",
                        joints=list(_h36m_joints()), images=lifted), folder.path / "poses3d.json")
    write_coco_results(results, folder.path / "results.json")
    write_json(dict(checkpoint=str(checkpoint) if checkpoint is not None else
                    f"zoo:{recipe or 'edpose_tiny'}/{model_tag(recipe)}",
                    score_threshold=score_threshold, images=index, failed=unread), folder.path / "images.json")
    return dict(out=folder.path, predicted=len(index), failed=unread)


def model_tag(recipe: str | None) -> str:
    """The zoo tag ``posediff predict`` loads a recipe with (the zoo's edpose_tiny's when none is named)."""
    from ..zoo import PRETRAINED

    return next((t for r, t in PRETRAINED if r == recipe), "synthcrowd")


def _h36m_joints() -> tuple[str, ...]:
    from ..skeletons import H36M17

    return H36M17.joints


def _lifter(lift):
    """The lifting model ``--lift`` names: ``"zoo"`` (the zoo's diffpose on MocapLift) or a lifting checkpoint."""
    from ..io import read_safetensors
    from ..registry import create_model
    from ..tasks import task_name
    from .checkpoint import load_model

    if str(lift) == "zoo":
        return create_model("diffpose", pretrained="mocaplift")
    meta, _ = read_safetensors(lift, "a lifting model's checkpoint (--lift)", tensors=False)
    recipe = meta.get("recipe", "")
    try:
        lifting = task_name(recipe) == "lifting"
    except KeyError:
        lifting = False
    if not lifting:
        raise ValueError(f"--lift {lift}: a checkpoint of recipe {recipe!r}, expected a lifting recipe's "
                         f"(lifting_baseline, diffpose, ...)")
    return load_model(lift, context_weights="")


def _lift_image(lifter, i: int, path, image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                hypotheses: int | None) -> dict:
    """One image's kept persons lifted: their H36M-17 pixels and 3D poses (mean and hypotheses), mm."""
    from ..skeletons import coco17_to_h36m17

    h, w = image.shape[:2]
    persons = []
    if len(keypoints):
        h36m = coco17_to_h36m17(keypoints)                                        # (N, 17, 3) px + score
        hyps = lifter.lift(h36m[..., :2], image_size=(w, h), hypotheses=hypotheses,
                           return_hypotheses=True).numpy()                      # (N, H, 17, 3) mm
        for n in range(len(h36m)):
            persons.append(dict(score=round(float(scores[n]), 4), keypoints_2d=h36m[n].round(2).tolist(),
                                pose_3d=hyps[n].mean(0).round(1).tolist(), hypotheses=hyps[n].round(1).tolist()))
    return dict(image_id=i, file_name=str(path), persons=persons)


def _draw_3d(path: Path, drawn: np.ndarray, entry: dict) -> None:
    """The drawing beside the 3D skeleton of each lifted person, best-scoring first."""
    from ..viz import plot_poses_3d

    persons = entry["persons"]
    poses = np.asarray([p["hypotheses"] for p in persons]) if persons else np.zeros((0, 1, 17, 3))
    plot_poses_3d(poses, path, titles=[f"person {n + 1} ({p['score']:.2f})" for n, p in enumerate(persons)],
                  image=drawn)


def _drawing_names(images: Sequence, folder: Path, suffix: str = "_poses.png") -> list[str]:
    """One drawing name per image, ``STEM_poses.png`` (``STEM`` + ``suffix``): names compared case-folded (on macOS
    and Windows Photo_poses.png is photo_poses.png); a stem that repeats (a/img.jpg, b/img.png), or a name that is
    one of the inputs in ``folder``, takes the image's position as a prefix, and never an input's name."""
    here = folder.resolve()
    inputs = set()
    for p in map(Path, images):
        if p.parent.resolve() == here:
            inputs.add(p.name.casefold())
        with contextlib.suppress(OSError):
            if p.resolve().parent == here:
                inputs.add(p.resolve().name.casefold())
    stems = [Path(p).stem for p in images]
    repeated = {stem for stem, n in Counter(s.casefold() for s in stems).items() if n > 1}
    names, taken = [], set(inputs)
    base = suffix.removesuffix(".png")
    for i, stem in enumerate(stems):
        name = f"{stem}{suffix}"
        if stem.casefold() in repeated or name.casefold() in taken:
            name = f"{i:05d}_{stem}{suffix}"
        extra = 1
        while name.casefold() in taken:
            name, extra = f"{i:05d}_{stem}{base}_{extra}.png", extra + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def _made_by_predict(folder: Path) -> list[str]:
    """What an earlier ``posediff predict`` wrote in ``folder`` before folders had a manifest: its
    ``images.json``, ``results.json`` and the drawings the index lists (plain names ending in ``_poses.png``);
    nothing if the folder has no such index."""
    try:
        index = json.loads((folder / "images.json").read_text())
        names = {entry[k] for entry in index["images"] for k in ("drawing", "drawing_3d") if k in entry} \
            if "checkpoint" in index else set()
    except (OSError, ValueError, KeyError, TypeError):
        return []
    drawings = sorted(n for n in names if isinstance(n, str) and n.endswith(("_poses.png", "_3d.png"))
                      and Path(n).name == n)
    extra = ["poses3d.json"] if (folder / "poses3d.json").is_file() and any(n.endswith("_3d.png") for n in drawings) \
        else []
    return ["results.json", "images.json", *extra, *drawings] if "checkpoint" in index else []
