"""SynthCrowd: generation speed, and its statistics beside real COCO and CrowdPose annotations.

1. Speed: render N scenes in one process (``taskset -c 0`` pins it to one core), then render and write them
   as PNG; images per second for each.
2. Statistics of a written split (default 2000 test images): crowd-index levels (easy <= 0.1 < medium
   <= 0.8 < hard), persons per image, shares of visible / occluded / unlabelled keypoints, beside the same
   figures for the real COCO val2017 subset (crowd index on its persons converted to CrowdPose-14) and the
   real CrowdPose fixture.
3. A contact sheet of 16 scenes with their keypoints drawn, and a crowd-index histogram plot.

Run: ``taskset -c 0 python benchmarks/synthcrowd.py --out docs/results/synthcrowd.json
--sheet docs/images/synthcrowd_contact_sheet.png --plot docs/images/synthcrowd_crowd_index.png``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from posediff.data.coco import crowd_index
from posediff.data.synthcrowd import RENDERER_VERSION, PoseBank, SceneConfig, make_scene, write_split
from posediff.env import machine_info
from posediff.io import save_result
from posediff.skeletons import coco17_to_crowdpose14
from posediff.viz import contact_sheet, draw_poses

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def level_counts(ci: np.ndarray) -> dict:
    n = max(len(ci), 1)
    counts = dict(easy=int((ci <= 0.1).sum()), medium=int(((ci > 0.1) & (ci <= 0.8)).sum()), hard=int((ci > 0.8).sum()))
    return dict(counts, **{f"{k}_share": v / n for k, v in list(counts.items())})


def annotation_stats(gt: dict, k: int, to_crowdpose=None) -> dict:
    """Per-image persons, crowd levels and keypoint visibility shares of a COCO-format dict."""
    persons = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0:
            persons[a["image_id"]].append(a)
    ci, per_image, flags = [], [], []
    given = {img["id"]: img.get("crowdIndex") for img in gt["images"]}
    for image_id, anns in persons.items():
        per_image.append(len(anns))
        if not anns:
            ci.append(0.0)
            continue
        kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, k, 3)
        flags.append(kp[..., 2].reshape(-1))
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64)
        cp = to_crowdpose(kp) if to_crowdpose else kp
        ci.append(given[image_id] if given[image_id] is not None else crowd_index(cp, boxes))
    v = np.concatenate(flags) if flags else np.zeros(0)
    ci = np.asarray(ci)
    return dict(images=len(per_image), persons=int(sum(per_image)), persons_per_image=float(np.mean(per_image)),
                persons_per_image_max=int(max(per_image)), crowd_index_mean=float(ci.mean()), levels=level_counts(ci),
                visible=float((v == 2).mean()), occluded=float((v == 1).mean()), unlabelled=float((v == 0).mean()),
                crowd_index=ci.tolist())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed-images", type=int, default=500)
    ap.add_argument("--stats-images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON results")
    ap.add_argument("--sheet", default=None, help="contact sheet PNG")
    ap.add_argument("--plot", default=None, help="crowd-index histogram PNG")
    args = ap.parse_args(argv)
    config = SceneConfig(size=args.size)
    bank = PoseBank.shipped()

    # 1. speed
    make_scene(args.seed, "train", 0, config, bank)  # warm-up
    t0 = time.perf_counter()
    for i in range(args.speed_images):
        make_scene(args.seed, "train", i, config, bank)
    render = args.speed_images / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_split(tmp, "train", args.speed_images, seed=args.seed, config=config, progress=False)
        written = args.speed_images / (time.perf_counter() - t0)

    # 2. statistics of a written split
    with tempfile.TemporaryDirectory() as tmp:
        write_split(tmp, "test", args.stats_images, seed=args.seed, config=config)
        synth_cp = json.loads((Path(tmp) / "test" / "crowdpose.json").read_text())
        synth_coco = json.loads((Path(tmp) / "test" / "coco.json").read_text())
    stats = {"SynthCrowd test split (COCO-17 labels)": annotation_stats(synth_coco, 17, coco17_to_crowdpose14),
             "SynthCrowd test split (CrowdPose-14 labels)": annotation_stats(synth_cp, 14)}
    stats["SynthCrowd test split (COCO-17 labels)"]["crowd_index"] = stats[
        "SynthCrowd test split (CrowdPose-14 labels)"]["crowd_index"]
    coco_file = SHARED / "coco" / "person_keypoints_val2017_subset.json"
    cp_file = SHARED / "crowdpose" / "crowdpose_fixture.json"
    if coco_file.is_file():
        stats["COCO val2017 subset (614 images, real)"] = annotation_stats(json.loads(coco_file.read_text()), 17,
                                                                          coco17_to_crowdpose14)
    if cp_file.is_file():
        stats["CrowdPose fixture (2 images, real)"] = annotation_stats(json.loads(cp_file.read_text()), 14)

    result = dict(benchmark="synthcrowd", size=args.size, seed=args.seed, renderer=RENDERER_VERSION,
                  speed=dict(images=args.speed_images, render_per_s=render, render_and_write_png_per_s=written),
                  stats={k: {kk: vv for kk, vv in v.items() if kk != "crowd_index"} for k, v in stats.items()},
                  machine=machine_info())

    print(f"SynthCrowd {args.size}x{args.size}, one process: render {render:.0f} img/s, "
          f"render + write PNG {written:.0f} img/s")
    print("| data | images | persons/img | easy | medium | hard | visible | occluded | unlabelled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in stats.items():
        lv = s["levels"]
        print(f"| {name} | {s['images']} | {s['persons_per_image']:.2f} | {lv['easy_share']:.0%} | "
              f"{lv['medium_share']:.0%} | {lv['hard_share']:.0%} | {s['visible']:.0%} | {s['occluded']:.0%} | "
              f"{s['unlabelled']:.0%} |")

    if args.sheet:
        tiles = []
        for i in range(16):
            scene = make_scene(args.seed, "test", i, config, bank)
            tiles.append(draw_poses(scene.image, scene.keypoints, "coco17", radius=2.0))
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(contact_sheet(tiles, cols=4)).save(args.sheet)
        print(f"wrote {args.sheet}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.2))
        bins = np.linspace(0, 2.0, 41)
        for name in ("SynthCrowd test split (CrowdPose-14 labels)", "COCO val2017 subset (614 images, real)"):
            if name in stats:
                ci = np.clip(stats[name]["crowd_index"], 0, 2.0)
                ax.hist(ci, bins=bins, alpha=0.6, density=True, label=name)
        for x in (0.1, 0.8):
            ax.axvline(x, color="k", lw=0.8, ls="--")
        ax.set_xlabel("crowd index (CrowdPose definition; clipped at 2)")
        ax.set_ylabel("density of images")
        ax.legend(fontsize=7)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return save_result(result, args.out)


if __name__ == "__main__":
    main()
