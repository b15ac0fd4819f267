"""Transforms on the real COCO annotations (tests/data/coco_val2017_150.json)."""

import json

import numpy as np
import pytest

from posediff.data.transforms import (
    PoseSample,
    RandomResize,
    ToTensor,
    crop,
    eval_transforms,
    hflip,
    resize,
    train_transforms,
)
from posediff.skeletons import COCO17

FLIP = np.asarray(COCO17.flip_index)


def real_samples(data_dir, n=40, paint=False):
    gt = json.loads((data_dir / "coco_val2017_150.json").read_text())
    by_image = {}
    for a in gt["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for img in gt["images"]:
        anns = by_image.get(img["id"])
        if not anns:
            continue
        kp = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
        kp[kp[..., 2] == 0] = 0
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64)
        image = np.zeros((img["height"], img["width"], 3), np.uint8)
        s = PoseSample(image=image, boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), keypoints=kp,
                       areas=np.asarray([a["area"] for a in anns]), image_id=img["id"],
                       orig_size=(img["height"], img["width"]), completed=kp[..., :2] + 0.25)
        out.append(paint_markers(s) if paint else (s, None))
        if len(out) == n:
            break
    return out


def paint_markers(s: PoseSample, half=3):
    """Paint a (2 half + 1)² block of a unique colour at every labelled keypoint; return the owners.

    Keypoints are continuous coordinates (x -> W - x under a flip), so a joint on integer pixel x lands
    between two pixels after a flip: the check reads the pixel under the new coordinate, which lies within
    one pixel of the mirrored block centre; owners are the joints whose 3x3 core is their own colour.
    """
    img = s.image.copy()
    colours = {}
    for p in range(len(s.keypoints)):
        for j in range(17):
            x, y, v = s.keypoints[p, j]
            if v > 0:
                c = np.array([(p * 17 + j) % 250 + 5, (p * 17 + j) // 250 + 5, 200], np.uint8)
                xi, yi = int(x), int(y)
                img[max(yi - half, 0):yi + half + 1, max(xi - half, 0):xi + half + 1] = c
                colours[(p, j)] = c
    def owns(pj, c):  # the 3x3 core around the joint still has its colour (not painted over by another)
        xi, yi = int(s.keypoints[pj][0]), int(s.keypoints[pj][1])
        core = img[max(yi - 1, 0):yi + 2, max(xi - 1, 0):xi + 2]
        return bool(np.all(core == c))

    owners = {pj: c for pj, c in colours.items() if owns(pj, c)}
    s.image = img
    return s, owners


def check_markers(s: PoseSample, owners, kept_rows, tol=0):
    checked = 0
    for new_p, old_p in enumerate(kept_rows):
        for j in range(17):
            x, y, v = s.keypoints[new_p, j]
            if v <= 0 or (old_p, j) not in owners:
                continue
            xi = min(int(x), s.image.shape[1] - 1)
            yi = min(int(y), s.image.shape[0] - 1)
            got = s.image[yi, xi].astype(int)
            assert np.abs(got - owners[(old_p, j)]).max() <= tol, (old_p, j, got, owners[(old_p, j)])
            checked += 1
    return checked


def test_flip_twice_is_the_identity_on_real_annotations(data_dir):
    for s, _ in real_samples(data_dir, n=150):
        back = hflip(hflip(s, FLIP), FLIP)
        np.testing.assert_array_equal(back.keypoints, s.keypoints)
        np.testing.assert_allclose(back.boxes, s.boxes, atol=1e-9)
        np.testing.assert_allclose(back.completed, s.completed, atol=1e-9)
        once = hflip(s, FLIP)
        assert np.all(once.keypoints[once.keypoints[..., 2] == 0] == 0)  # unlabelled stay (0, 0, 0)
        assert np.all(once.boxes[:, 2] >= once.boxes[:, 0])


def test_keypoints_follow_the_pixels_through_flip_resize_and_crop(data_dir):
    total = 0
    for s, owners in real_samples(data_dir, n=25, paint=True):
        rows = list(range(len(s.keypoints)))
        # flip: the mirrored joint (left <-> right) carries the marker of the original joint
        f = hflip(s, FLIP)
        owners_f = {(p, int(np.flatnonzero(FLIP == j)[0])): c for (p, j), c in owners.items()}
        total += check_markers(f, owners_f, rows)
        # resize (bilinear): the marker colour survives at block centres
        h, w = s.size
        r = resize(s, (int(h * 0.8), int(w * 1.1)))
        total += check_markers(r, owners, rows, tol=40)
        # crop: markers move with the crop; joints outside become unlabelled; vanished persons dropped
        top, left = h // 5, w // 6
        c = crop(s, top, left, h // 2, w // 2)
        x0 = s.boxes - np.array([left, top, left, top])
        kept = [p for p in rows
                if min(x0[p, 2], w // 2) > max(x0[p, 0], 0) and min(x0[p, 3], h // 2) > max(x0[p, 1], 0)]
        assert len(c.keypoints) == len(kept)
        total += check_markers(c, owners, kept)
        lab = c.keypoints[..., 2] > 0
        assert np.all((c.keypoints[lab][:, 0] < w // 2) & (c.keypoints[lab][:, 1] < h // 2))
        assert np.all(c.keypoints[~lab] == 0)
    assert total > 300  # the check really ran over many joints


def test_random_pipelines_are_seeded_and_produce_normalised_targets(data_dir):
    s, _ = real_samples(data_dir, n=1)[0]
    t = train_transforms(FLIP, scales=(256, 288), max_size=400, crop_scales=(200, 250), crop_size=(150, 200))
    a = t(s, np.random.default_rng(7))
    b = t(s, np.random.default_rng(7))
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert max(a.size) <= 400
    image, target = ToTensor()(eval_transforms(256, 400)(s, np.random.default_rng(0)))
    assert image.shape[1:] == tuple(target["size"].tolist()) and min(image.shape[1:]) == 256
    assert target["boxes"].shape[-1] == 4 and float(target["boxes"].min()) >= 0 and float(target["boxes"].max()) <= 1
    lab = target["visibility"] > 0
    assert float(target["keypoints"][lab].min()) >= 0 and float(target["keypoints"][lab].max()) <= 1


def test_resize_respects_max_size():
    s = PoseSample(image=np.zeros((100, 400, 3), np.uint8), boxes=np.zeros((0, 4)), keypoints=np.zeros((0, 17, 3)),
                   areas=np.zeros(0), image_id=1, orig_size=(100, 400))
    out = RandomResize([200], max_size=500)(s, np.random.default_rng(0))
    assert out.size == (125, 500)
    from posediff.data.transforms import _resized_hw

    assert _resized_hw(1, 4000, 512, 1333) == (1, 4000)  # a sliver keeps a pixel; PIL refuses a 0-pixel side


@pytest.mark.parametrize("bad", ["flip"])
def test_wrong_flip_index_is_reported(bad):
    s = PoseSample(image=np.zeros((10, 10, 3), np.uint8), boxes=np.zeros((1, 4)), keypoints=np.zeros((1, 14, 3)),
                   areas=np.zeros(1), image_id=1, orig_size=(10, 10))
    with pytest.raises(ValueError, match="14 joints"):
        hflip(s, FLIP)
