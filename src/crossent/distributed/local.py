"""One rank's arguments of a vocabulary-parallel call: checked locally, then on the group.

:func:`check_local` checks what a rank can check alone (types, shapes against its own shard,
the values of its class-weight vectors) and returns the facts the group must share;
:func:`describe_call` runs the layout's all-gather (:func:`crossent.distributed.shard.describe`)
so that a failed check raises on every rank; :func:`prepare` then builds the rank's targets
once the vocabulary size is known. DTensor inputs are unwrapped by :func:`unwrap_dtensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate

from crossent.core import checks
from crossent.core.autograd import takes_formula, writes_in_place
from crossent.core.targets import check_input, check_log_target, promote_to_target
from crossent.core.term import Term
from crossent.distributed.shard import Shard, check_vocab_start, collective_device, describe
from crossent.distributed.targets import (
    ShardedTargets,
    check_vector_lengths,
    index_targets,
    prob_targets,
    vector_mode,
)

#: What a rank's own argument checks raise; caught and shared with the group by
#: :func:`describe_call`, then raised on every rank.
LOCAL_ERRORS = (TypeError, ValueError, NotImplementedError)


def refuse_formula(*others: Tensor | None) -> None:
    """Refuse other inputs that require grad (and transforms, tangents, compile tracing).

    The engine differentiates its formula then; the vocabulary-parallel losses give a
    gradient to the logits (or the layer) only.
    """
    if takes_formula((), others):
        raise NotImplementedError(
            "crossent.distributed: probability targets or class weights that require grad, "
            "torch.func transforms, forward-mode AD and torch.compile tracing are not supported "
            "by vocabulary-parallel losses (the gradient reaches the logits, or the layer, only)"
        )


@dataclass(frozen=True)
class LocalCall:
    """A rank's checked tensors: logits ``(N, K_local)``, target ``(N,)`` or ``(N, K_local)``.

    Attributes:
        z: the logits viewed as ``(N, K_local)`` (promoted to float64 for float64
            probabilities).
        target: class indices ``(N,)`` or probabilities ``(N, K_local)``.
        batch: the batch dims of the logits (the shape of ``reduction="none"``'s result).
        weight: class weights (full or the local slice), or ``None``.
        class_scale: focal's ``alpha`` (full or the local slice), or ``None``.
        inplace: whether the gradient overwrites the logits.
    """

    z: Tensor
    target: Tensor
    batch: tuple[int, ...]
    weight: Tensor | None
    class_scale: Tensor | None
    inplace: bool

    def facts(self) -> dict[str, int]:
        """What every rank must know of this one (see :func:`describe_call`)."""
        lengths = [-1 if v is None else v.shape[0] for v in (self.weight, self.class_scale)]
        return {
            "rows": self.z.shape[0],
            "target_kind": int(self.target.is_floating_point()),
            "weight_len": lengths[0],
            "class_scale_len": lengths[1],
        }


def _check_target(target: object, input: Tensor) -> Tensor:
    """Class indices shaped like the batch dims, or probabilities shaped like the logits."""
    target = checks.check_tensor("target", target)
    if target.is_floating_point():
        if target.shape != input.shape:
            raise checks.fail(
                "target", f"to have the shape of the local logits {tuple(input.shape)}", target
            )
        return target
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            "Expected `target` to be integer class indices or float probabilities, "
            f"but got {target.dtype}"
        )
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise checks.fail(
            "target",
            f"to have shape {tuple(input.shape[:-1])} (global class indices, the logits' batch "
            "dims)",
            target,
        )
    return target


def check_local(
    input: object,
    target: object,
    term: Term,
    weight: object = None,
    class_scale: object = None,
    inplace_backward: bool = False,
) -> LocalCall:
    """Check one rank's logits ``(*, K_local)`` (class dim last), target and class vectors."""
    input = check_input(input)
    target = _check_target(target, input)
    input = promote_to_target(input, target)
    batch = tuple(input.shape[:-1])
    n, width = math.prod(batch), input.shape[-1]
    weight, _ = vector_mode("weight", weight)
    class_scale, _ = vector_mode("alpha", class_scale)
    inplace = writes_in_place(input, inplace_backward)
    if inplace and not input.is_contiguous():
        raise checks.fail("input", "to be contiguous with inplace_backward=True", input)
    z = input.reshape(n, width) if inplace else input.contiguous().reshape(n, width)
    if target.is_floating_point():
        target = target.reshape(n, width)
        check_log_target(term, target)
        refuse_formula(target, weight, class_scale)
    else:
        target = target.reshape(n)
        refuse_formula(weight, class_scale)
    return LocalCall(z, target, batch, weight, class_scale, inplace)


def describe_call(
    group: dist.ProcessGroup,
    local: LocalCall | None,
    error: Exception | None,
    vocab_start: object,
    extra: dict[str, int] | None = None,
    device: torch.device | None = None,
) -> Shard:
    """Share every rank's layout and facts (one all-gather); raise on all ranks if one failed."""
    start = -1
    try:
        start = check_vocab_start(vocab_start)
    except LOCAL_ERRORS as err:
        error = error or err
    facts = (
        local.facts()
        if local is not None
        else {"rows": 0, "target_kind": 0, "weight_len": -1, "class_scale_len": -1}
    )
    facts.update(extra or {})
    width = local.z.shape[1] if local is not None else 0
    hint = local.z.device if local is not None else (device or torch.device("cpu"))
    where = collective_device(group, hint)
    return describe(group, width, start, facts, error, agree=("rows", "target_kind"), device=where)


def prepare(
    shard: Shard, local: LocalCall, ignore_index: int, eps: float, smoothing: str
) -> ShardedTargets:
    """This rank's targets once the layout is known (class vectors checked over the group)."""
    if local.target.is_floating_point():
        if smoothing == "others" and eps > 0:
            raise checks.fail("smoothing", "'uniform' for probability targets", smoothing)
        if ignore_index >= 0:
            raise checks.fail(
                "ignore_index",
                "to be negative (unused) for probability targets, as in PyTorch",
                ignore_index,
            )
    modes = (
        check_vector_lengths(shard, "weight", "weight"),
        check_vector_lengths(shard, "class_scale", "alpha"),
    )
    vectors = (local.weight, local.class_scale)
    vectors = tuple(None if v is None else v.to(local.z.device) for v in vectors)
    if local.target.is_floating_point():
        return prob_targets(shard, local.target, vectors, local.z)
    return index_targets(shard, local.target, local.z, vectors, modes, ignore_index)


def _class_mesh_dim(t: DTensor, name: str) -> int:
    """The mesh dim that shards ``t``'s last (class) dim; every other mesh dim replicates."""
    last = t.dim() - 1
    sharding = [i for i, p in enumerate(t.placements) if p.is_shard() and p.dim in (last, -1)]
    others = [p for i, p in enumerate(t.placements) if i not in sharding]
    if len(sharding) != 1 or any(not isinstance(p, Replicate) for p in others):
        raise checks.fail(
            name,
            "to be a DTensor sharded on its last (class) dim over one mesh dim, Shard(-1), and "
            "replicated over the others",
            f"placements {tuple(t.placements)}",
        )
    return sharding[0]


def unwrap_dtensors(logits: object, target: object, group: object) -> tuple[object, object, object]:
    """Local tensors and the process group of DTensor inputs (plain tensors pass through).

    DTensor logits must be sharded on the class dim (``Shard(-1)``) over one mesh dim, whose
    process group is used (``group`` must then be ``None``). A DTensor target is either sharded
    like the logits (probabilities, a teacher's logits) or replicated (class indices).
    """
    if not isinstance(logits, DTensor):
        if isinstance(target, DTensor):
            raise TypeError(
                "Expected `target` to be a plain tensor when the logits are not a DTensor"
            )
        return logits, target, group
    mesh_dim = _class_mesh_dim(logits, "local_logits")
    if group is not None:
        raise ValueError(
            "Expected `group` to be None with DTensor logits (the process group is the device "
            "mesh's), but got a group"
        )
    mesh = logits.device_mesh
    if isinstance(target, DTensor):
        if target.device_mesh != mesh:
            raise ValueError("Expected `target` to live on the device mesh of the logits")
        if target.is_floating_point():
            if _class_mesh_dim(target, "target") != mesh_dim:
                raise ValueError("Expected a DTensor `target` to be sharded like the logits")
        elif any(not isinstance(p, Replicate) for p in target.placements):
            raise checks.fail(
                "target", "class indices replicated on every rank", tuple(target.placements)
            )
        target = target.to_local()
    return logits.to_local(), target, mesh.get_group(mesh_dim)
