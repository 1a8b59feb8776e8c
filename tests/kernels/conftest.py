"""Kernel tests: CUDA tensors where a GPU is present, else Triton's interpreter on CPU tensors.

``TRITON_INTERPRET=1`` must be set before the kernels are defined (Triton reads it when
``@triton.jit`` runs), so it is set here, at collection time, before any test module
imports :mod:`crossent.kernels.triton_engine`.
"""

import importlib.util
import os
import warnings

import pytest
import torch

if importlib.util.find_spec("triton") is None:
    collect_ignore_glob = ["test_*.py"]  # noqa: F841 (read by pytest)
elif not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from crossent import kernels  # noqa: E402
from crossent.kernels import _launch  # noqa: E402

# Stand-ins for long rows at interpreter scale: streamed in BLOCK = 16 pieces.
LAYOUTS = {
    "on_chip": None,
    "stream": _launch.TileConfig(False, 2, 16, 4),
    "stream_fwd": _launch.TileConfig(False, 1, 16, 4, reverse=False),
    "persistent": _launch.TileConfig(False, 2, 16, 4, persistent=True),
    "stream_lane": _launch.TileConfig(False, 2, 16, 4, lane=True),
}


def use_layout(monkeypatch, name):
    """Make every launch use the row layout ``name`` of LAYOUTS."""
    config = LAYOUTS[name]
    if config is not None:
        monkeypatch.setattr(_launch, "tile_config", lambda *args: config)


@pytest.fixture(autouse=True)
def triton_backend():
    """Every kernel test runs with the kernel forced on, and restores 'auto' afterwards."""
    kernels.set_backend("triton")
    with warnings.catch_warnings():
        # The interpreter evaluates both sides of tl.where with numpy (log(0), 0 * inf in
        # the branch not taken); the kernels never let those values through.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        yield
    kernels.set_backend("auto")


@pytest.fixture(params=["on_chip", "stream"])
def layout(request, monkeypatch):
    """Run with rows held on chip, then streamed in pieces as long rows are."""
    use_layout(monkeypatch, request.param)
    return request.param
