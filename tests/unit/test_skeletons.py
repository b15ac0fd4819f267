import numpy as np
import pytest

from posediff.skeletons import COCO17, CROWDPOSE14, H36M17, Skeleton, coco17_to_crowdpose14, get_skeleton


@pytest.mark.parametrize("sk", [COCO17, CROWDPOSE14, H36M17])
def test_flip_index_is_an_involution_swapping_left_and_right(sk):
    perm = np.array(sk.flip_index)
    assert sorted(perm) == list(range(sk.num_joints))
    assert np.array_equal(perm[perm], np.arange(sk.num_joints))
    for a, b in sk.flip_pairs:
        na, nb = sk.joints[a], sk.joints[b]
        assert {na.split("_")[0], nb.split("_")[0]} == {"left", "right"}, (na, nb)
        assert na.split("_", 1)[1] == nb.split("_", 1)[1]
    for j, name in enumerate(sk.joints):  # every left/right joint has its mirror partner
        if name.startswith(("left_", "right_")):
            assert perm[j] != j, name


def test_sizes_and_lookup():
    assert (COCO17.num_joints, CROWDPOSE14.num_joints, H36M17.num_joints) == (17, 14, 17)
    assert get_skeleton("CrowdPose14") is CROWDPOSE14
    assert COCO17.index("left_hip") == 11
    with pytest.raises(KeyError, match="unknown skeleton"):
        get_skeleton("mpii")
    with pytest.raises(ValueError, match="no OKS sigmas"):
        H36M17.sigmas_array()


def test_sigmas_match_the_evaluators():
    # pycocotools COCOeval.Params.kpt_oks_sigmas and crowdpose-api / xtcocotools keypoints_crowd
    coco = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
    crowd = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79]) / 10
    np.testing.assert_allclose(COCO17.sigmas_array(), coco)
    np.testing.assert_allclose(CROWDPOSE14.sigmas_array(), crowd)


def test_bad_skeleton_definition_is_refused():
    with pytest.raises(ValueError, match="flip_pairs"):
        Skeleton("bad", ("a", "b"), ((0, 2),), ())
    with pytest.raises(ValueError, match="sigmas"):
        Skeleton("bad", ("a", "b"), (), (), sigmas=(0.1,))


def test_coco_to_crowdpose_copies_limbs_and_derives_head_and_neck():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (4, 17, 2)), np.full((4, 17, 1), 2.0)], -1)
    kp[1, 6, 2] = 0  # right shoulder unlabelled -> no neck, no head
    kp[2, 0:5, 2] = 0  # no face joint -> neck but no head
    out = coco17_to_crowdpose14(kp)
    assert out.shape == (4, 14, 3)
    names = CROWDPOSE14.joints[:12]
    np.testing.assert_array_equal(out[:, :12], kp[:, [COCO17.index(n) for n in names]])
    np.testing.assert_allclose(out[0, 13, :2], 0.5 * (kp[0, 5, :2] + kp[0, 6, :2]))
    face = kp[0, :5, :2].mean(0)
    np.testing.assert_allclose(out[0, 12, :2], face + 0.6 * (face - out[0, 13, :2]))
    assert out[1, 13, 2] == 0 and out[1, 12, 2] == 0
    assert out[2, 13, 2] == 2 and out[2, 12, 2] == 0
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 3\)"):
        coco17_to_crowdpose14(np.zeros((3, 14, 3)))
