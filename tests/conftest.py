from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
# The real data beside the checkout (../shared/data); tests that use it also pass where it is absent.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
