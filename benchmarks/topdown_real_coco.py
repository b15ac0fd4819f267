"""Top-down models on the 54 real COCO val2017 images of ``../shared/data/coco``, with ground-truth boxes and with the
real HRNet person detections (the public file top-down papers use), scored by COCO keypoint AP; with the
ground-truth boxes also the labelled joints' median distance to their labels (pixels, and per person's box height).

The models are trained on SynthCrowd's drawn figures only: this measures how far that carries to photographs,
not what the recipes would reach trained on COCO.

Run: ``OMP_NUM_THREADS=1 python benchmarks/topdown_real_coco.py --models zoo:simplebaseline_tiny
zoo:diffusionpose_tiny --out docs/results/topdown_real_coco.json`` (``zoo:RECIPE`` or a checkpoint path)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from posediff.env import machine_info
from posediff.io import save_result

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco"


def load(spec: str):
    import posediff
    from posediff.engine.checkpoint import load_model
    from posediff.zoo import PRETRAINED

    if spec.startswith("zoo:"):
        recipe = spec[4:]
        tags = [t for r, t in PRETRAINED if r == recipe]
        if not tags:
            raise SystemExit(f"--models {spec}: the zoo has no weights for {recipe!r}; it has {sorted(PRETRAINED)}")
        return posediff.create_model(recipe, pretrained=tags[0])
    return load_model(spec).eval()


@torch.no_grad()
def joint_errors(model, crops, instances, steps, batch_size: int = 32) -> dict:
    """The labelled joints' median distance to their labels over every crop (image pixels, and each distance
    divided by its person's box height)."""
    from posediff.data.topdown import collate_crops
    from posediff.models.topdown import to_image

    dist, rel = [], []
    for start in range(0, len(crops), batch_size):
        x, t = collate_crops([crops[i] for i in range(start, min(start + batch_size, len(crops)))])
        kp = to_image(model.predict(x, steps).double().numpy(), t["matrix"].numpy())  # (B, K, 3) image px
        for k, inst in zip(kp, instances[start:start + batch_size]):
            gt = inst["keypoints"]  # (K, 3)
            d = np.linalg.norm(k[gt[:, 2] > 0, :2] - gt[gt[:, 2] > 0, :2], axis=1)
            dist.append(d)
            rel.append(d / inst["bbox"][3])
    return dict(median_joint_error_px=float(np.median(np.concatenate(dist))),
                median_joint_error_per_height=float(np.median(np.concatenate(rel))))


def main() -> None:
    from posediff.data import CocoKeypointDataset
    from posediff.data.topdown import PersonCrops, gt_instances, load_detections
    from posediff.evaluation import evaluate_keypoints
    from posediff.tasks.topdown import predict_crop_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="zoo:RECIPE or checkpoint paths")
    ap.add_argument("--data", default=str(SHARED), help="the folder of images/ and the two JSON files")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps of a diffusion head")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data = Path(args.data)
    ann = data / "person_keypoints_val2017_images.json"
    src = CocoKeypointDataset(data / "images", ann)
    ids = [int(i) for i in src.ids]
    with tempfile.TemporaryDirectory() as tmp:  # the detections of these images only
        dets = [d for d in json.loads((data / "person_detections_val2017_subset.json").read_text())
                if d["image_id"] in set(ids)]
        det_file = Path(tmp) / "dets.json"
        det_file.write_text(json.dumps(dets))
        boxes = {"ground truth": gt_instances(src.coco, ids, 17), "HRNet detections": load_detections(det_file, ids)}
    rows = {}
    for spec in args.models:
        model = load(spec)
        for name, inst in boxes.items():
            crops = PersonCrops(src, inst, model.codec, padding=model.padding)
            results = predict_crop_results(model, crops, (args.steps,), nms=0.9, progress=True)[args.steps]
            m = evaluate_keypoints(str(ann), results, dataset="coco", image_ids=ids)
            rows[f"{spec} / {name}"] = dict(model=spec, boxes=name, persons=len(inst),
                                            **{k: m[k] for k in ("AP", "AP50", "AP75", "AP_M", "AP_L", "AR")})
            if name == "ground truth":
                rows[f"{spec} / {name}"].update(joint_errors(model, crops, inst, args.steps))
    print("| model | boxes | persons | AP | AP50 | AR | median joint error (px, per box height) |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows.values():
        err = (f"{r['median_joint_error_px']:.1f}, {r['median_joint_error_per_height']:.3f}"
               if "median_joint_error_px" in r else "-")
        print(f"| {r['model']} | {r['boxes']} | {r['persons']} | {100 * r['AP']:.1f} | {100 * r['AP50']:.1f} | "
              f"{100 * r['AR']:.1f} | {err} |")
    save_result(dict(images=len(ids), rows=rows, machine=machine_info(), date=time.strftime("%Y-%m-%d"),
                     command="python " + " ".join(sys.argv)), args.out)


if __name__ == "__main__":
    main()
