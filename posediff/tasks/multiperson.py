"""The one-stage multi-person task: images with all their persons (SynthCrowd, COCO, CrowdPose), COCO keypoint AP.

Recipes ``edpose`` and ``diffusion_regpose`` (and their ``_tiny`` forms) run through it. Its data config
(:class:`DataConfig`) says where the images come from; SynthCrowd folders are rendered on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import write_json
from .base import Task, TaskData, _int, _number, _refused, _sizes

__all__ = ["DataConfig", "MultipersonTask", "REAL_SIZES", "SPLIT_FRACTIONS", "build_datasets",
           "check_synthcrowd_meta", "check_synthcrowd_zoo_run", "coco_data", "crowdpose_data", "data_files",
           "detect_persons", "evaluate", "ground_truth", "predict_results", "predict_results_at_steps",
           "render_synthcrowd", "score_on_synthcrowd_test", "score_results", "split_size", "synthcrowd_folder",
           "synthcrowd_meta", "synthcrowd_test_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from.

    ``kind="synthcrowd"``: the written SynthCrowd splits under ``root`` (rendered there first if missing,
    ``num_images`` in all, ``size`` pixels, ``scene_seed``). ``kind="coco"``: ``train_images`` /
    ``train_ann`` and ``val_images`` / ``val_ann`` (COCO or CrowdPose format, by ``skeleton``).
    """

    kind: str = "synthcrowd"
    root: str = "data/synthcrowd"
    num_images: int = 2000
    size: int = 256
    scene_seed: int = 0
    skeleton: str = "coco17"
    train_images: str = ""
    train_ann: str = ""
    val_images: str = ""
    val_ann: str = ""
    val_split: str = "val"
    prior: str | None = "coco17"  # completion targets for the diffusion head
    train_scales: tuple[int, ...] = (224, 256, 288)
    crop_scales: tuple[int, ...] = (192, 224)
    crop_size: tuple[int, int] = (160, 224)
    max_size: int = 400
    # shorter side at evaluation; None: the largest training scale, as ED-Pose evaluates COCO at 800, the largest
    # of its. SynthCrowd's persons are small: on its val split the stage-4 zoo edpose_tiny scored CrowdPose AP
    # 0.239 at 256 and 0.259 at 288 (docs/benchmarks.md)
    eval_size: int | None = None
    # horizontal flips (labels swapped); None: on for photographs, off for SynthCrowd, whose renderer mirrors
    # poses itself and draws left limbs darker: a flipped picture would show that cue on the right
    flip: bool | None = None
    pixel_noise: float = 6.0
    max_val_images: int | None = None

    def __post_init__(self):
        if isinstance(self.root, os.PathLike):  # a Path is the folder it names
            object.__setattr__(self, "root", os.fspath(self.root))
        bad = _refused(self, "data.", [
            ("kind", self.kind in ("synthcrowd", "coco"), "'synthcrowd' or 'coco'"),
            ("num_images", _int(self.num_images) and self.num_images >= 1, "an integer >= 1 (scenes in all)"),
            ("size", _int(self.size) and self.size >= 32, "an integer >= 32 (pixels)"),
            ("scene_seed", _int(self.scene_seed) and self.scene_seed >= 0, "an integer >= 0"),
            ("train_scales", _sizes(self.train_scales), "one or more integers >= 32 (pixels)"),
            ("crop_scales", _sizes(self.crop_scales, least=1), "one or more integers >= 1 (pixels)"),
            ("crop_size", _sizes(self.crop_size, least=1) and len(self.crop_size) == 2
             and self.crop_size[0] <= self.crop_size[1], "(smallest, largest) integers >= 1, smallest first"),
            ("max_size", _int(self.max_size) and self.max_size >= 32, "an integer >= 32 (pixels)"),
            ("eval_size", self.eval_size is None or (_int(self.eval_size) and self.eval_size >= 32),
             "None or an integer >= 32 (pixels)"),
            ("pixel_noise", _number(self.pixel_noise) and self.pixel_noise >= 0, "a finite number >= 0"),
            ("max_val_images", self.max_val_images is None or (_int(self.max_val_images) and self.max_val_images >= 1),
             "None or an integer >= 1")])
        if bad:
            raise ValueError(bad)

    @property
    def flips(self) -> bool:
        """Whether training flips: ``flip`` as set, or by default on for photographs and off for SynthCrowd."""
        return self.flip if self.flip is not None else self.kind != "synthcrowd"

    @classmethod
    def from_saved(cls, saved: dict) -> DataConfig:
        """The data config a run recorded (``config.json``'s or a checkpoint's ``config["data"]``, JSON lists for
        tuples); fields this version does not know are left out, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})

    @property
    def eval_scale(self) -> int:
        """The shorter side images are evaluated at: ``eval_size`` as set, or the largest training scale."""
        return self.eval_size if self.eval_size is not None else max(self.train_scales)


# ED-Pose's augmentation sizes for real photographs
REAL_SIZES = dict(train_scales=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), crop_scales=(400, 500, 600),
                  crop_size=(384, 600), max_size=1333, pixel_noise=0.0)


def coco_data(root: str = "data/coco", **fields) -> DataConfig:
    """COCO 2017 in its download layout: ROOT/{train2017,val2017}/ and ROOT/annotations/person_keypoints_*.json."""
    r = Path(root)
    return DataConfig(**{**dict(kind="coco", skeleton="coco17", train_images=str(r / "train2017"),
                                train_ann=str(r / "annotations" / "person_keypoints_train2017.json"),
                                val_images=str(r / "val2017"),
                                val_ann=str(r / "annotations" / "person_keypoints_val2017.json"), **REAL_SIZES),
                         **fields})


def crowdpose_data(root: str = "data/crowdpose", **fields) -> DataConfig:
    """CrowdPose in its download layout: ROOT/images/ and ROOT/json/crowdpose_{trainval,test}.json."""
    r = Path(root)
    return DataConfig(**{**dict(kind="coco", skeleton="crowdpose14", prior=None, train_images=str(r / "images"),
                                train_ann=str(r / "json" / "crowdpose_trainval.json"), val_images=str(r / "images"),
                                val_ann=str(r / "json" / "crowdpose_test.json"), **REAL_SIZES), **fields})

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}  # of a SynthCrowd folder's num_images


def split_size(num_images: int, split: str) -> int:
    """Scenes in one split of a SynthCrowd folder of ``num_images``."""
    return max(int(round(num_images * SPLIT_FRACTIONS[split])), 1)


_SPLIT_FILES = ("coco.json", "crowdpose.json")


def synthcrowd_folder(root, flag: str = "data.root"):
    """A SynthCrowd folder as an :class:`~posediff.io.OutputFolder` (refusing a ``root`` that is a file). One
    rendered before folders had a manifest is known by its stamp and its splits' SynthCrowd annotations, whose
    files and listed images are then taken as posediff's."""
    from ..io import OutputFolder

    def rendered(folder: Path) -> list[str]:
        names = ["synthcrowd.json"] if (folder / "synthcrowd.json").is_file() else []
        for split in SPLIT_FRACTIONS:
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, KeyError):
                data = json.loads((folder / split / "coco.json").read_text())
                if str(data["info"]["description"]).startswith("SynthCrowd"):
                    names += [f"{split}/{f}" for f in _SPLIT_FILES]
                    names += [f"{split}/images/{im['file_name']}" for im in data["images"]]
        return names

    return OutputFolder(root, flag, adopt=rendered)


