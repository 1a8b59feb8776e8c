r"""Vocabulary-parallel losses: every engine term on logits sharded over the classes.

The public function is :func:`vocab_parallel_loss`; the per-chunk arithmetic is
:mod:`crossent.distributed.rows`, the targets :mod:`crossent.distributed.targets`.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import Tensor

from crossent import registry
from crossent.core import checks
from crossent.core.term import Term
from crossent.distributed.collectives import resolve_group
from crossent.distributed.distill import DISTILLATION, distillation
from crossent.distributed.local import (
    LOCAL_ERRORS,
    check_local,
    describe_call,
    unwrap_dtensors,
)
from crossent.distributed.sharded import sharded_term_loss
from crossent.nn import TermModule

_ENGINE_DEFAULTS: dict[str, Any] = {
    "weight": None,
    "class_scale": None,
    "ignore_index": -100,
    "reduction": "mean",
    "label_smoothing": 0.0,
    "smoothing": "uniform",
    "z_loss": 0.0,
    "inplace_backward": False,
}


def term_and_options(loss: object, options: dict[str, Any]) -> tuple[Term, dict[str, Any]]:
    """The engine term of ``loss`` (a registry name or spec, or a term) and its engine settings.

    Raises:
        ValueError: for a registry loss that is not one engine term (its module is not a
            :class:`crossent.nn.TermModule`), an unknown name or a bad hyper-parameter.
    """
    if isinstance(loss, Term):
        unknown = sorted(set(options) - set(_ENGINE_DEFAULTS))
        if unknown:
            raise ValueError(
                f"Unknown argument `{unknown[0]}` for a term: expected one of "
                f"{', '.join(_ENGINE_DEFAULTS)}"
            )
        return loss, _without_span({**_ENGINE_DEFAULTS, **options})
    if not isinstance(loss, str):
        raise TypeError(f"Expected `loss` to be a registry name or a Term, but got {loss!r}")
    if not issubclass(registry.loss_class(registry.parse_spec(loss)[0]), TermModule):
        raise ValueError(
            f"Expected `loss` to be one engine term ({', '.join(term_losses())}; "
            f"vocab_parallel_loss also takes 'distill'), but got {loss!r}: its module is not a "
            "crossent.nn.TermModule"
        )
    module = registry.get_loss(loss, **options)  # validates names and hyper-parameters
    settings = _without_span({**_ENGINE_DEFAULTS, **module.engine_options()})
    settings["inplace_backward"] = bool(getattr(module, "inplace_backward", False))
    return module.term(), settings


def _without_span(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings``, refused when they ask for span smoothing (a sequence's neighbours' tags)."""
    if settings.get("smoothing") == "span":
        raise checks.fail(
            "smoothing", "'uniform' or 'others' for the vocabulary-parallel losses", "span"
        )
    return settings


def term_losses() -> list[str]:
    """The registry names that run vocabulary-parallel as one engine term.

    Example:
        >>> "brier" in term_losses() and "nce" not in term_losses()
        True
    """
    names = registry.available_losses()
    return [name for name in names if issubclass(registry.loss_class(name), TermModule)]


def _engine_loss(
    logits: object,
    target: object,
    term: Term,
    group: dist.ProcessGroup,
    vocab_start: object,
    settings: dict[str, Any],
) -> Tensor:
    reduction = checks.check_reduction(settings["reduction"])
    z_loss = checks.check_real("z_loss", settings["z_loss"], low=0.0)
    ignore_index = checks.check_ignore_index(settings["ignore_index"])
    local, error = None, None
    try:
        local = check_local(
            logits,
            target,
            term,
            settings["weight"],
            settings["class_scale"],
            settings["inplace_backward"],
        )
    except LOCAL_ERRORS as err:
        error = err
    shard = describe_call(group, local, error, vocab_start)
    assert local is not None
    return sharded_term_loss(
        shard,
        local,
        term,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=settings["label_smoothing"],
        smoothing=settings["smoothing"],
        z_loss=z_loss,
    )


