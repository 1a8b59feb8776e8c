import importlib.util
import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when a kernel is defined: set it before any test imports the
# kernels, so CPU-only machines (CI) run them through the interpreter on CPU tensors.
if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from crossent.core import config


@pytest.fixture(autouse=True)
def _restore_switches():
    """Each test starts with the default switches and a fixed seed."""
    torch.manual_seed(0)
    yield
    config.set_validation(True)
    config.set_probability_warning(True)
