import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def tiny_train():
    """Three 2-channel 6x5 images in [-1, 1] with labels, deterministic."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 2, 6, 5, generator=g) * 2 - 1, torch.tensor([0, 1, 0])
