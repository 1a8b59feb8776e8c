r"""Fused linear layer + the registry losses that are not one engine term.

:mod:`crossent.linear.fused` fuses the losses built on one engine term, turning each
chunk's logits into their gradient in place. Every other registry loss — NLL, the normalized
and active-passive losses, the binary / multi-label losses, distillation and the overlap
losses — is fused here, with the same chunk loop over rows of ``Z = X W^T + b`` and the same
``grad_X[c] = G_c W``, ``grad_W += G_c^T X_c``, ``grad_b += sum_r G_c[r]``; the chunk's
gradient ``G_c`` is taken by autograd through the loss's own implementation (its analytic
backward where it has one). The ``N x K`` logits never exist; a chunk holds its logits, their
gradient and the loss's temporaries.

* **Row losses** (all but the overlap losses over the whole batch): row ``r``'s loss depends
  on row ``r``'s logits only and the reduction is a scaled sum,

  .. math::

      \ell = u \sum_r \ell_r(z_r), \qquad
      G_c = \frac{\partial}{\partial Z_c}\, u \sum_{r \in c} \ell_r(z_r),

  with ``u = 1`` (``sum``), ``1/D`` (``mean``: ``D`` is the loss's own denominator, the sum
  of the non-ignored targets' class weights for NLL and the normalized / active-passive
  losses, the kept rows for distillation with labels, else the number of loss elements), or
  each element's ``grad_output`` (``none``, in a second sweep). One sweep.
* **Set losses** (Dice, Tversky, focal Tversky, unified focal with ``per_image=False``): the
  loss is a function of sums over the batch, ``ell = Psi(S)``, ``S = sum_c S_c(Z_c)`` (TP, FP,
  FN per class, ...; :meth:`crossent.nn.DiceLoss.statistics`). Sweep 1 sums ``S``; autograd
  gives ``dPsi/dS``; sweep 2 recomputes each chunk's logits and back-propagates ``dPsi/dS``
  through ``S_c``. Two sweeps (three matrix products per chunk, plus one).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.targets import divide_or_zero, prepare_targets
from crossent.linear.buffers import GradientBuffers, Gradients, chunk_logits

if TYPE_CHECKING:
    from crossent.linear.args import LinearLayout

# Row losses whose ``mean`` divides by the class weights of the non-ignored targets
# (PyTorch's NLL convention), not by the number of loss elements.
_TARGET_WEIGHTED_MEAN = ("NLLLoss", "NCELoss", "NFLoss", "APLoss")
_NO_GRADS = (False, False, False)


@dataclass(frozen=True)
class GenericProblem:
    """One fused call of a registry loss module on the logits ``(N, C, d1, ..., dn)``.

    Attributes:
        module: the loss as the caller configured it.
        set_loss: whether the loss is a function of sums over the batch (overlap losses
            with ``per_image=False``); otherwise a row loss.
        target: the target with its batch dims flattened, ``(N, ...)``.
        extras: per-row arguments of ``module.forward`` (distillation ``labels``), ``(N, ...)``.
        logits_shape: ``(N, C, d1, ..., dn)``.
        chunk_rows: rows per chunk.
        accumulate_dtype: dtype of the ``grad_W`` and ``grad_b`` accumulators.
    """

    module: torch.nn.Module
    set_loss: bool
    target: Tensor
    extras: dict[str, Tensor]
    logits_shape: tuple[int, ...]
    chunk_rows: int
    accumulate_dtype: torch.dtype

    @property
    def reduction(self) -> str:
        """The caller's reduction."""
        return self.module.reduction

    def chunk_call(self, module: Any, logits: Tensor, span: slice) -> Any:
        """``module(logits, target[span], **extras[span])`` on a chunk's ``(R, K)`` logits.

        The module's own checks see a chunk of the logits: their errors get a note saying so.
        """
        z = logits.view(logits.shape[0], *self.logits_shape[1:])
        extras = {key: value[span] for key, value in self.extras.items()}
        try:
            return module(z, self.target[span], **extras)
        except (TypeError, ValueError) as err:
            first = span.start or 0
            note = (
                f"[fused linear: the loss's `input` is the logits `input @ linear_weight.T` of "
                f"shape {self.logits_shape}, here rows {first} to {first + z.shape[0] - 1}, "
                "and positions in the message count from the first of them]"
            )
            raise type(err)(f"{err} {note}") from err

    def forward(
        self, x: Tensor, w: Tensor, b: Tensor | None, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor, Gradients | None]:
        """The loss, and its gradients for ``grad_output = 1`` unless it is not a scalar."""
        if self.set_loss:
            stats = _set_statistics(x, w, b, self)
            loss = self.module.loss_from_statistics(stats)
            if loss.dim() or not any(needs):
                return loss, None
            return loss, _set_gradients(x, w, b, self, stats, needs, torch.ones_like(loss))
        if self.reduction == "none":
            return _row_sweep(x, w, b, self, _NO_GRADS, None)[0], None
        return _row_sweep(x, w, b, self, needs, None)

    def backward(
        self,
        x: Tensor,
        w: Tensor,
        b: Tensor | None,
        needs: tuple[bool, bool, bool],
        grad_output: Tensor,
    ) -> Gradients:
        """The gradients for a non-scalar loss' ``grad_output`` (a sweep of their own)."""
        if self.set_loss:
            stats = _set_statistics(x, w, b, self)
            return _set_gradients(x, w, b, self, stats, needs, grad_output)
        return _row_sweep(x, w, b, self, needs, grad_output)[1]

    def traced(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """Under ``torch.compile``: the module on the full logits (they are materialised).

        The per-chunk gradients come from autograd inside the forward pass, which a compiled
        graph cannot hold; the compiler fuses the loss on the full logits instead.
        """
        return self.differentiable(x, w, b)

    def differentiable(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """The module on the full logits (double backward, targets that require grad)."""
        logits = torch.nn.functional.linear(x, w, b)
        return self.chunk_call(self.module, logits, slice(None))


def _row_module(module: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``module`` that returns per-element losses (``reduction="none"``)."""
    rows = copy.copy(module)
    rows.reduction = "none"
    return rows


def _mean_denominator(problem: GenericProblem, row_elements: int, dtype: torch.dtype) -> Tensor:
    """``D`` of ``mean = sum / D`` for a row loss (see the module docstring)."""
    module, device = problem.module, problem.target.device
    name = type(module).__name__
    if name in _TARGET_WEIGHTED_MEAN:
        logits = torch.empty((), dtype=dtype, device=device).expand(problem.logits_shape)
        weight = getattr(module, "weight", None)
        targets = prepare_targets(
            logits, problem.target, weight, None, module.ignore_index, 0.0, "uniform"
        )
        return targets.denominator
    if name == "DistillationLoss" and "labels" in problem.extras:
        return (problem.extras["labels"] != module.ignore_index).sum()
    return torch.tensor(problem.logits_shape[0] * row_elements, device=device)


def _row_sweep(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: GenericProblem,
    needs: tuple[bool, bool, bool],
    upstream: Tensor | None,
) -> tuple[Tensor, Gradients]:
    """One sweep of a row loss: its output and the gradients in ``needs``.

    ``upstream``: ``None`` for the gradient of the reduced loss itself, or the
    ``grad_output`` of ``reduction="none"`` (shaped like the output).
    """
    grads = GradientBuffers.new(x, w, needs, problem.accumulate_dtype)
    output = _row_chunks(x, w, b, problem, grads, upstream)
    return output, grads.result(b)


def _row_chunks(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: GenericProblem,
    grads: GradientBuffers,
    upstream: Tensor | None,
) -> Tensor:
    """The chunk loop of :func:`_row_sweep`: the output, the gradients added to ``grads``."""
    n = x.shape[0]
    module = _row_module(problem.module)
    if upstream is not None:
        upstream = upstream.reshape(n, upstream.numel() // n)
    pieces: list[Tensor] = []  # per-element losses, kept for "none" only (else summed)
    total: Tensor | float = 0.0
    scale: Tensor | None = None
    for span, logits in chunk_logits(x, w, b, problem.chunk_rows):
        leaf = logits.detach().requires_grad_(grads.wanted())
        with torch.set_grad_enabled(grads.wanted()):
            losses = problem.chunk_call(module, leaf, span)
        if scale is None:
            row_elements = losses.numel() // max(1, losses.shape[0])
            scale = _reduction_scale(problem, row_elements, losses.dtype)
        if grads.wanted():
            u = scale if upstream is None else upstream[span].reshape(losses.shape)
            grads.add(_chunk_gradient(losses, leaf, u), x, w, span)
        if problem.reduction == "none":
            pieces.append(losses.detach())
        else:
            total = total + losses.detach().sum()
    return torch.cat(pieces) if problem.reduction == "none" else total * scale


def _reduction_scale(problem: GenericProblem, row_elements: int, dtype: torch.dtype) -> Tensor:
    """``u``: 1 for ``sum`` and ``none``, ``1/D`` for ``mean`` (0 when ``D = 0``)."""
    one = torch.ones((), dtype=dtype, device=problem.target.device)
    if problem.reduction != "mean":
        return one
    denominator = _mean_denominator(problem, row_elements, dtype).to(dtype)
    return divide_or_zero(one, denominator)


def _chunk_gradient(output: Tensor | tuple[Tensor, ...], leaf: Tensor, upstream: Any) -> Tensor:
    """``d <upstream, output> / d leaf`` as a ``(R, K)`` tensor (zeros where unconnected)."""
    outputs = output if isinstance(output, tuple) else (output,)
    ups = upstream if isinstance(upstream, tuple) else (upstream,)
    pairs = [
        (o, torch.as_tensor(u, dtype=o.dtype, device=o.device).expand_as(o))
        for o, u in zip(outputs, ups, strict=True)
        if o.requires_grad and u is not None
    ]
    if not pairs:
        return torch.zeros_like(leaf)
    (g,) = torch.autograd.grad(
        [o for o, _ in pairs], leaf, [u for _, u in pairs], allow_unused=True
    )
    return torch.zeros_like(leaf) if g is None else g


def _set_statistics(
    x: Tensor, w: Tensor, b: Tensor | None, problem: GenericProblem
) -> tuple[Tensor, ...]:
    """Sweep 1 of a set loss: its statistics summed over the chunks."""
    total: tuple[Tensor, ...] = ()
    with torch.no_grad():
        for span, logits in chunk_logits(x, w, b, problem.chunk_rows):
            stats = problem.chunk_call(problem.module.statistics, logits, span)
            total = stats if not total else tuple(t + s for t, s in zip(total, stats, strict=True))
    return total


def _set_gradients(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: GenericProblem,
    stats: tuple[Tensor, ...],
    needs: tuple[bool, bool, bool],
    grad_output: Tensor,
) -> Gradients:
    """Sweep 2 of a set loss: ``dPsi/dS`` back-propagated through every chunk's statistics."""
    leaves = [s.detach().requires_grad_() for s in stats]
    with torch.enable_grad():
        loss = problem.module.loss_from_statistics(tuple(leaves))
        d_stats = _statistics_gradient(loss, leaves, grad_output)
    grads = GradientBuffers.new(x, w, needs, problem.accumulate_dtype)
    _backpropagate_statistics(x, w, b, problem, d_stats, grads)
    return grads.result(b)


def _backpropagate_statistics(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    problem: GenericProblem,
    d_stats: tuple[Tensor | None, ...],
    grads: GradientBuffers,
) -> None:
    """The chunk loop of :func:`_set_gradients`: ``dPsi/dS`` through each chunk's ``S_c``."""
    for span, logits in chunk_logits(x, w, b, problem.chunk_rows):
        leaf = logits.detach().requires_grad_()
        with torch.enable_grad():
            chunk_stats = problem.chunk_call(problem.module.statistics, leaf, span)
        grads.add(_chunk_gradient(tuple(chunk_stats), leaf, d_stats), x, w, span)


def _statistics_gradient(
    loss: Tensor, leaves: list[Tensor], grad_output: Tensor
) -> tuple[Tensor | None, ...]:
    """``dPsi/dS`` for every statistic (``None`` for one the loss does not depend on)."""
    if not loss.requires_grad:
        return tuple(None for _ in leaves)
    return torch.autograd.grad(loss, leaves, grad_output.to(loss.dtype), allow_unused=True)


def forward_arguments(cls: type[torch.nn.Module]) -> tuple[str, ...]:
    """Names of ``cls.forward``'s arguments after the input and the target (per-row extras)."""
    params = list(inspect.signature(cls.forward).parameters)
    return tuple(params[3:])


def generic_problem(
    module: torch.nn.Module,
    layout: LinearLayout,
    target: object,
    extras: dict[str, Tensor],
    chunk_rows: int,
    accumulate_dtype: torch.dtype,
) -> GenericProblem:
    """Check that targets and extras have one entry per row and build the problem.

    ``layout`` is the flattened linear layer (its ``batch`` dims and ``logits_shape``).
    """
    batch, logits_shape = layout.batch, layout.logits_shape
    n = logits_shape[0]
    flat: dict[str, Tensor] = {}
    for name, value in {"target": target, **extras}.items():
        value = checks.check_tensor(name, value)
        if tuple(value.shape[: len(batch)]) != batch:
            raise checks.fail(
                name, f"to have the batch dims of `input` {batch} as its leading dims", value
            )
        flat[name] = value.reshape(n, *value.shape[len(batch) :])
    set_loss = hasattr(module, "statistics") and not module.per_image
    module = module.to(layout.x.device)
    return GenericProblem(
        module,
        set_loss,
        flat.pop("target"),
        flat,
        logits_shape,
        chunk_rows,
        accumulate_dtype,
    )