def _synthcrowd_stamp(root: Path, num_images: int, size: int, scene_seed: int, hint: str) -> tuple[Path, dict]:
    """(the folder's ``synthcrowd.json``, the settings it must hold); refuses a folder stamped with others."""
    from ..data.synthcrowd import RENDERER_VERSION

    wanted = dict(num_images=num_images, size=size, scene_seed=scene_seed, renderer=RENDERER_VERSION)
    stamp = Path(root) / "synthcrowd.json"
    if stamp.is_file():
        try:
            have = {"renderer": 1, **json.loads(stamp.read_text())}  # version 1 wrote no renderer
        except (ValueError, TypeError) as err:
            raise ValueError(f"{stamp}: cannot read the SynthCrowd folder's settings ({err}); {hint}") from err
        diff = [k for k in wanted if have.get(k) != wanted[k]]
        if diff:
            fields = ", ".join(f"{'renderer version' if k == 'renderer' else 'data.' + k} {have.get(k)} (wanted "
                               f"{wanted[k]})" for k in diff)
            raise ValueError(f"{stamp}: this folder holds SynthCrowd rendered with other settings: {fields}; "
                             f"{hint}")
    return stamp, wanted


def render_synthcrowd(root, num_images: int, size: int = 256, scene_seed: int = 0,
                      splits: tuple[str, ...] = tuple(SPLIT_FRACTIONS), progress: bool = True,
                      flag: str = "data.root") -> list[dict]:
    """Render the ``splits`` of a SynthCrowd folder of ``num_images`` scenes, each split its share
    (:func:`split_size`), and, when this call renders all three, the stamp ``build_datasets`` reads, so that
    training with ``data.num_images=num_images`` uses the folder as it is (a subset of the splits writes no
    stamp). The folder is an :class:`~posediff.io.OutputFolder` (``flag`` names it in messages). Returns each
    split's summary."""
    from ..data.synthcrowd import SceneConfig, scene_file_name, write_split

    unknown = [s for s in splits if s not in SPLIT_FRACTIONS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise ValueError(f"splits must be distinct names among {list(SPLIT_FRACTIONS)}, got {list(splits)}")
    folder = synthcrowd_folder(root, flag)
    stamp, wanted = _synthcrowd_stamp(Path(root), num_images, size, scene_seed,
                                      "render into another folder or delete this one")
    folder.claim(["synthcrowd.json", *(f"{s}/{f}" for s in splits for f in _SPLIT_FILES),
                  *(f"{s}/images/{scene_file_name(i)}" for s in splits for i in range(split_size(num_images, s)))])
    summaries = [write_split(root, split, split_size(num_images, split), seed=scene_seed,
                             config=SceneConfig(size=size), progress=progress) for split in splits]
    if set(splits) == set(SPLIT_FRACTIONS):  # a subset leaves the folder unstamped: its other splits are unknown
        write_json(wanted, stamp)
    return summaries


def data_files(d: DataConfig, rank: int = 0) -> tuple[str, str, str, str]:
    """(train images, train annotations, val images, val annotations) of a data config; a SynthCrowd folder is
    rendered first where it is missing (by rank 0 of a torchrun job, the others waiting)."""
    from ..skeletons import get_skeleton

    skeleton = get_skeleton(d.skeleton)
    if d.kind == "synthcrowd":
        root = Path(d.root)
        ann_name = "coco.json" if skeleton.name == "coco17" else "crowdpose.json"
        synthcrowd_folder(root)  # refuses a data.root that is a file
        stamp, _ = _synthcrowd_stamp(root, d.num_images, d.size, d.scene_seed,
                                     "point data.root elsewhere or delete the folder")
        if not stamp.is_file() or not (root / d.val_split / ann_name).is_file():
            if rank == 0:
                render_synthcrowd(root, d.num_images, d.size, d.scene_seed)
            if torch.distributed.is_initialized():
                torch.distributed.barrier()
        return (str(root / "train" / "images"), str(root / "train" / ann_name), str(root / d.val_split / "images"),
                str(root / d.val_split / ann_name))
    unset = [f"data.{f}" for f in ("train_images", "train_ann", "val_images", "val_ann") if not getattr(d, f)]
    if unset:  # kind "coco", as DataConfig checks
        raise ValueError(f"data.kind='coco' reads its images and annotations from data.train_images, "
                         f"data.train_ann, data.val_images and data.val_ann; {', '.join(unset)} not set")
    return d.train_images, d.train_ann, d.val_images, d.val_ann


def build_datasets(cfg, rank: int = 0):
    """(train dataset, val dataset, val annotation file, metric dataset name) of a run config (``TrainConfig``)."""
    from ..data import CocoKeypointDataset
    from ..data.transforms import Compose, PixelNoise, RandomHorizontalFlip, eval_transforms, train_transforms
    from ..skeletons import get_skeleton

    d = cfg.data
    skeleton = get_skeleton(d.skeleton)
    prior = d.prior if (d.prior and skeleton.name == "coco17") else None
    train_images, train_ann, val_images, val_ann = data_files(d, rank)
    tf = train_transforms(skeleton.flip_index, scales=d.train_scales, max_size=d.max_size, crop_scales=d.crop_scales,
                          crop_size=d.crop_size)
    if not d.flips:
        tf.transforms = [t for t in tf.transforms if not isinstance(t, RandomHorizontalFlip)]
    elif d.kind == "synthcrowd" and rank == 0:
        log.warning("data.flip=True on SynthCrowd: a flipped scene shows its darker left limbs on the right, so "
                    "the cue that tells left from right is lost (docs/data.md)")
    if d.pixel_noise > 0:
        tf = Compose([tf, PixelNoise(d.pixel_noise)])
    train_ds = CocoKeypointDataset(train_images, train_ann, skeleton=skeleton, transforms=tf, prior=prior,
                                   seed=cfg.seed, require_persons=True)
    val_ds = CocoKeypointDataset(val_images, val_ann, skeleton=skeleton,
                                 transforms=eval_transforms(d.eval_scale, d.max_size))
    if d.kind == "synthcrowd":
        from ..data.synthcrowd import check_renderer

        check_renderer(train_ann, train_ds.coco.dataset)
        check_renderer(val_ann, val_ds.coco.dataset)
    if d.max_val_images is not None:
        val_ds.ids = val_ds.ids[: d.max_val_images]
    metric = "coco" if skeleton.name == "coco17" else "crowdpose"
    return train_ds, val_ds, str(val_ann), metric


def synthcrowd_meta(data: DataConfig) -> dict:
    """``{"synthcrowd_renderer": version}`` for a checkpoint trained on SynthCrowd (files without it: version 1
    or other data), else ``{}``."""
    from ..data.synthcrowd import RENDERER_VERSION

    return {"synthcrowd_renderer": RENDERER_VERSION} if data.kind == "synthcrowd" else {}


def check_synthcrowd_meta(meta: dict, checkpoint, action: str) -> None:
    """Refuse to ``action`` a checkpoint (its metadata ``meta``) trained on another SynthCrowd renderer."""
    from ..data.synthcrowd import refuse_other_renderer

    refuse_other_renderer(json.loads(meta["synthcrowd_renderer"]) if "synthcrowd_renderer" in meta else None,
                          f"{checkpoint}: metadata field synthcrowd_renderer",
                          f"it cannot {action} a model trained on other pictures; train it again on this version")


def check_synthcrowd_zoo_run(meta: dict, data: dict, checkpoint) -> None:
    """A run the zoo scores on the SynthCrowd test split: trained on SynthCrowd, by this renderer version."""
    if data.get("kind") != "synthcrowd":
        raise ValueError(f"{checkpoint}: config field data.kind is {data.get('kind')!r}; the zoo records metrics on "
                         f"the SynthCrowd test split, so it takes runs trained on SynthCrowd")
    check_synthcrowd_meta(meta, checkpoint, "score and export")


@torch.no_grad()
def predict_results(model, dataset, batch_size: int = 4, device="cpu", steps: int | None = None,
                    progress: bool = False, seed: int = 0) -> list[dict]:
    """COCO keypoint results (original image pixels) for every image of ``dataset``, in batches.

    Sampling noise comes from one generator seeded by ``seed``, so a diffusion model's results repeat.
    """
    return predict_results_at_steps(model, dataset, (steps,), batch_size, device, progress, seed)[steps]


def predict_results_at_steps(model, dataset, steps: Sequence[int | None], batch_size: int = 4, device="cpu",
                             progress: bool = False, seed: int = 0) -> dict:
    """``{s: predict_results(model, dataset, steps=s, seed=seed)}`` for each sampling-step count ``s`` (None: the
    model's own), with each image's features computed once for all of them
    (:meth:`~posediff.models.OneStagePoseModel.predict_at_steps`); every count has its own generator seeded by
    ``seed``, so its results are those of its own pass."""
    from tqdm import tqdm

    from ..data import collate
    from ..evaluation import to_coco_results

    steps = list(dict.fromkeys(steps))
    was_training = model.training
    model.eval()
    results: dict = {s: [] for s in steps}
    gens = [torch.Generator(device="cpu").manual_seed(seed) for _ in steps]
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
        images, mask, targets = collate([dataset[i] for i in range(start, min(start + batch_size, n))])
        outputs = model.predict_at_steps(images.to(device), mask.to(device), steps, gens)
        ids, scales = targets.image_ids.tolist(), targets.scale_to_original.tolist()
        for s, out in zip(steps, outputs):
            results[s] += to_coco_results(ids, out, scales=scales)
    model.train(was_training)
    return results


@torch.no_grad()
def detect_persons(model, dataset, batch_size: int = 4, device="cpu", min_score: float = 0.0,
                   progress: bool = False, seed: int = 0) -> list[dict]:
    """A one-stage model as a person detector: COCO detection results ``{image_id, category_id, bbox (x, y, w, h,
    original pixels), score}`` for every image of ``dataset``, the persons scoring at least ``min_score`` (what a
    top-down model reads as its boxes, :func:`posediff.data.topdown.load_detections`)."""
    from tqdm import tqdm

    from ..data import collate

    was_training = model.training
    model.eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    n = len(dataset)
    for start in tqdm(range(0, n, batch_size), desc="detect", disable=not progress, leave=False):
        images, mask, targets = collate([dataset[i] for i in range(start, min(start + batch_size, n))])
        preds = model.predict_at_steps(images.to(device), mask.to(device), [None], [gen])[0]
        for image_id, (sx, sy), p in zip(targets.image_ids.tolist(), targets.scale_to_original.tolist(), preds):
            for box, score in zip(p["boxes"].cpu().double().tolist(), p["scores"].cpu().tolist()):
                if score >= min_score:
                    x0, y0, x1, y1 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
                    out.append(dict(image_id=int(image_id), category_id=1, score=float(score),
                                    bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]))
    model.train(was_training)
    return out


