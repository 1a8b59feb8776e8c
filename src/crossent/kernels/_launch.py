"""The Python side of the kernel template: launch configuration and one launch.

Tile shapes are chosen from ``K``, the logits' dtype and the path (no autotuning: an
autotuner would run an in-place kernel several times on the same buffer; docs/design.md,
"GPU kernels").
The choices were measured on an H100 (``benchmarks/bench_gpu.py --tune``); see
``docs/gpu.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from crossent.kernels._spec import TermSpec
from crossent.kernels.triton_engine import loss_kernel

# A row of up to this many (power-of-two padded) classes is held in registers (16 float32
# per thread at 16 warps, no spills in ptxas's report for sm_90); the full path keeps more
# temporaries per element, so its limit is lower.
ON_CHIP_FAST = 8192
ON_CHIP_FULL = 4096
# Elements of a register tile on the on-chip path (several rows per program for small K).
TILE_ELEMENTS = 2048

PATH_FAST = 0
PATH_LINEAR = 1
PATH_FULL = 2


@dataclass(frozen=True)
class TileConfig:
    """How rows are mapped to programs.

    Attributes:
        on_chip: rows are held in registers (1 read + 1 write) rather than streamed.
        rows: rows per program (a power of two).
        block: classes per tile (a power of two; ``>= K`` when ``on_chip``).
        num_warps: warps per program.
        persistent: a grid of ``programs_per_sm`` programs per multiprocessor striding over
            the rows (streamed path only).
        programs_per_sm: see ``persistent``.
        reverse: the gradient pass walks each row from its end (the pieces read last in the
            statistics pass are the likeliest to be in L2).
        lane: the statistics pass keeps a running max and sum per lane, combined once per row
            (no reduction inside the loop), instead of reducing every tile.
    """

    on_chip: bool
    rows: int
    block: int
    num_warps: int
    persistent: bool = False
    programs_per_sm: int = 1
    reverse: bool = True
    lane: bool = False


@dataclass(frozen=True)
class Problem:
    """The non-tensor settings of one launch (see :func:`launch`)."""

    spec: TermSpec
    path: int
    soft: bool
    has_weight: bool
    on: float
    off: float
    p_mul: float
    p_add: float
    has_smooth: bool
    z_loss: float


def tile_config(k: int, path: int, soft: bool = False) -> TileConfig:
    """The tile shape for rows of ``k`` classes on ``path`` (soft targets: ``soft``).

    Streamed rows, measured on an H100 (``benchmarks/bench_gpu.py --tune``, bf16, K = 32000,
    128256, 256000; see ``docs/gpu.md``): the one-hot fast path is fastest with 16384-wide
    tiles, 32 warps, a reduction per tile and the gradient pass walking backwards; the
    full-row paths (smoothing, soft targets), which keep more per element, with 4096-wide
    tiles and 16 warps up to ``K = 64k`` and beyond with 8192-wide tiles, 32 warps and
    per-lane statistics. The persistent grid lost everywhere; it is kept for tuning.
    """
    block = triton.next_power_of_2(max(k, 1))
    limit = ON_CHIP_FAST if path == PATH_FAST else ON_CHIP_FULL
    if block <= limit:
        rows = max(1, TILE_ELEMENTS // block)
        warps = min(16, max(4, block * rows // 512))
        return TileConfig(True, rows, block, warps)
    if path == PATH_FAST:
        return TileConfig(False, 1, 16384, 32)
    if k <= 65536:
        return TileConfig(False, 1, 4096, 16)
    return TileConfig(False, 1, 8192, 32, lane=True)


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def launch(
    mode: int,
    z: Tensor,
    out: Tensor,
    target: Tensor,
    elem_weight: Tensor | None,
    class_weight: Tensor | None,
    losses: Tensor,
    stats: Tensor,
    scale: Tensor | None,
    scale_mul: float,
    problem: Problem,
    config: TileConfig | None = None,
) -> None:
    """Run the kernel template once.

    Args:
        mode: ``MODE_LOSS``, ``MODE_GRAD`` or ``MODE_FUSED`` of
            :mod:`crossent.kernels.triton_engine`.
        z: logits ``(N, K, D)`` (any strides).
        out: gradient ``(N, K, D)`` with the strides of ``z`` (may be ``z`` itself).
        target: class indices ``(N * D,)`` int64 with -1 where ignored, or soft targets
            ``(N, K, D)``.
        elem_weight: ``(N * D,)`` float32 per-row target weight ``w_t`` (fast path).
        class_weight: ``(K,)`` float32 per-class multipliers (full path), or ``None``.
        losses: ``(N * D,)`` float32 per-row loss (written unless ``MODE_GRAD``).
        stats: ``(N * D, 3)`` float32 ``(m, log d, S)`` (written, or read in ``MODE_GRAD``).
        scale: gradient factor, 0-dim or ``(N * D,)`` float32 tensor, or ``None``.
        scale_mul: float multiplying the gradient factor.
        problem: the non-tensor settings.
        config: tile shape; :func:`tile_config` when ``None``.
    """
    n, k, d = z.shape
    rows = n * d
    cfg = config or tile_config(k, problem.path, problem.soft)
    spec = problem.spec
    soft = target if problem.soft else z
    scale_mode = 0 if scale is None else (1 if scale.dim() == 0 else 2)
    n_tiles = triton.cdiv(rows, cfg.rows)
    grid = n_tiles
    if cfg.persistent and not cfg.on_chip:
        grid = min(n_tiles, _sm_count(z.device) * cfg.programs_per_sm)
    loss_kernel[(grid,)](
        z, out, target if not problem.soft else losses, soft,
        elem_weight if elem_weight is not None else losses,
        class_weight if class_weight is not None else losses,
        losses, stats, scale if scale is not None else losses,
        rows, k, d, z.stride(0), z.stride(2), z.stride(1),
        soft.stride(0), soft.stride(2), soft.stride(1),
        spec.a0, spec.a1, spec.a2, problem.on, problem.off, problem.p_mul, problem.p_add,
        problem.z_loss, scale_mul,
        TERM=spec.code, MODE=mode, SOFT=problem.soft, PATH=problem.path,
        VANISH=spec.vanishes, HAS_WEIGHT=problem.has_weight, HAS_SMOOTH=problem.has_smooth,
        HAS_ZLOSS=problem.z_loss != 0.0, SCALE_MODE=scale_mode, ROWS=cfg.rows, BLOCK=cfg.block,
        ON_CHIP=cfg.on_chip, PERSISTENT=cfg.persistent and not cfg.on_chip, REVERSE=cfg.reverse,
        LANE=cfg.lane,
        num_warps=cfg.num_warps,
    )  # fmt: skip
