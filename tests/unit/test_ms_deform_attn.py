import pytest
import torch
import torch.nn.functional as F

from posediff.models.ops import MSDeformAttn, ms_deform_attn_core

SHAPES = torch.tensor([[16, 16], [8, 8], [4, 4]])


def _inputs(b=2, q=7, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = int(SHAPES.prod(1).sum())
    return (torch.randn(b, q, dim, generator=g), torch.rand(b, q, 3, 2, generator=g),
            torch.randn(b, s, dim, generator=g))


def test_core_equals_bilinear_sampling_at_the_points():
    """One head, one level, one point with weight 1: the core is grid_sample at that point."""
    g = torch.Generator().manual_seed(0)
    value = torch.randn(1, 16 * 16, 1, 5, generator=g)  # (B, S, H, Dh)
    loc = torch.rand(1, 9, 1, 1, 1, 2, generator=g)
    out = ms_deform_attn_core(value, SHAPES[:1], loc, torch.ones(1, 9, 1, 1, 1))
    img = value[0, :, 0].T.reshape(1, 5, 16, 16)
    ref = F.grid_sample(img, 2 * loc.view(1, 9, 1, 2) - 1, align_corners=False)[0, :, :, 0].T  # (9, 5)
    torch.testing.assert_close(out[0], ref)


def test_constant_values_give_that_constant_and_gradients_flow():
    m = MSDeformAttn(32, heads=4, levels=3, points=4)
    torch.nn.init.zeros_(m.sampling_offsets.bias)  # every point at the reference
    query, ref, _ = _inputs()
    value = torch.ones(2, int(SHAPES.prod(1).sum()), 32, requires_grad=True)
    m.value_proj.weight.data.zero_()
    m.value_proj.bias.data.fill_(1.0)
    m.output_proj.weight.data.copy_(torch.eye(32))
    out = m(query, ref.clamp(0.3, 0.7), value, SHAPES)  # inside the map, bilinear sampling of a constant is it
    torch.testing.assert_close(out, torch.ones_like(out), atol=1e-5, rtol=0)
    query.requires_grad_(True)
    torch.nn.init.normal_(m.value_proj.weight, std=0.1)
    m(query, ref, torch.randn(2, value.shape[1], 32), SHAPES).sum().backward()
    assert query.grad is not None and torch.isfinite(query.grad).all()


def test_box_references_and_padding_mask():
    m = MSDeformAttn(32, heads=4, levels=3, points=2)
    query, ref, value = _inputs()
    boxes = torch.cat([ref, torch.full_like(ref, 0.2)], -1)
    assert m(query, boxes, value, SHAPES).shape == (2, 7, 32)
    pad = torch.zeros(2, value.shape[1], dtype=torch.bool)
    pad[:, -16:] = True  # the last level is padding: what is there must not matter
    a = m(query, ref, value, SHAPES, pad)
    value2 = value.clone()
    value2[:, -16:] = 100.0
    torch.testing.assert_close(m(query, ref, value2, SHAPES, pad), a)
    with pytest.raises(ValueError, match="levels"):
        m(query, ref, value, SHAPES[:2])


@pytest.mark.slow
def test_compiled_core_equals_pytorch():
    torch.manual_seed(0)
    m = MSDeformAttn(32, heads=4, levels=3, points=4)
    torch.nn.init.normal_(m.sampling_offsets.weight, std=0.1)
    query, ref, value = _inputs()
    eager = m(query, ref, value, SHAPES)
    m.impl = "compile"
    torch.testing.assert_close(m(query, ref, value, SHAPES), eager, atol=1e-5, rtol=1e-5)