def vocab_parallel_loss(
    local_logits: Tensor,
    target: Tensor,
    loss: str | Term = "ce",
    *,
    group: dist.ProcessGroup | None = None,
    vocab_start: int | None = None,
    **options: Any,
) -> Tensor:
    r"""Any engine loss of logits sharded over the vocabulary (tensor parallel), on each rank.

    Each rank of ``group`` holds a contiguous range of columns ``[a, a + K_local)`` of the
    logits ``(*, K)`` (the class dim last, as a language model's output layer gives them;
    ranks may hold unequal widths). Every rank gets the loss of the full logits,

    .. math::

        s = z - \operatorname{lse}(z), \qquad
        \ell = \sum_k w_k F(s_k, P_k) + \lambda \operatorname{lse}(z)^2, \qquad
        \frac{\partial \ell}{\partial z_j} = w_j G_j - q_j \Big(\sum_k w_k G_k
            - 2\lambda \operatorname{lse}(z)\Big),

    equal to ``crossent.get_loss(loss, **options)(full_logits, full_target)`` to float
    rounding, and backward gives each rank the gradient of its own columns. Only row
    statistics cross the group: per chunk of rows an all-reduce MAX of the row maxima, an
    all-reduce SUM of the shifted exponential sums (with the target logit where the one-hot
    route applies) and, for the other routes, one of the term's row sums ``(sum w F, sum w G)``
    — a few floats per row, never a tensor of the logits' size. The gradient is formed in
    the forward pass; backward hands it out without communication (see
    docs/distributed.md for the counts, and :mod:`crossent.distributed.rows` for the
    arithmetic).

    Args:
        local_logits: this rank's columns ``(*, K_local)``, or a DTensor ``(*, K)`` sharded on
            the last dim (``Shard(-1)``, as ``torch.distributed.tensor.parallel.loss_parallel``
            takes it; its mesh's group is used).
        target: global class indices ``(*)`` in ``[0, K)`` or ``ignore_index``, the same on
            every rank; or this rank's columns of probability targets ``(*, K_local)`` (for
            ``"distill"``: this rank's columns of the teacher's logits).
        loss: a registry name or spec whose module is one engine term — ``ce``, ``focal``,
            ``gce``, ``sgce``, ``mae``, ``unhinged``, ``rce``, ``sce``, ``poly1``, ``erce``,
            ``brier`` (:func:`term_losses`) — or ``"distill"`` (the teacher sharded like the
            student), or a :class:`crossent.terms.Term`. Default ``"ce"``.
        group: the tensor-parallel process group (``None``: the default group).
        vocab_start: this rank's first class ``a``; ``None`` on every rank: the ranks hold
            consecutive ranges in rank order, found with one all-gather of the widths.
            Given on every rank, the ranges must tile ``[0, K)``.
        **options: the loss's own arguments, as :func:`crossent.get_loss` takes them
            (``gamma``, ``q``, ``label_smoothing``, ``smoothing``, ``z_loss``, ``reduction``,
            ``ignore_index``, ...). ``weight`` (and focal's ``alpha``) may be the full
            ``(K,)`` vector or this rank's slice ``(K_local,)``; a slice on any rank costs one
            more all-reduce of ``2N`` floats. For ``"distill"``: ``temperature``,
            ``divergence``, ``mix``, ``alpha``, ``ignore_index``, ``reduction`` and
            ``labels`` (class indices ``(*)``).

    Returns:
        The loss, the same on every rank (per row ``(*)`` for ``reduction="none"``).

    Raises:
        RuntimeError: without an initialised process group; on every rank when one rank's
            arguments are refused (that rank raises its own error).
        ValueError: for shards that do not tile ``[0, K)``, a different number of rows on some
            rank, or a bad argument.
        NotImplementedError: for double backward, or targets / weights that require grad.

    Example:
        >>> # on each of 2 ranks, after torch.distributed.init_process_group("gloo", ...)
        >>> local = full_logits.chunk(2, dim=-1)[rank].requires_grad_()  # doctest: +SKIP
        >>> loss = vocab_parallel_loss(local, target, "focal", gamma=2.0)  # doctest: +SKIP
        >>> loss.backward()  # local.grad: this rank's columns  # doctest: +SKIP

    References:
        Shoeybi et al., `Megatron-LM: Training Multi-Billion Parameter Language Models
        Using Model Parallelism <https://arxiv.org/abs/1909.08053>`_, 2019 (the
        vocabulary-parallel cross-entropy).
    """
    local_logits, target, group = unwrap_dtensors(local_logits, target, group)
    group = resolve_group(group)
    if isinstance(loss, str) and registry.loss_class(registry.parse_spec(loss)[0]) is DISTILLATION:
        return distillation(local_logits, target, loss, group, vocab_start, options)
    term, settings = term_and_options(loss, options)
    return _engine_loss(local_logits, target, term, group, vocab_start, settings)
