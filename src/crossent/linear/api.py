r"""Fused linear layer + loss: the loss of ``input @ linear_weight.T + bias`` without the logits.

A language model's output layer turns hidden states ``(N, H)`` into logits ``(N, K)`` with
``K`` in the tens or hundreds of thousands; the logits, their softmax and their gradient are
then the largest tensors of the step. These functions compute any registry loss on those
logits, and the gradients of the hidden states, the weight and the bias, while holding only
one chunk of rows of logits at a time (see :mod:`crossent.linear.fused` for the chunk
loop and its memory/speed trade-off, :mod:`crossent.linear.generic` for the losses that are
not one engine term, :mod:`crossent.linear.args` for the checks of the arguments).

* :func:`linear_cross_entropy`: drop-in for PyTorch 2.13's
  ``torch.nn.functional.linear_cross_entropy``, plus smoothing conventions, z-loss and the
  chunking and accumulation settings; unlike PyTorch's chunked path it supports probability
  targets, label smoothing and K-dimensional outputs.
* :func:`linear_loss`: the same for every registry loss, chosen by name: those built on an
  engine term (focal, generalized CE, poly-1, ...) in place, chunk by chunk, as the
  cross-entropy; the others (NLL, normalized, binary, distillation, overlap losses) through
  autograd per chunk.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from crossent import registry
from crossent.core import checks
from crossent.core.problem import EngineOptions
from crossent.core.targets import check_log_target, check_smoothing, prepare_targets
from crossent.linear.args import (
    check_accumulate_dtype,
    check_chunk_size,
    flatten_operands,
    flatten_target,
    from_torch_options,
)
from crossent.linear.autograd import run_fused
from crossent.linear.fused import FusedProblem, choose_chunk_rows
from crossent.linear.generic import forward_arguments, generic_problem
from crossent.nn import TermModule
from crossent.terms import CrossEntropyTerm, Term

_CE = CrossEntropyTerm()


def linear_term_loss(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    term: Term,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    class_scale: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    chunk_size: int | None = None,
    accumulate_dtype: torch.dtype | None = None,
) -> Tensor:
    """Any engine term's loss on ``input @ linear_weight.T + linear_bias``, fused and chunked.

    The building block of :func:`linear_cross_entropy` and :func:`linear_loss` (see them for
    the arguments); ``class_scale`` is a per-class multiplier outside the ``mean``'s
    denominator (focal's ``alpha``), checked by the caller.
    """
    layout = flatten_operands(input, linear_weight, linear_bias)
    target = flatten_target(layout, target)
    checks.check_devices(layout.x, weight=weight, class_scale=class_scale)
    reduction = checks.check_reduction(reduction)
    z_loss = checks.check_real("z_loss", z_loss, low=0.0)
    ignore_index = -100 if ignore_index is None else checks.check_ignore_index(ignore_index)
    n, classes = layout.logits_shape[:2]
    eps = check_smoothing(label_smoothing, smoothing, classes)
    weight = checks.check_class_weight(weight, classes)
    chunk_size = check_chunk_size(chunk_size)
    acc = check_accumulate_dtype(accumulate_dtype, linear_weight.dtype)
    logits = torch.empty((), dtype=input.dtype, device=input.device).expand(layout.logits_shape)
    targets = prepare_targets(logits, target, weight, class_scale, ignore_index, eps, smoothing)
    check_log_target(term, targets.probs)
    opts = EngineOptions(
        term, weight, class_scale, ignore_index, reduction, eps, smoothing, z_loss, True
    )
    kd = layout.w.shape[0]
    if chunk_size is None:
        hidden = layout.x.shape[1]
        device = input.device
        chunk_size = choose_chunk_rows(n, hidden, kd, input.dtype, linear_weight.dtype, acc, device)
    positions = math.prod(layout.logits_shape[2:])  # d1 * ... * dn (1 without them)
    problem = FusedProblem(targets, target, opts, classes, positions, chunk_size, acc)
    soft = target if target.is_floating_point() else None
    loss = run_fused(layout.x, layout.w, layout.b, problem, soft, weight, class_scale)
    if reduction == "none":
        loss = loss.reshape((*layout.batch, *layout.logits_shape[2:]))
    # float64 probabilities give a float64 loss, as the unfused loss (and PyTorch) give; the
    # chunks stay in the input's dtype.
    return loss.to(torch.promote_types(loss.dtype, target.dtype)) if soft is not None else loss


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = -100,
    label_smoothing: float = 0.0,
    smoothing: str = "uniform",
    z_loss: float = 0.0,
    chunk_size: int | None = None,
    accumulate_dtype: torch.dtype | None = None,
    options: Any = None,
) -> Tensor:
    r"""Cross-entropy of a linear layer's output, never materialising the ``N x C`` logits.

    Equal to ``crossent.cross_entropy(F.linear(input, linear_weight, linear_bias), target,
    ...)`` — and so to PyTorch's ``F.linear_cross_entropy`` and ``F.cross_entropy`` — to
    float rounding, values and gradients of ``input``, ``linear_weight`` and ``linear_bias``:

    .. math::

        z = x W^T + b, \qquad
        \ell = -\sum_k w_k P_k \log\operatorname{softmax}(z)_k + \lambda \operatorname{lse}(z)^2

    with ``P`` the (smoothed) target distribution and ``w`` the class weights, as in
    :func:`crossent.cross_entropy`. Reductions: ``mean`` divides by the sum of the target
    classes' weights over non-ignored rows (by the row count for probabilities), ``sum``,
    ``none``.

    How: rows are processed in chunks of ``chunk_size``; each chunk's logits are computed in
    the input dtype, turned into their gradient in place (the Triton kernel on CUDA, the
    engine elsewhere), then ``grad_input[c] = G @ W``, ``grad_W += G^T @ X_c``,
    ``grad_b += G.sum(0)``. All of it in the forward pass; backward only scales by
    ``grad_output`` (``reduction="none"`` runs the sweep again in backward, scaling each
    row by its own ``grad_output``). Under ``torch.no_grad()`` only the loss is computed.
    Peak extra memory: the gradients themselves, the accumulator, one chunk of logits.

    Drop-in for PyTorch 2.13's ``torch.nn.functional.linear_cross_entropy``: same positional
    and keyword arguments (``weight`` is the class weights; ``ignore_index=None`` means -100;
    ``options``, a ``torch.nn.LinearCrossEntropyOptions``, supplies ``chunk_size`` from its
    ``batch_chunk_size`` and ``accumulate_dtype`` from its ``acc_dtype``, its other fields do
    not apply). Beyond PyTorch's chunked path: probability targets, label smoothing in both
    conventions, class weights with smoothing, z-loss, K-dimensional outputs, ``retain_graph``.
    Deviations as :func:`crossent.cross_entropy` (an all-ignored batch gives 0, not NaN; half
    inputs give a float32 loss; negative class weights raise); ``input`` may also have
    several batch dims ``(*, H)`` (PyTorch: 1 or 2 dims).

    Args:
        input: hidden states ``(H,)``, ``(N, H)`` or ``(*, H)``; ``(N, H)`` with a
            K-dimensional ``linear_weight``.
        linear_weight: ``(C, H)``, or ``(C, d1, ..., dn, H)`` for K-dimensional logits
            ``(N, C, d1, ..., dn)``. Same dtype and device as ``input``.
        target: class indices ``(*)`` / ``(N, d1, ..., dn)`` in ``[0, C)`` or
            ``ignore_index``, or probabilities ``(*, C)`` / ``(N, C, d1, ..., dn)``.
        linear_bias: ``(C,)`` or ``(C, d1, ..., dn)``. Default None.
        weight: class weights ``(C,)``, finite and non-negative. Default None.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.
        ignore_index: class index that contributes nothing (``None``: -100). Default -100.
        label_smoothing: ``eps`` in [0, 1]. Default 0.
        smoothing: ``"uniform"`` (``eps/C`` to every class, PyTorch) or ``"others"``
            (``eps/(C-1)`` to every other class). Default ``"uniform"``.
        z_loss: ``lam >= 0``, adds ``lam * logsumexp(z)^2`` per non-ignored row. Default 0.
        chunk_size: rows per chunk; ``None`` chooses from ``C``, ``H``, the dtypes and the
            free memory (:func:`crossent.linear.fused.choose_chunk_rows`). Larger is
            faster (each chunk reads and writes the weight gradient once), smaller is leaner.
            Default None.
        accumulate_dtype: dtype in which the weight and bias gradients are summed over
            chunks: ``None`` for float32 (float64 for float64 weights), or the weight's dtype
            for the leanest memory (bf16 sums over many chunks drift). Default None.
        options: PyTorch's ``LinearCrossEntropyOptions``, accepted for compatibility (see
            above). Default None.

    Shape:
        - input: ``(H)``, ``(N, H)`` or ``(*, H)``
        - linear_weight: ``(C, H)`` or ``(C, d1, ..., dn, H)``
        - target: ``()``, ``(N)``, ``(*)`` or ``(N, d1, ..., dn)`` indices; ``(C)``,
          ``(N, C)``, ``(*, C)`` or ``(N, C, d1, ..., dn)`` probabilities
        - output: scalar, or the target-index shape with ``reduction="none"``

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent.linear import linear_cross_entropy
        >>> x = torch.randn(6, 4, requires_grad=True)
        >>> w = torch.randn(10, 4, requires_grad=True)
        >>> t = torch.tensor([0, 3, 9, 1, 1, 2])
        >>> loss = linear_cross_entropy(x, w, t, chunk_size=4)
        >>> ref = torch.nn.functional.cross_entropy(x @ w.T, t)
        >>> torch.allclose(loss, ref)
        True
        >>> loss.backward()

    References:
        Wijmans et al., `Cut Your Losses in Large-Vocabulary Language Models
        <https://arxiv.org/abs/2411.09009>`_, 2024 (Cut Cross-Entropy);
        Hsu et al., `Liger Kernel: Efficient Triton Kernels for LLM Training
        <https://arxiv.org/abs/2410.10989>`_, 2024 (fused linear cross-entropy).
    """
    chunk_size, accumulate_dtype = from_torch_options(options, chunk_size, accumulate_dtype)
    return linear_term_loss(
        input,
        linear_weight,
        target,
        _CE,
        linear_bias=linear_bias,
        weight=weight,
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        smoothing=smoothing,
        z_loss=z_loss,
        chunk_size=chunk_size,
        accumulate_dtype=accumulate_dtype,
    )


def term_losses() -> list[str]:
    """The registry names :func:`linear_loss` fuses through the engine-term chunk path.

    Those losses (their module is a :class:`crossent.nn.TermModule`: it names its engine
    term) have each chunk's logits turned into their gradient in place, by the Triton kernel
    on CUDA; every other name is fused through autograd per chunk
    (:mod:`crossent.linear.generic`).

    Example:
        >>> "focal" in term_losses() and "dice" not in term_losses()
        True
    """
    names = registry.available_losses()
    return [name for name in names if issubclass(registry.loss_class(name), TermModule)]


def _term_and_options(loss: object, kwargs: dict[str, Any]) -> tuple[Term, dict[str, Any]] | None:
    """The engine term and engine arguments of a loss given by name (or as a term).

    ``None`` for a registry loss that is not built on one engine term. ``inplace_backward``
    (an argument of those losses) is accepted and dropped: the fused path always turns each
    chunk's logits into their gradient in place, and there are no full logits to overwrite.
    """
    if isinstance(loss, Term):
        return loss, {key: v for key, v in kwargs.items() if key != "inplace_backward"}
    if not issubclass(registry.loss_class(registry.parse_spec(loss)[0]), TermModule):
        return None
    module = registry.get_loss(loss, **kwargs)  # validates names and hyper-parameters
    return module.term(), module.engine_options()


def _linear_module_loss(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    loss: str,
    linear_bias: Tensor | None,
    chunk_size: int | None,
    accumulate_dtype: torch.dtype | None,
    kwargs: dict[str, Any],
) -> Tensor:
    """:func:`linear_loss` for a registry loss that is not one engine term (autograd per chunk)."""
    layout = flatten_operands(input, linear_weight, linear_bias)
    cls = registry.loss_class(registry.parse_spec(loss)[0])
    extra_names = forward_arguments(cls)
    extras = {key: kwargs.pop(key) for key in extra_names if key in kwargs}
    extras = {key: value for key, value in extras.items() if value is not None}
    module = registry.get_loss(loss, **kwargs)  # validates names and hyper-parameters
    (n, hidden), w = layout.x.shape, layout.w
    chunk_size = check_chunk_size(chunk_size)
    acc = check_accumulate_dtype(accumulate_dtype, linear_weight.dtype)
    if chunk_size is None:
        rows = choose_chunk_rows(n, hidden, w.shape[0], input.dtype, w.dtype, acc, input.device)
        # On CUDA, where the engine path's chunk is a large share of the accumulator, a
        # quarter of it: autograd through a loss keeps several chunk-sized temporaries (the
        # logits, their gradient, the loss's own). On CPU the engine path's rule (256 rows
        # at 2048 x 1024 -> 32000: NLL 3.7 s against 5.3 s for 64 rows).
        chunk_size = max(1, rows // 4) if input.is_cuda else rows
    rows = min(chunk_size, max(n, 1))
    problem = generic_problem(module, layout, target, extras, rows, acc)
    x, b = layout.x, layout.b
    if n == 0:  # nothing to chunk: the formula on the empty logits
        result = problem.differentiable(x, w, b)
    else:
        others = (problem.target, *problem.extras.values(), *module.buffers())
        result = run_fused(x, w, b, problem, *others)
    if problem.set_loss or problem.reduction != "none":
        return result
    return result.reshape((*layout.batch, *result.shape[1:]))


def linear_loss(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    loss: str | Term = "focal",
    *,
    linear_bias: Tensor | None = None,
    chunk_size: int | None = None,
    accumulate_dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Tensor:
    r"""Any registry loss of a linear layer's output, fused and chunked like the cross-entropy.

    Equal to ``crossent.get_loss(loss, **kwargs)(F.linear(input, linear_weight, linear_bias),
    target)`` to float rounding, values and gradients, without the ``N x C`` logits (see
    :func:`linear_cross_entropy` for the chunk loop, ``chunk_size`` and ``accumulate_dtype``).
    For the losses built on one engine term (:func:`term_losses`: focal, generalized CE,
    poly-1, MAE, ...), each chunk's logits become their gradient in place (the Triton kernel
    on CUDA), with ``F`` the term and ``G`` its derivative (docs/design.md, "One engine"):

    .. math::

        z = x W^T + b, \quad s = \log\operatorname{softmax}(z), \quad
        \ell = \sum_k w_k F(s_k, P_k), \quad
        \frac{\partial \ell}{\partial z_j} = w_j G_j - e^{s_j} \sum_k w_k G_k .

    Every other registry loss (NLL, normalized and active-passive losses, the binary /
    multi-label losses, distillation, the overlap losses) is fused through autograd per chunk
    (:mod:`crossent.linear.generic`): the chunk's gradient comes from the loss's own backward,
    so a chunk holds a few chunk-sized temporaries (on CUDA the default chunk is a quarter of
    the engine path's), and the overlap losses over the whole batch sweep twice (their batch
    statistics, then the gradients). The linear layer's output is the loss's input: logits
    (binary / multi-label losses: one per label; NLL: log-probabilities; distillation: the
    student's logits, ``target`` the teacher's).

    ``loss`` is a registry name or spec (``"focal"``, ``"focal(gamma=1)"``, ``"gce"``,
    ``"flsd-53"``, ``"bce(pos_weight=[2.0, 1.0])"``, ``"dice"``, ...), or a
    :class:`crossent.terms.Term`. The default, ``"focal"``, is the reason this function exists
    beside :func:`linear_cross_entropy`.

    Args:
        input: hidden states ``(H,)``, ``(N, H)`` or ``(*, H)``.
        linear_weight: ``(C, H)`` or ``(C, d1, ..., dn, H)``.
        target: what the loss takes, with the batch dims of ``input`` as its leading dims:
            class indices or probabilities (as for :func:`linear_cross_entropy`), labels in
            [0, 1] shaped like the logits (binary / multi-label), the teacher's logits
            (distillation), masks (overlap losses).
        loss: registry name, spec string or term. Default ``"focal"``.
        linear_bias: ``(C,)`` or ``(C, d1, ..., dn)``. Default None.
        chunk_size: rows per chunk (``None``: chosen from ``C``, ``H`` and free memory).
        accumulate_dtype: ``None`` (float32; float64 for float64 weights) or the weight's
            dtype (lean). Default None.
        **kwargs: the loss's own arguments, with its defaults and checks: hyper-parameters
            (``gamma``, ``alpha``, ``q``, ...) and the engine's ``weight``, ``ignore_index``,
            ``reduction``, ``label_smoothing``, ``smoothing`` (and ``z_loss`` for
            cross-entropy); per-row arguments of the loss's ``forward`` (distillation's
            ``labels``, with the batch dims of ``input``). With a term, the engine's
            arguments and ``class_scale``. ``inplace_backward`` is accepted where the loss
            takes it and changes nothing: the fused path always writes each chunk's gradient
            over that chunk's logits, and the full logits never exist.

    Shape:
        - as :func:`linear_cross_entropy`; the logits the loss sees are
          ``(N, C, d1, ..., dn)`` with ``N`` the product of the batch dims of ``input``, and
          ``reduction="none"`` gives the loss's per-element output with the batch dims
          restored.

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import binary_cross_entropy_with_logits
        >>> from crossent.functional import focal_loss
        >>> from crossent.linear import linear_loss
        >>> x, w = torch.randn(6, 4), torch.randn(10, 4)
        >>> t = torch.tensor([0, 3, 9, 1, 1, 2])
        >>> fused = linear_loss(x, w, t, "focal", gamma=2.0)
        >>> torch.allclose(fused, focal_loss(x @ w.T, t, gamma=2.0))
        True
        >>> labels = (torch.rand(6, 10) < 0.3).float()  # multi-label
        >>> fused = linear_loss(x, w, labels, "bce", chunk_size=4)
        >>> torch.allclose(fused, binary_cross_entropy_with_logits(x @ w.T, labels))
        True

    References:
        Wijmans et al., `Cut Your Losses in Large-Vocabulary Language Models
        <https://arxiv.org/abs/2411.09009>`_, 2024;
        Hsu et al., `Liger Kernel: Efficient Triton Kernels for LLM Training
        <https://arxiv.org/abs/2410.10989>`_, 2024.
    """
    found = _term_and_options(loss, kwargs)
    if found is None:
        name = str(loss)
        acc = accumulate_dtype
        return _linear_module_loss(
            input, linear_weight, target, name, linear_bias, chunk_size, acc, kwargs
        )
    term, options = found
    class_scale = options.pop("class_scale", None)
    if class_scale is not None:
        classes = checks.check_tensor("linear_weight", linear_weight).shape[0]
        class_scale = checks.check_class_weight(class_scale, classes, "alpha")
        class_scale = class_scale.to(device=linear_weight.device)
    return linear_term_loss(
        input,
        linear_weight,
        target,
        term,
        linear_bias=linear_bias,
        class_scale=class_scale,
        chunk_size=chunk_size,
        accumulate_dtype=accumulate_dtype,
        **options,
    )
