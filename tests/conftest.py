import numpy as np
import pytest
import torch

# Test tables draw their inputs at import time: make them the same on every run.
torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
