"""Making zoo files: a training run's checkpoint exported as an fp16 zoo file and scored on SynthCrowd's test
split (``posediff zoo export``). Loading zoo files is :mod:`posediff.zoo`'s, which imports nothing of this.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from ..zoo import FORMAT, dequantize_int8, quantize_int8, read_zoo_file, tensors_digest, zoo_path

__all__ = ["export_and_score", "export_zoo", "score_on_mocaplift_test", "score_on_synthcrowd_test",
           "score_topdown_on_synthcrowd_test", "synthcrowd_test_split", "zoo_tensors"]


def zoo_tensors(checkpoint, base: str | None = None, use_ema: bool = True,
                int8: bool = False) -> tuple[dict, dict, int]:
    """A training checkpoint's tensors in fp16 (``int8``: the large weights as int8 with per-channel scales,
    :func:`~posediff.zoo.quantize_int8`), less those equal to ``base``'s (a zoo file name): (tensors as the
    file stores them, checkpoint metadata, number left out).

    A tensor of the base that training changed is an error, since the file would then not reproduce the
    model (was the backbone frozen?).
    """
    from .checkpoint import load_checkpoint

    weights, ema, meta = load_checkpoint(checkpoint)
    state = ema if (use_ema and ema) else weights
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    dropped = 0
    if base:
        changed = []
        for k, v in read_zoo_file(zoo_path(base)).items():
            if k not in half:
                continue
            b = v.half() if v.is_floating_point() else v
            if b.shape == half[k].shape and torch.equal(b, half[k]):
                del half[k]
                dropped += 1
            else:
                changed.append(k)
        if changed:
            raise ValueError(f"{checkpoint}: {len(changed)} tensors of base {base!r} differ in the checkpoint "
                             f"(e.g. {changed[:3]}); was the backbone frozen in training?")
    if int8:
        stored = quantize_int8({k: state[k] for k in half})  # from the fp32 weights, not their fp16 rounding
        half = {k: v.half() if v.is_floating_point() else v for k, v in stored.items()}
    return half, meta, dropped


def _zoo_overrides(meta: dict) -> dict:
    """A checkpoint's recipe overrides as the zoo keeps them: with the defaults changed since the checkpoint was
    made at their earlier values (:func:`posediff.registry.as_trained`; the zoo file then records this
    version), without ``pretrained_backbone`` (zoo models load without any network) and ``context_weights`` (a
    zoo file holds its context encoder)."""
    from .checkpoint import trained_overrides

    return {k: v for k, v in trained_overrides(meta).items() if k not in ("pretrained_backbone", "context_weights")}


def export_zoo(checkpoint, out, base: str | None = None, metrics: dict | None = None,
               made_by: dict | None = None, use_ema: bool = True, int8: bool = False) -> dict:
    """Write a training checkpoint as an fp16 (or ``int8``) zoo file (see :func:`zoo_tensors`); returns a summary.

    The recipe's overrides are kept but ``pretrained_backbone`` (zoo models load without any network).
    """
    from safetensors.torch import save_file

    from ..io import atomic_path

    half, meta, dropped = zoo_tensors(checkpoint, base, use_ema, int8=int8)
    overrides = _zoo_overrides(meta)
    from ..registry import CONFIG_VERSION

    out_meta = {"format": FORMAT, "recipe": meta["recipe"], "overrides": json.dumps(overrides, sort_keys=True),
                "config_version": str(CONFIG_VERSION), "step": meta.get("step", ""),
                "metrics": json.dumps(metrics or {}), "made_by": json.dumps(made_by or {})}
    if base:
        out_meta["base"] = base
        out_meta["base_digest"] = tensors_digest(read_zoo_file(zoo_path(base)))
    with atomic_path(out) as tmp:
        save_file(half, str(tmp), metadata=out_meta)
    return {"tensors": len(half), "from_base": dropped, "bytes": Path(out).stat().st_size}


@contextlib.contextmanager
def synthcrowd_test_split(root=None, num_images: int = 400, size: int = 256, scene_seed: int = 0,
                          progress: bool = False):
    """The folder of a SynthCrowd test split (``root`` holding ``test/`` as ``posediff train`` writes it, checked
    to be the split asked for; without one, the split's ``num_images`` scenes of ``size`` pixels and
    ``scene_seed`` rendered into a temporary folder: scenes are deterministic, so this is the same split for
    the same renderer version) and its ground truth ``{"coco": path, "crowdpose": path}``."""
    import tempfile

    from ..data.synthcrowd import SceneConfig, check_renderer, write_split
    from ..tasks.multiperson import ground_truth

    with tempfile.TemporaryDirectory() as tmp:
        if root is None:
            root = tmp
            write_split(root, "test", num_images, seed=scene_seed, config=SceneConfig(size=size), progress=progress)
        gts = {"coco": str(Path(root) / "test" / "coco.json"), "crowdpose": str(Path(root) / "test" / "crowdpose.json")}
        gt = ground_truth(gts["crowdpose"])
        check_renderer(gts["crowdpose"], gt)
        info = gt["info"]  # check_renderer has read it: a dict
        have = dict(num_images=info.get("num_images"), size=info.get("config", {}).get("size"), seed=info.get("seed"))
        asked = dict(num_images=num_images, size=size, seed=scene_seed)
        wrong = [f"{k} {have[k]} (wanted {v})" for k, v in asked.items() if have[k] != v]
        if wrong:  # the metrics record the split they were scored on: it must be the one asked for
            raise ValueError(f"{gts['crowdpose']}: field info holds another test split: {', '.join(wrong)}")
        yield Path(root), gts


def score_on_synthcrowd_test(model, root=None, num_images: int = 400, size: int = 256, scene_seed: int = 0,
                             eval_size: int | None = None, max_size: int = 400, steps: int | None = None,
                             progress: bool = False) -> dict:
    """COCO-17 and CrowdPose-14 metrics of ``model`` on a SynthCrowd test split (:func:`synthcrowd_test_split`),
    evaluated at ``eval_size`` (default, for scenes of :class:`~posediff.engine.DataConfig`'s size: its
    evaluation size, the largest training scale; other scene sizes must say theirs)."""
    from ..data.synthcrowd import RENDERER_VERSION, synthcrowd_split
    from ..data.transforms import eval_transforms
    from ..tasks.multiperson import DataConfig, predict_results, score_results

    if eval_size is None:
        default = DataConfig()
        if size != default.size:
            raise ValueError(f"score_on_synthcrowd_test: scenes of {size} px need an eval_size (the default, "
                             f"{default.eval_scale}, is for {default.size} px scenes)")
        eval_size = default.eval_scale
    with synthcrowd_test_split(root, num_images, size, scene_seed, progress) as (root, gts):
        ds = synthcrowd_split(root, "test", transforms=eval_transforms(eval_size, max_size))
        results = predict_results(model, ds, batch_size=4, steps=steps, progress=progress)
        metrics = score_results(results, gts, [int(i) for i in ds.ids])
    return dict(metrics, test_split=dict(images=len(ds), size=size, scene_seed=scene_seed, eval_size=eval_size,
                                         max_size=max_size, renderer=RENDERER_VERSION))


def score_topdown_on_synthcrowd_test(model, root=None, num_images: int = 400, size: int = 256, scene_seed: int = 0,
                                     boxes: str = "gt", det_min_score: float = 0.0, nms: float = 0.9,
                                     steps: int | None = None, progress: bool = False) -> dict:
    """COCO-17 and CrowdPose-14 metrics of a top-down ``model`` on a SynthCrowd test split
    (:func:`synthcrowd_test_split`), its persons from the ground-truth boxes (``boxes="gt"``) or a detection
    results file (boxes scoring at least ``det_min_score``); ``nms``: the per-image OKS-NMS threshold."""
    from ..data import CocoKeypointDataset
    from ..data.synthcrowd import RENDERER_VERSION
    from ..data.topdown import PersonCrops, gt_instances, image_sizes, load_detections
    from ..tasks.multiperson import score_results
    from ..tasks.topdown import predict_crop_results

    with synthcrowd_test_split(root, num_images, size, scene_seed, progress) as (root, gts):
        src = CocoKeypointDataset(str(root / "test" / "images"), gts["crowdpose" if model.num_keypoints == 14
                                                                      else "coco"], skeleton=model.skeleton)
        k = model.num_keypoints
        inst = (gt_instances(src.coco, src.ids, k) if boxes == "gt"
                else load_detections(boxes, image_sizes(src.coco), det_min_score))
        crops = PersonCrops(src, inst, model.codec, padding=model.padding)
        results = predict_crop_results(model, crops, (steps,), device=next(model.parameters()).device, nms=nms,
                                       progress=progress)[steps]
        metrics = score_results(results, gts, [int(i) for i in src.ids])
    return dict(metrics, test_split=dict(images=len(src.ids), size=size, scene_seed=scene_seed, persons=len(inst),
                                         boxes="ground truth" if boxes == "gt" else Path(boxes).name, nms=nms,
                                         renderer=RENDERER_VERSION))


def score_on_mocaplift_test(model, seed: int = 0, size: int | None = None, progress: bool = False) -> dict:
    """P1 / P2 (mean hypothesis, per action then mean), best-of-N and spread of a lifting ``model`` on MocapLift's
    test split (``seed``: its placement and 2D draws; ``size``: the first poses only), in mm."""
    from ..data.mocaplift import MocapLift
    from ..tasks.lifting import predict_poses, score_poses

    ds = MocapLift("test", seed=seed, frames=model.frames, size=size)
    pred = predict_poses(model, ds, batch_size=256, progress=progress)
    scores = score_poses(pred["hypotheses"], pred["targets"], pred["actions"])
    return dict(scores, test_split=dict(dataset="mocaplift", split="test", seed=seed, poses=len(ds)))


def export_and_score(run, out, base: str | None = None, data_root=None, made_by: dict | None = None,
                     eval_size: int | None = None, int8: bool = False) -> dict:
    """``posediff zoo export``: score the run's last checkpoint, with its weights rounded to fp16 as users get
    them, on the test split of the data it was trained on (SynthCrowd at ``eval_size``, by default the run's
    data config's; MocapLift for lifting runs), then write the zoo file (once) with the metrics in its
    metadata."""
    from ..io import check_output_file
    from ..registry import create_model
    from ..tasks import task_name
    from ..tasks.multiperson import DataConfig, check_synthcrowd_meta, split_size
    from .checkpoint import latest_checkpoint, load_checkpoint

    run = Path(run)
    if run.is_dir():
        found = latest_checkpoint(run)
        if found is None:
            raise FileNotFoundError(f"{run}: no checkpoint (last.json) in this folder")
        checkpoint = found[0]
    else:
        checkpoint = run
    check_output_file(out, "--out", inputs=(checkpoint, zoo_path(base) if base else None))
    meta = load_checkpoint(checkpoint)[2]
    data = json.loads(meta.get("config", "{}")).get("data", {})
    if task_name(meta["recipe"]) == "lifting":
        return _export_lifting(checkpoint, out, meta, data, made_by, int8)
    topdown = task_name(meta["recipe"]) == "topdown"
    if data.get("kind") != "synthcrowd":
        raise ValueError(f"{checkpoint}: config field data.kind is {data.get('kind')!r}; the zoo records metrics "
                         f"on the SynthCrowd test split, so it takes runs trained on SynthCrowd")
    check_synthcrowd_meta(meta, checkpoint, "score and export")
    d = DataConfig.from_saved(data)  # the run's data, fields it did not record at their defaults
    stored = dequantize_int8(zoo_tensors(checkpoint, base, int8=int8)[0])  # the weights as users will get them
    state = {**(read_zoo_file(zoo_path(base)) if base else {}),
             **{k: v.float() if v.is_floating_point() else v for k, v in stored.items()}}
    overrides = _zoo_overrides(meta)
    model = create_model(meta["recipe"], **overrides)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # a base file of another model: keys or shapes that do not fit
        raise ValueError(f"{checkpoint} with --base {base}: the weights do not make a {meta['recipe']} model "
                         f"({str(err).splitlines()[0]} ...); is the base the backbone this run was trained "
                         f"from?") from err
    if topdown:
        from ..tasks.topdown import TopDownData

        td = TopDownData.from_saved(data)
        metrics = score_topdown_on_synthcrowd_test(model.eval(), root=data_root or td.root,
                                                   num_images=split_size(td.num_images, "test"), size=td.size,
                                                   scene_seed=td.scene_seed, nms=td.nms)
        summary = export_zoo(checkpoint, out, base=base, metrics=metrics, made_by=made_by, int8=int8)
        return dict(summary, checkpoint=str(checkpoint), metrics=metrics)
    metrics = score_on_synthcrowd_test(model.eval(), root=data_root or d.root,
                                       num_images=split_size(d.num_images, "test"), size=d.size,
                                       scene_seed=d.scene_seed, max_size=d.max_size,
                                       eval_size=eval_size if eval_size is not None else d.eval_scale)
    summary = export_zoo(checkpoint, out, base=base, metrics=metrics, made_by=made_by, int8=int8)
    return dict(summary, checkpoint=str(checkpoint), metrics=metrics)


def _export_lifting(checkpoint, out, meta: dict, data: dict, made_by: dict | None, int8: bool = False) -> dict:
    """A lifting run's zoo file, scored on MocapLift's test split with its weights as stored."""
    from ..registry import create_model

    if data.get("kind") != "mocaplift":
        raise ValueError(f"{checkpoint}: config field data.kind is {data.get('kind')!r}; the zoo records lifting "
                         f"metrics on MocapLift's test split, so it takes runs trained on MocapLift")
    stored = dequantize_int8(zoo_tensors(checkpoint, int8=int8)[0])
    model = create_model(meta["recipe"], **_zoo_overrides(meta))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()}, strict=True)
    metrics = score_on_mocaplift_test(model.eval(), seed=int(data.get("seed", 0)))
    summary = export_zoo(checkpoint, out, metrics=metrics, made_by=made_by, int8=int8)
    return dict(summary, checkpoint=str(checkpoint), metrics=metrics)
