"""Vocabulary-parallel losses on 2 and 4 real gloo processes against one process, float64.

Three launches, each looping over many cases inside its workers (see ``_cases.py``): every
rank's loss must equal the single-process loss on the full logits and its gradient must equal
the columns it holds, for every engine term and option; only row statistics may cross the
group (no all-reduce larger than ``3 N`` floats) and backward must not communicate.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

import crossent
from crossent.distributed import term_losses, vocab_parallel_linear_loss, vocab_parallel_loss
from crossent.terms import FocalTerm
from tests.distributed._cases import (
    REDUCTIONS,
    Data,
    distillation_cases,
    every_term,
    term_case,
    variants,
)
from tests.distributed._harness import Checker, columns, launch, leaf

N = 7


def _finish(chk: Checker, rank: int, rows: int) -> None:
    """Raise the mismatches; check that collectives stayed O(N) and backward silent."""
    if chk.largest_reduce > 3 * rows:
        chk.failures.append(f"an all-reduce carried {chk.largest_reduce} > 3N = {3 * rows}")
    if chk.backward_calls:
        chk.failures.append(f"backward issued {chk.backward_calls} collectives (expected 0)")
    chk.raise_failures(rank)


def _dtensor_cases(chk: Checker, data: Data, world: int) -> None:
    """DTensor logits sharded on the class dim, the way ``loss_parallel`` takes them."""
    mesh = init_device_mesh("cpu", (world,))
    index = distribute_tensor(data.index, mesh, [Replicate()])
    for name, target, ref_target in (
        ("focal", index, data.index),
        ("brier", distribute_tensor(data.probs, mesh, [Shard(-1)]), data.probs),
    ):
        logits = distribute_tensor(data.logits.clone(), mesh, [Shard(-1)]).requires_grad_()
        ref_in = leaf(data.logits)
        ref = crossent.get_loss(name)(ref_in, ref_target)
        chk.run(f"DTensor {name}", partial(vocab_parallel_loss, logits, target, name), ref)
        chk.close(f"DTensor {name}", "gradient", logits.grad.full_tensor(), ref_in.grad)


def _inplace(param: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """The loss of a non-leaf copy of ``param``, its gradient written over the copy."""
    return vocab_parallel_loss(param * 1.0, target, name, inplace_backward=True)


def _other_inputs(chk: Checker, data: Data, cols: slice) -> None:
    """Batch dims, in-place backward, a Term object, float32 logits."""
    n, k = data.logits.shape
    batched = data.logits[:6].reshape(2, 3, k)
    for name in ("ce", "brier"):
        for reduction in ("none", "mean"):
            ref_in = leaf(batched)
            ref = crossent.get_loss(name, reduction=reduction)(ref_in.reshape(6, k), data.index[:6])
            ref = ref.reshape(2, 3) if reduction == "none" else ref
            local = leaf(batched[..., cols])
            target = data.index[:6].reshape(2, 3)
            case = f"(2, 3, K) {name} {reduction}"
            chk.run(
                case, partial(vocab_parallel_loss, local, target, name, reduction=reduction), ref
            )
            chk.close(case, "gradient", local.grad, ref_in.grad[..., cols])
    for name in ("ce", "focal", "mae"):  # the gradient overwrites a non-leaf's storage
        ref_in = leaf(data.logits)
        ref = crossent.get_loss(name)(ref_in, data.index)
        param = leaf(data.logits[:, cols])
        chk.run(
            f"inplace {name}",
            partial(_inplace, param, data.index, name),
            ref,
        )
        chk.close(f"inplace {name}", "gradient", param.grad, ref_in.grad[:, cols])
    ref_in = leaf(data.logits)
    ref = crossent.focal_loss(ref_in, data.index, gamma=2.0, reduction="sum")
    local = leaf(data.logits[:, cols])
    chk.run(
        "Term", lambda: vocab_parallel_loss(local, data.index, FocalTerm(2.0), reduction="sum"), ref
    )
    chk.close("Term", "gradient", local.grad, ref_in.grad[:, cols])
    loose = Checker(rtol=1e-5, atol=1e-6)
    for name in ("ce", "sce"):
        ref_in = leaf(data.logits.float())
        ref = crossent.get_loss(name)(ref_in, data.index)
        local = leaf(data.logits[:, cols].float())
        call = partial(vocab_parallel_loss, local, data.index, name)
        loose.run(f"float32 {name}", call, ref)
        loose.close(f"float32 {name}", "gradient", local.grad, ref_in.grad[:, cols])
    half = Checker(rtol=2e-2, atol=1e-3)  # bf16: computed in float32, gradient rounded
    for name in ("ce", "focal"):
        ref_in = leaf(data.logits.bfloat16())
        ref = crossent.get_loss(name)(ref_in, data.index)
        local = leaf(data.logits[:, cols].bfloat16())
        half.run(f"bf16 {name}", partial(vocab_parallel_loss, local, data.index, name), ref)
        half.close(f"bf16 {name}", "gradient", local.grad, ref_in.grad[:, cols])
    chk.failures += loose.failures + half.failures


def _every_term_worker(rank: int, world: int) -> None:
    widths = (5, 6)
    cols = columns(rank, widths)
    data = Data.build(N, sum(widths))
    chk = Checker()
    every_term(chk, data, cols)
    distillation_cases(chk, data, cols)
    _dtensor_cases(chk, data, world)
    _other_inputs(chk, data, cols)
    _finish(chk, rank, N)


def test_every_term_on_two_uneven_ranks_equals_one_process(tmp_path):
    launch(_every_term_worker, 2, str(tmp_path / "init"))


# World 4: widths 4, 0, 5, 2 (one rank holds nothing), consecutive or in a permuted order.
_WIDTHS = (4, 0, 5, 2)
_STARTS = (7, 0, 0, 5)
_NAMES = ("ce", "focal", "gce", "mae", "rce", "brier", "sce")


def _special_targets(chk: Checker, data: Data, cols: slice, held: slice) -> None:
    """All targets on one rank's columns; a batch whose every target is ignored."""
    gen = torch.Generator().manual_seed(3)
    on_one = torch.randint(held.start, held.stop, (data.index.shape[0],), generator=gen)
    ignored = torch.full_like(data.index, -100)
    for label, index in (("targets on one rank", on_one), ("all ignored", ignored)):
        special = Data(data.logits, index, data.probs, data.weight)
        for name in ("ce", "focal", "mae", "brier"):
            for reduction in REDUCTIONS:
                term_case(chk, special, cols, name, label, {}, "index", reduction)
                options = {"weight": "slice", "label_smoothing": 0.1}
                term_case(
                    chk, special, cols, name, f"{label}, smoothed", options, "index", reduction
                )


