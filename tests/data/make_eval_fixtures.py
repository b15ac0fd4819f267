"""Make the evaluation fixtures in tests/data from the real files in ../shared/data.

Run from the repository root with posediff installed:  python tests/data/make_eval_fixtures.py
Then compute the reference numbers with xtcocotools (see xtcocotools_reference.py).
"""

import json
from pathlib import Path

import numpy as np

from posediff.data.coco import crowd_index
from posediff.skeletons import coco17_to_crowdpose14

HERE = Path(__file__).parent
SHARED = HERE.parents[2] / "shared" / "data"


def noisy_results(gt: dict, k: int, seed: int) -> list[dict]:
    """Seeded imperfect predictions: jittered GT poses with random scores, misses and false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue
        if rng.random() < 0.1:  # a missed person
            continue
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(k, 3)
        x, y, w, h = ann["bbox"]
        size = np.sqrt(max(w * h, 1.0))
        unl = kp[:, 2] == 0
        kp[unl, 0] = x + rng.random(unl.sum()) * w
        kp[unl, 1] = y + rng.random(unl.sum()) * h
        kp[:, :2] += rng.normal(0, 0.04 * size, (k, 2)) * rng.choice([0.5, 1.0, 3.0])
        kp[:, 2] = rng.random(k)
        out.append(dict(image_id=ann["image_id"], category_id=1, keypoints=np.round(kp, 2).reshape(-1).tolist(),
                        score=round(float(rng.random()), 4)))
        if rng.random() < 0.2:  # a false positive: the pose moved by a box width
            fp = kp.copy()
            fp[:, 0] += w
            out.append(dict(image_id=ann["image_id"], category_id=1, keypoints=np.round(fp, 2).reshape(-1).tolist(),
                            score=round(float(rng.random() * 0.5), 4)))
    return out


def gt_results(gt: dict) -> list[dict]:
    return [dict(image_id=a["image_id"], category_id=1, keypoints=a["keypoints"], score=1.0)
            for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0]


def dump(obj, name):
    with open(HERE / name, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def main():
    # 1. COCO: the first 150 images of the 614-image val2017 subset, segmentations dropped (keypoint OKS uses
    #    area and bbox only), everything else verbatim.
    coco = json.load(open(SHARED / "coco" / "person_keypoints_val2017_subset.json"))
    ids = sorted(img["id"] for img in coco["images"])[:150]
    keep = set(ids)
    anns = [{k: v for k, v in a.items() if k != "segmentation"} for a in coco["annotations"] if a["image_id"] in keep]
    coco_small = dict(info=dict(description="COCO val2017 person keypoints, 150 images of "
                                "shared/data/coco/person_keypoints_val2017_subset.json, segmentation dropped; "
                                "COCO annotations CC BY 4.0"),
                      licenses=coco["licenses"], categories=coco["categories"],
                      images=[i for i in coco["images"] if i["id"] in keep], annotations=anns)
    dump(coco_small, "coco_val2017_150.json")
    dump(noisy_results(coco_small, 17, seed=0), "coco_val2017_150_noisy_results.json")

    # 2. The same persons in CrowdPose format (14 joints; crowdIndex by the CrowdPose definition).
    cp_anns = []
    for a in anns:
        b = dict(a)
        kp = coco17_to_crowdpose14(np.asarray(a["keypoints"], dtype=np.float64).reshape(17, 3))
        b["keypoints"] = [int(round(v)) for v in kp.reshape(-1)]
        b["num_keypoints"] = int((kp[:, 2] > 0).sum())
        cp_anns.append(b)
    cp_images = []
    for img in coco_small["images"]:
        persons = [b for b in cp_anns if b["image_id"] == img["id"] and not b.get("iscrowd", 0)]
        kp = np.asarray([b["keypoints"] for b in persons], dtype=np.float64).reshape(-1, 14, 3)
        boxes = np.asarray([b["bbox"] for b in persons], dtype=np.float64).reshape(-1, 4)
        cp_images.append(dict(img, crowdIndex=round(crowd_index(kp, boxes), 2)))
    cats = [dict(supercategory="person", id=1, name="person",
                 keypoints=list(json.load(open(SHARED / "crowdpose" / "crowdpose_fixture.json"))["categories"][0]
                                ["keypoints"]), skeleton=[])]
    coco_as_cp = dict(info=dict(description="coco_val2017_150.json converted to CrowdPose-14 by "
                                "posediff.skeletons.coco17_to_crowdpose14"),
                      categories=cats, images=cp_images, annotations=cp_anns)
    dump(coco_as_cp, "coco_val2017_150_as_crowdpose.json")
    dump(noisy_results(coco_as_cp, 14, seed=1), "coco_val2017_150_as_crowdpose_noisy_results.json")

    # 3. The real CrowdPose fixture, verbatim, and noisy predictions for it.
    cp = json.load(open(SHARED / "crowdpose" / "crowdpose_fixture.json"))
    dump(cp, "crowdpose_fixture.json")
    dump(noisy_results(cp, 14, seed=2), "crowdpose_fixture_noisy_results.json")

    for name, gt in [("coco_val2017_150", coco_small), ("coco_val2017_150_as_crowdpose", coco_as_cp),
                     ("crowdpose_fixture", cp)]:
        dump(gt_results(gt), f"{name}_gt_results.json")


if __name__ == "__main__":
    main()
