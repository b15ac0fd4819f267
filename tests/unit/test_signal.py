import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from posediff.diffusion import SignalCodec


@settings(deadline=None, max_examples=50)
@given(scale=st.floats(0.1, 10.0), seed=st.integers(0, 2**16))
def test_round_trip_and_range(scale, seed):
    codec = SignalCodec(scale)
    x = torch.rand(3, 5, 17, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = codec.encode(x)
    assert float(y.abs().max()) <= scale + 1e-12
    torch.testing.assert_close(codec.decode(y), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(codec.encode(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-scale, 0.0, scale]))


def test_decode_clamps_and_bad_scale_is_refused():
    codec = SignalCodec(5.0)
    assert codec.decode(torch.tensor([-50.0, 50.0])).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="scale"):
        SignalCodec(0.0)
