import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff.diffusion import PADDING_STRATEGIES, pad_poses


@settings(deadline=None, max_examples=200)
@given(m=st.integers(0, 12), num=st.integers(1, 10), k=st.integers(1, 5),
       strategy=st.sampled_from(PADDING_STRATEGIES), seed=st.integers(0, 1000))
def test_shape_mask_and_preserved_ground_truth(m, num, k, strategy, seed):
    poses = torch.randn(m, k, 2, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    if strategy in ("repeat", "mean") and m == 0:
        with pytest.raises(ValueError, match=strategy):
            pad_poses(poses, num, strategy, generator=g)
        return
    padded, is_real = pad_poses(poses, num, strategy, generator=g)
    assert padded.shape == (num, k, 2) and is_real.shape == (num,) and is_real.dtype == torch.bool
    n_real = min(m, num)
    assert is_real.tolist() == [True] * n_real + [False] * (num - n_real)
    real = padded[:n_real]
    if m <= num:
        assert torch.equal(real, poses)  # every GT row kept, in order
    else:  # a subsample, without replacement, order kept
        rows = [int((poses == r).all(-1).all(-1).nonzero()[0]) for r in real]
        assert rows == sorted(set(rows))
    fill = padded[n_real:]
    if strategy == "repeat":
        for i, row in enumerate(fill):
            assert torch.equal(row, poses[i % m])
    elif strategy == "empty":
        assert torch.equal(fill, torch.zeros_like(fill))
    elif strategy == "mean" and len(fill):
        shape = (poses - poses.mean(1, keepdim=True)).mean(0)
        torch.testing.assert_close(fill - fill.mean(1, keepdim=True), shape.expand_as(fill))
    # seeded: the same generator state gives the same padding
    again, _ = pad_poses(poses, num, strategy, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(padded, again)


def test_noise_padding_is_standard_gaussian_and_mean_pose_can_be_given():
    padded, _ = pad_poses(torch.zeros(0, 17, 2), 4000, "noise", generator=torch.Generator().manual_seed(0))
    assert abs(float(padded.mean())) < 0.01 and abs(float(padded.std()) - 1) < 0.01
    mean_pose = torch.randn(17, 2)
    padded, _ = pad_poses(torch.zeros(0, 17, 2), 3, "mean", mean_pose=mean_pose)
    torch.testing.assert_close(padded - padded.mean(1, keepdim=True),
                               (mean_pose - mean_pose.mean(0)).expand(3, -1, -1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        pad_poses(torch.zeros(1, 2, 2), 3, "zeros")
    with pytest.raises(ValueError, match=r"\(M, K, 2\)"):
        pad_poses(torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="mean_pose"):
        pad_poses(torch.zeros(1, 3, 2), 3, "mean", mean_pose=torch.zeros(2, 2))