def evaluate(model, dataset, ann_file: str, metric: str, batch_size: int = 4, device="cpu",
             steps: int | None = None, progress: bool = False) -> dict:
    """Predict over ``dataset`` in batches and score with ``evaluate_keypoints`` on its images only (a
    ``max_val_images`` subset is scored against its own ground truth, not the whole file's)."""
    from ..evaluation import evaluate_keypoints

    results = predict_results(model, dataset, batch_size, device, steps, progress)
    return evaluate_keypoints(ann_file, results, dataset=metric, image_ids=dataset.ids)


@functools.lru_cache(maxsize=8)
def ground_truth(path: str) -> dict:
    """A ground-truth file, parsed once per process (it is read for every evaluation). Read-only: the scorers
    subset copies (``evaluate_keypoints(..., image_ids=...)``)."""
    return json.loads(Path(path).read_text())


def score_results(results: list[dict], gts: dict, image_ids: list[int]) -> dict:
    """Metrics of COCO-17 (or the model's own format) results against every ground truth in ``gts``."""
    from ..evaluation import evaluate_keypoints, results_to_crowdpose14

    out = {}
    k_pred = len(results[0]["keypoints"]) // 3 if results else None
    for fmt, path in gts.items():
        gt = ground_truth(str(path))
        k = len(gt["categories"][0]["keypoints"])
        res = results
        if k_pred == 17 and k == 14:
            res = results_to_crowdpose14(results)
        elif k_pred is not None and k_pred != k:
            continue  # a 14-joint model has no COCO-17 score
        out[fmt] = evaluate_keypoints(gt, res, dataset=fmt, image_ids=image_ids)
    return out


