import pytest
import torch

from crossent import config


@pytest.fixture(autouse=True)
def _restore_switches():
    """Each test starts with the default switches and a fixed seed."""
    torch.manual_seed(0)
    yield
    config.set_validation(True)
    config.set_probability_warning(True)
