r"""One vocabulary-parallel engine call on a described group, and its autograd problem.

:func:`sharded_term_loss` prepares a rank's targets and runs
:func:`crossent.distributed.rows.sharded_pass` through the engine's autograd function
(:class:`crossent.core.autograd.EngineFunction`): the gradient is formed in the forward pass
and handed out by backward without communication.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from crossent.core.autograd import EngineFunction
from crossent.core.problem import EngineOptions, reduce_losses
from crossent.core.targets import check_smoothing
from crossent.core.term import Term
from crossent.distributed.local import LocalCall, prepare
from crossent.distributed.rows import sharded_pass
from crossent.distributed.shard import Shard
from crossent.distributed.targets import ShardedTargets


@dataclass(frozen=True)
class _ShardedProblem:
    """One vocabulary-parallel engine call (the :class:`crossent.core.autograd.Problem`)."""

    shard: Shard
    targets: ShardedTargets
    opts: EngineOptions

    @property
    def reduction(self) -> str:
        return self.opts.reduction

    @property
    def inplace_backward(self) -> bool:
        return self.opts.inplace_backward

    def compute(self, z: Tensor, want_grad: bool) -> tuple[Tensor, Tensor | None]:
        losses, grad = sharded_pass(z, self.targets, self.opts, self.shard, want_grad)
        return reduce_losses(losses, self.targets, self.reduction), grad

    def differentiable(self, z: Tensor) -> Tensor:
        raise NotImplementedError(
            "crossent.distributed: double backward (create_graph=True) is not available for "
            "vocabulary-parallel losses"
        )

    def none_factor(self, grad_output: Tensor, grad: Tensor) -> Tensor:
        return grad_output.reshape(grad.shape[0], 1)


def sharded_term_loss(
    shard: Shard,
    local: LocalCall,
    term: Term,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
) -> Tensor:
    """The loss of a checked local call on a described group (see :func:`vocab_parallel_loss`)."""
    eps = check_smoothing(label_smoothing, smoothing, shard.num_classes)
    targets = prepare(shard, local, ignore_index, eps, smoothing)
    opts = EngineOptions(
        term, None, None, ignore_index, reduction, eps, smoothing, z_loss, local.inplace
    )
    problem = _ShardedProblem(shard, targets, opts)
    z = local.z
    if torch.is_grad_enabled() and z.requires_grad:
        loss = EngineFunction.apply(z, problem)
    else:
        loss = problem.compute(z.detach(), want_grad=False)[0]
    return loss.reshape(local.batch) if reduction == "none" else loss
