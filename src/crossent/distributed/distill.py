r"""Knowledge distillation with the student's and the teacher's logits sharded alike.

The loss of :func:`crossent.distillation_loss` (see it for the math): per row
``T^2 sum_k d(s_k, t_k)`` with ``s``, ``t`` the temperature-softened log-probabilities of the
student and the teacher, and with ``labels`` ``alpha CE(z, y) + (1 - alpha) D`` over the rows
whose label is not ``ignore_index``. The teacher's log-softmax over the whole vocabulary costs
two all-reduces of one float per row; the divergence is then an engine term with the teacher's
log-probabilities as its target (:func:`crossent.distributed.sharded.sharded_term_loss`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from crossent import nn, registry
from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.distributed.local import LOCAL_ERRORS, LocalCall, check_local, describe_call
from crossent.distributed.shard import Shard
from crossent.distributed.sharded import sharded_term_loss
from crossent.distributed.stats import global_log_softmax
from crossent.functional.distillation import divergence_term
from crossent.terms import CrossEntropyTerm

#: The registry's distillation module (``"distill"`` and its aliases).
DISTILLATION = nn.DistillationLoss


def _check_labels(labels: object, batch: tuple[int, ...]) -> Tensor | None:
    if labels is None:
        return None
    labels = checks.check_tensor("labels", labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"Expected `labels` to hold class indices (integers), got {labels.dtype}")
    if tuple(labels.shape) != batch:
        raise checks.fail("labels", f"to have shape {batch} (the logits' batch dims)", labels)
    return labels.reshape(-1).to(torch.int64)


def _kept(labels: Tensor, shard: Shard, ignore_index: int) -> Tensor:
    """Rows whose label is not ``ignore_index``; any other label must be in ``[0, K)``."""
    k = shard.num_classes
    keep = labels != ignore_index
    bad = keep & ((labels < 0) | (labels >= k))
    if bool(bad.any()):
        value = int(labels[bad][0])
        raise checks.fail(
            "labels", f"class indices in [0, {k}) or ignore_index={ignore_index}", value
        )
    return keep


def _reduce(per: Tensor, keep: Tensor | None, reduction: str) -> Tensor:
    """``none``, ``sum``, or the mean over kept rows (all rows without labels)."""
    if reduction == "none":
        return per
    total = per.sum()
    if reduction == "sum":
        return total
    if keep is None:
        return total / per.numel() if per.numel() else total
    return total / keep.sum().to(total.dtype).clamp_min(1)


def distillation(
    student: object,
    teacher: object,
    spec: str,
    group: dist.ProcessGroup,
    vocab_start: object,
    options: dict[str, Any],
) -> Tensor:
    """:func:`crossent.distributed.vocab_parallel_loss` for ``loss="distill"``."""
    options = dict(options)
    labels = options.pop("labels", None)
    module = registry.get_loss(spec, **options)  # validates the hyper-parameters
    temp, term = module.temperature, divergence_term(module.divergence, module.mix)
    local, error, flat_labels = None, None, None
    try:
        student = checks.check_tensor("local_logits", student)
        teacher = checks.check_tensor("target", teacher)
        teacher = teacher.detach().to(compute_dtype(student.dtype))
        local = check_local(student, teacher, term)
        flat_labels = _check_labels(labels, local.batch)
    except LOCAL_ERRORS as err:
        error = err
    shard = describe_call(group, local, error, vocab_start)
    assert local is not None
    z = local.z / temp if temp != 1 else local.z
    soft = LocalCall(
        z, global_log_softmax(local.target / temp, shard), local.batch, None, None, False
    )
    per = sharded_term_loss(shard, soft, term, reduction="none").reshape(-1) * temp**2
    keep = None
    if flat_labels is not None:
        keep = _kept(flat_labels, shard, module.ignore_index)
        per = torch.where(keep, per, torch.zeros_like(per))
        if module.alpha > 0:
            hard = LocalCall(local.z, flat_labels, local.batch, None, None, False)
            ce = sharded_term_loss(
                shard, hard, CrossEntropyTerm(), ignore_index=module.ignore_index, reduction="none"
            )
            per = module.alpha * ce.reshape(-1) + (1 - module.alpha) * per
    return _reduce(per.reshape(local.batch), keep, module.reduction)