@contextlib.contextmanager
def synthcrowd_test_split(root=None, num_images: int = 400, size: int = 256, scene_seed: int = 0,
                          progress: bool = False):
    """The folder of a SynthCrowd test split (``root`` holding ``test/`` as ``posediff train`` writes it, checked
    to be the split asked for; without one, the split's ``num_images`` scenes of ``size`` pixels and
    ``scene_seed`` rendered into a temporary folder: scenes are deterministic, so this is the same split for
    the same renderer version) and its ground truth ``{"coco": path, "crowdpose": path}``."""
    import tempfile

    from ..data.synthcrowd import SceneConfig, check_renderer, write_split

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


class MultipersonTask(Task):
    """Images in, every person's keypoints out, scored by COCO / CrowdPose keypoint AP."""

    name = "multiperson"
    data_config = DataConfig
    log_keys = ("class", "keypoints", "oks", "aux_heatmap")

    def check(self, cfg) -> None:
        if not isinstance(cfg.data, DataConfig):
            raise ValueError(f"recipe {cfg.recipe} is a multi-person (one-stage) recipe: its data config must be a "
                             f"DataConfig (SynthCrowd, COCO or CrowdPose images), got {type(cfg.data).__name__}")
        if cfg.data.kind == "synthcrowd":
            synthcrowd_folder(cfg.data.root)  # refuses a data.root that is a file now, not after the model is built

    def check_model(self, model, cfg) -> None:
        from ..skeletons import get_skeleton

        joints = get_skeleton(cfg.data.skeleton).num_joints
        if getattr(model, "num_keypoints", joints) != joints:
            raise ValueError(f"recipe {cfg.recipe}: the model predicts {model.num_keypoints} joints but data.skeleton="
                             f"{cfg.data.skeleton!r} has {joints}; set model.num_keypoints={joints} (or another "
                             f"skeleton)")

    def build(self, cfg, rank: int = 0) -> TaskData:
        train_ds, val_ds, val_ann, metric = build_datasets(cfg, rank)
        return TaskData(train_ds, val_ds, ann_file=val_ann, metric=metric)

    def collate(self, items):
        from ..data import collate

        return collate(items)

    def losses(self, net, batch, device) -> dict:
        images, mask, targets = (x.to(device) for x in batch)
        return net(images, mask, targets)

    def evaluate(self, model, data: TaskData, cfg, device, progress: bool = False) -> dict:
        return evaluate(model, data.val, data.info["ann_file"], data.info["metric"], cfg.batch_size, device,
                        progress=progress)

    def check_zoo_run(self, meta: dict, data: dict, checkpoint) -> None:
        check_synthcrowd_zoo_run(meta, data, checkpoint)

    def zoo_metrics(self, model, data: dict, data_root=None, eval_size: int | None = None) -> dict:
        d = DataConfig.from_saved(data)  # the run's data, fields it did not record at their defaults
        return score_on_synthcrowd_test(model, root=data_root or d.root, num_images=split_size(d.num_images, "test"),
                                        size=d.size, scene_seed=d.scene_seed, max_size=d.max_size,
                                        eval_size=eval_size if eval_size is not None else d.eval_scale)

    def checkpoint_meta(self, cfg) -> dict:
        return synthcrowd_meta(cfg.data)

    def check_checkpoint(self, meta: dict, path, action: str, cfg) -> None:
        if cfg.data.kind == "synthcrowd":
            check_synthcrowd_meta(meta, path, action)

    def run_info(self, cfg) -> dict:
        return {"eval_size": cfg.data.eval_scale}

    def on_resume(self, out, cfg, step: int) -> None:
        _warn_if_evaluation_size_changed(Path(out) / "config.json", cfg.data, step)


def _warn_if_evaluation_size_changed(config_path: Path, data: DataConfig, step: int) -> None:
    """A resumed run validates at ``data.eval_scale``; say so when its earlier calls validated at another size
    (``config.json``'s ``eval_size``, or before that was written, its data config's ``eval_size``)."""
    if not config_path.is_file():
        return
    saved = json.loads(config_path.read_text())
    before = saved.get("eval_size")
    if before is None:
        before = DataConfig.from_saved(saved.get("config", {}).get("data", {})).eval_scale
    if before != data.eval_scale:
        log.warning("%s: this run validated at %s px up to step %d and validates at %d px from now on, so "
                    "history.jsonl mixes the two; pass data.eval_size=%s to keep the earlier size", config_path,
                    before, step, data.eval_scale, before)
