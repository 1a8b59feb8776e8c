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

from crossent import kernels

if importlib.util.find_spec("triton") is not None and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Stand-ins for long rows at interpreter scale: streamed in BLOCK = 16 pieces (TileConfig
# arguments; None: the library's own choice, rows held on chip at these sizes).
LAYOUTS = {
    "on_chip": None,
    "stream": {"on_chip": False, "rows": 2, "block": 16, "num_warps": 4},
    "stream_fwd": {"on_chip": False, "rows": 2, "block": 16, "num_warps": 4, "reverse": False},
    "persistent": {"on_chip": False, "rows": 2, "block": 16, "num_warps": 4, "persistent": True},
    "stream_lane": {"on_chip": False, "rows": 2, "block": 16, "num_warps": 4, "lane": True},
}


def use_layout(monkeypatch, name):
    """Make every launch use the row layout ``name`` of LAYOUTS."""
    from crossent.kernels import _launch

    if LAYOUTS[name] is not None:
        config = _launch.TileConfig(**LAYOUTS[name])
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
