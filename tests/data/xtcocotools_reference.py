"""Reference numbers from xtcocotools for the evaluation fixtures (run where xtcocotools is installed).

xtcocotools' wheel needs numpy < 2; build it from source for numpy 2:
    pip install numpy cython setuptools wheel matplotlib
    pip install --no-binary xtcocotools --no-build-isolation xtcocotools
    python tests/data/xtcocotools_reference.py      # writes tests/data/xtcocotools_reference.json
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import xtcocotools
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

HERE = Path(__file__).parent
CROWD_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10.0
CASES = [  # (ground truth, results, iouType)
    ("coco_val2017_150.json", "coco_val2017_150_gt_results.json", "keypoints"),
    ("coco_val2017_150.json", "coco_val2017_150_noisy_results.json", "keypoints"),
    ("coco_val2017_150_as_crowdpose.json", "coco_val2017_150_as_crowdpose_gt_results.json", "keypoints_crowd"),
    ("coco_val2017_150_as_crowdpose.json", "coco_val2017_150_as_crowdpose_noisy_results.json", "keypoints_crowd"),
    ("crowdpose_fixture.json", "crowdpose_fixture_gt_results.json", "keypoints_crowd"),
    ("crowdpose_fixture.json", "crowdpose_fixture_noisy_results.json", "keypoints_crowd"),
]


def main():
    out = dict(engine=f"xtcocotools {xtcocotools.__version__ if hasattr(xtcocotools, '__version__') else ''}",
               numpy=np.__version__, cases=[])
    for gt, res, iou in CASES:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(str(HERE / gt))
            coco_dt = coco_gt.loadRes(str(HERE / res))
            if iou == "keypoints_crowd":
                ev = COCOeval(coco_gt, coco_dt, iou, CROWD_SIGMAS, use_area=False)
            else:
                ev = COCOeval(coco_gt, coco_dt, iou)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out["cases"].append(dict(gt=gt, results=res, iouType=iou, stats=[float(s) for s in ev.stats]))
    with open(HERE / "xtcocotools_reference.json", "w") as f:
        json.dump(out, f, indent=1)
    for c in out["cases"]:
        print(c["gt"], c["results"], c["iouType"], np.round(c["stats"], 4))


if __name__ == "__main__":
    main()