def _linear_cases(chk: Checker, k: int, cols: slice, names: tuple[str, ...]) -> None:
    """The fused layer: weight, bias and (reduced) hidden gradients against one process.

    Besides the row statistics (at most ``3 x 4`` floats per chunk of 4 rows) the only
    collective is the all-reduce of ``grad_hidden`` (``N x H``); backward communicates only
    for ``reduction="none"`` (it sweeps again with each row's ``grad_output``).
    """
    n, h = 9, 4
    swept = {"mean": Checker(), "none": Checker()}
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(n, h, generator=gen, dtype=torch.float64)
    w = torch.randn(k, h, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    index = torch.randint(0, k, (n,), generator=gen)
    index[3] = -100
    probs = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    for name in names:
        for kind, target, local_target in (
            ("index", index, index),
            ("probs", probs, probs[:, cols]),
        ):
            for reduction in ("mean", "none"):
                for reduce_hidden in (True, False):
                    case = f"linear {name} {kind} {reduction} reduce_grad_hidden={reduce_hidden}"
                    xr, wr, br = leaf(x), leaf(w), leaf(b)
                    logits = torch.nn.functional.linear(xr, wr, br)
                    options = {"reduction": reduction}
                    if name == "sgce" and kind == "probs":  # its default "others" needs indices
                        options["smoothing"] = "uniform"
                    ref = crossent.get_loss(name, **options)(logits, target)
                    xl, wl, bl = leaf(x), leaf(w[cols]), leaf(b[cols])
                    swept[reduction].run(
                        case,
                        partial(
                            vocab_parallel_linear_loss,
                            xl,
                            wl,
                            local_target,
                            name,
                            local_bias=bl,
                            chunk_size=4,
                            reduce_grad_hidden=reduce_hidden,
                            **options,
                        ),
                        ref,
                    )
                    grad_x = xl.grad.clone()
                    if not reduce_hidden:  # the caller's reduction (Megatron's copy_to region)
                        dist.all_reduce(grad_x)
                    chk.close(case, "grad hidden", grad_x, xr.grad)
                    chk.close(case, "grad weight", wl.grad, wr.grad[cols])
                    chk.close(case, "grad bias", bl.grad, br.grad[cols])
    for lin in swept.values():
        chk.failures += lin.failures
        chk.cases += lin.cases
        if lin.largest_reduce > n * h:
            chk.failures.append(f"linear: an all-reduce carried {lin.largest_reduce} > N H")
    if swept["mean"].backward_calls:
        chk.failures.append("linear, mean: backward communicated")


def _uneven_worker(rank: int, world: int) -> None:
    k = sum(_WIDTHS)
    chk = Checker()
    for starts in (None, _STARTS):
        cols = columns(rank, _WIDTHS, starts)
        layout = {} if starts is None else {"vocab_start": starts[rank]}
        # row 1: all of rank 0's columns are -inf; row 4: the first column of every rank
        first = columns(0, _WIDTHS, starts)
        heads = [columns(r, _WIDTHS, starts).start for r in range(world) if _WIDTHS[r]]
        masks = {1: list(range(first.start, first.stop)), 4: heads}
        data = Data.build(N, k, seed=1, masks=masks)
        for name in _NAMES:
            chosen = [v for v in variants(name, data.weight) if v[0] in _KEPT]
            for label, options, kind in chosen:
                for reduction in ("mean", "none"):
                    term_case(chk, data, cols, name, label, options, kind, reduction, **layout)
    cols = columns(rank, _WIDTHS)
    _special_targets(chk, Data.build(N, k, seed=2), cols, columns(2, _WIDTHS))
    _linear_cases(chk, k, cols, ("ce", "focal", "brier"))
    _finish(chk, rank, N)


_KEPT = ("plain", "others smoothing", "sliced weight, smoothing", "probabilities")


def test_uneven_shards_on_four_ranks_with_an_empty_rank(tmp_path):
    launch(_uneven_worker, 4, str(tmp_path / "init"))


def _expect(error: type[Exception], match: str, call) -> None:
    with pytest.raises(error, match=match):
        call()


def _refusals(rank: int, data: Data, cols: slice) -> None:
    """Bad arguments raise on every rank (the same error, or the rank that failed named)."""
    local = data.logits[:, cols]
    short = data.weight[:3]
    _expect(
        ValueError,
        r"`weight`.*lengths \[11, 3\]|lengths \[3, 11\]",
        lambda: vocab_parallel_loss(local, data.index, weight=data.weight if rank else short),
    )
    bad_target = data.index if rank == 0 else data.index[:3]
    if rank == 1:
        _expect(ValueError, "`target`", lambda: vocab_parallel_loss(local, bad_target))
    else:
        _expect(RuntimeError, r"rank\(s\) \[1\]", lambda: vocab_parallel_loss(local, bad_target))
    rows = local if rank == 0 else local[:4]
    _expect(ValueError, "same rows", lambda: vocab_parallel_loss(rows, data.index[: rows.shape[0]]))
    _expect(ValueError, "tile", lambda: vocab_parallel_loss(local, data.index, vocab_start=0))
    _expect(
        ValueError,
        "on every rank or on none",
        lambda: vocab_parallel_loss(local, data.index, vocab_start=0 if rank == 0 else None),
    )
    _expect(ValueError, "TermModule", lambda: vocab_parallel_loss(local, data.index, "nce"))
    _expect(
        ValueError,
        "smoothing",
        lambda: vocab_parallel_loss(
            local, data.probs[:, cols], label_smoothing=0.1, smoothing="others"
        ),
    )
    out_of_range = data.index.clone()
    out_of_range[0] = 11
    _expect(ValueError, r"\[0, 11\)", lambda: vocab_parallel_loss(local, out_of_range))
    soft = leaf(data.probs[:, cols])
    _expect(NotImplementedError, "require grad", partial(vocab_parallel_loss, local, soft))
    logits = leaf(local)
    loss = vocab_parallel_loss(logits, data.index, "focal")
    _expect(
        NotImplementedError,
        "double backward",
        lambda: torch.autograd.grad(loss, logits, create_graph=True),
    )


def _linear_and_refusals_worker(rank: int, world: int) -> None:
    widths = (5, 6)
    cols = columns(rank, widths)
    data = Data.build(N, sum(widths))
    _refusals(rank, data, cols)
    chk = Checker()
    every_term(chk, data, cols, names=["ce"])  # the group still works after the refusals
    _linear_cases(chk, sum(widths), cols, tuple(term_losses()))
    _finish(chk, rank, N)


def test_fused_linear_layer_and_refusals_on_two_ranks(tmp_path):
    launch(_linear_and_refusals_worker, 2, str(tmp_path / "init"))


def test_without_a_process_group_the_error_says_how_to_start_one():
    if dist.is_initialized():
        pytest.skip("a default process group is initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        vocab_parallel_loss(torch.zeros(2, 3), torch.tensor([0, 1]))
