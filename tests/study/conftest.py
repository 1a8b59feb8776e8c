import os
from pathlib import Path

import pytest
import torch

from crossent.study import parse_config
from tests.study.helpers import tiny_raw

HERE = Path(__file__).parent


@pytest.fixture
def tiny():
    return parse_config(tiny_raw())


@pytest.fixture
def subprocess_env():
    """Environment for `crossent` subprocesses (and their spawned workers)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent.parent / "src"), env.get("PYTHONPATH", "")]
    )
    return env


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train fastest on one thread; on shared cores more threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
