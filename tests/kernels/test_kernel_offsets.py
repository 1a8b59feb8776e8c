"""int64 class offsets: ``K * stride`` past 2^31 (the row offsets: test_kernel_dispatch)."""

import pytest

pytest.importorskip("triton", reason="the kernel tests need Triton: pip install 'crossent[gpu]'")


import torch
import triton
import triton.language as tl

from crossent.kernels._rows_jit import col_offsets
from tests.kernels._util import DEVICE


@triton.jit
def _col_offsets_kernel(out_ptr, cols_ptr, n, s_k, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    cols = tl.load(cols_ptr + i, mask=i < n, other=0)
    tl.store(out_ptr + i, col_offsets(cols, s_k), mask=i < n)


def test_col_offsets_are_int64_past_two_to_the_31():
    # classes of a (1, 128256, 20000) tensor (K-dimensional loss): class stride D = 20000
    s_k = 20000
    cols = torch.tensor([0, 1, 107374, 128255], dtype=torch.int32, device=DEVICE)
    out = torch.empty(4, dtype=torch.int64, device=DEVICE)
    _col_offsets_kernel[(1,)](out, cols, 4, s_k, BLOCK=4)
    assert out.tolist() == [c * s_k for c in cols.tolist()]
    assert out.max().item() > 2**31
