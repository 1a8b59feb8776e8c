r"""The four routes of a chunk: its loss ``(R,)`` and this rank's columns of its gradient.

With ``s = z - lse(z)``, ``q = e^s``, the target ``P``, the multiplier ``m_k = w_k c_k``
(class weight times focal's ``alpha``) and a term ``(F, G)`` (:mod:`crossent.core.term`):

.. math::

    \ell = \sum_k m_k F(s_k, P_k) + \lambda\,\mathrm{lse}^2, \qquad
    \frac{\partial \ell}{\partial z_j} = m_j G_j - q_j \Big(\sum_k m_k G_k
        - 2 \lambda\, \mathrm{lse}\Big),

as in the engine (:mod:`crossent.engine.chunks`, whose routes these mirror). After the
row statistics (:func:`crossent.distributed.stats.global_lse`: ``R`` floats MAX, ``R`` SUM)
each route all-reduces what its sums over the vocabulary need:

* :func:`onehot_chunk` (class indices, no smoothing, ``F(s, 0) = G(s, 0) = 0``): only
  ``s_t``; the rank holding the target adds ``z_t`` to the SUM of the statistics (so 2
  all-reduces, ``R + 2R`` floats), then every rank knows ``F(s_t)`` and ``G(s_t)``; the
  gradient is ``q_j c + [j = t] m_t G_t``.
* :func:`affine_chunk` (smoothed class indices, ``F(s, 1) = c s``: cross-entropy): the
  local ``sum_k m_k z_k`` joins the SUM of the statistics with ``z_t`` (2
  all-reduces, ``R + 3R`` floats), no term evaluated per class.
* :func:`linear_chunk` (smoothed class indices, ``F(s, P) = P F(s, 1)``): with
  ``P = off + (on - off) [k = t]``, the row sums ``off sum_k m_k F(s_k, 1)`` plus the target's
  ``(on - off) m_t F(s_t, 1)`` (added by the rank holding it), and the same for ``G``: one more
  all-reduce of ``2R`` floats; ``P`` is never built.
* :func:`full_chunk` (probability targets, terms acting on every class, the distillation
  divergences): ``P`` built for the local columns, ``(sum m F, sum m G)``: ``2R`` floats.

Every gradient is formed here, multiplied by the reduction's factor ``scale`` (0 for ignored
rows), so backward needs no communication. ``out`` is a buffer of ``x``'s dtype for the
gradient (it may be ``x`` itself) or ``None``; the gradient returned may be a new tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core.problem import EngineOptions
from crossent.core.targets import smoothing_levels
from crossent.distributed.collectives import all_reduce
from crossent.distributed.shard import Shard
from crossent.distributed.stats import global_lse
from crossent.distributed.targets import ShardedTargets


def _weighted(a: Tensor, value: Tensor) -> Tensor:
    """``a * value`` with 0 where ``a == 0`` even if ``value`` is inf."""
    return torch.where(a == 0, 0.0, a * value)


def _separate(out: Tensor | None, x: Tensor) -> Tensor | None:
    """``out`` where the local softmax may go into it (not ``x`` itself, still needed)."""
    return out if out is not None and out.data_ptr() != x.data_ptr() else None


def _row_scale(tg: ShardedTargets, scale: Tensor) -> Tensor:
    """The reduction's factor per row, 0 where the target is ignored, ``(R,)``."""
    return torch.where(tg.valid, scale, torch.zeros_like(scale))


def _with_z_loss(loss: Tensor, lse: Tensor, tg: ShardedTargets, opts: EngineOptions) -> Tensor:
    """``loss + lam lse^2`` where the row is not ignored, 0 where it is."""
    if opts.z_loss:
        loss = loss + opts.z_loss * lse**2
    return torch.where(tg.valid, loss, 0.0)


def _target_logits(x: Tensor, tg: ShardedTargets, shard: Shard) -> Tensor:
    """``z_t`` where this rank holds the row's target, else 0, ``(R,)``.

    Summed over the group it is ``z_t`` exactly (one term is not 0).
    """
    assert tg.index is not None and tg.here is not None
    if not shard.width:
        return x.new_zeros(x.shape[0])
    return torch.where(tg.here, x.gather(1, tg.index.unsqueeze(1)).squeeze(1), 0.0)


def onehot_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """One-hot targets: the loss needs ``s_t`` only (2 all-reduces, ``R`` and ``2R`` floats)."""
    assert tg.index is not None and tg.here is not None and tg.elem_weight is not None
    z_t = _target_logits(x, tg, shard)  # before `out` (maybe x) is overwritten
    stats, (z_t,) = global_lse(x, shard, out if want_grad else None, (z_t,))
    s_t = (z_t - stats.m_safe) - stats.log_d
    one = torch.ones((), dtype=x.dtype, device=x.device)
    ew = tg.elem_weight.to(x.dtype)
    loss = _weighted(ew, opts.term.value(s_t, one))
    if opts.z_loss:
        loss = loss + torch.where(tg.valid, opts.z_loss * stats.lse**2, 0.0)
    if not want_grad:
        return loss, None
    wg_t = _weighted(ew, opts.term.grad(s_t, one)) * scale
    coef = -wg_t
    if opts.z_loss:
        coef = coef + 2 * opts.z_loss * stats.lse_safe * _row_scale(tg, scale)
    grad = stats.probs(coef)  # dl/dz_j = q_j c + [j = t] m_t G_t
    if shard.width:
        at_target = torch.where(tg.here, wg_t, 0.0).unsqueeze(1)
        grad.scatter_add_(1, tg.index.unsqueeze(1), at_target)
    return loss, grad


def affine_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Smoothed class indices, ``F(s, 1) = c s`` (cross-entropy): sums of the logits only.

    ``sum_k m_k s_k = sum_k m_k z_k - lse sum_k m_k``: the local sum joins the SUM of the
    statistics with ``z_t`` (2 all-reduces, ``R`` and ``3R`` floats); ``G = c`` is a
    constant, so no term is evaluated per class.
    """
    assert tg.index is not None and tg.here is not None and tg.elem_weight is not None
    c = float(opts.term.affine_slope)  # type: ignore[arg-type]
    z_t = _target_logits(x, tg, shard)  # before `out` (maybe x) is overwritten
    z_sum = x.sum(dim=1) if tg.mult is None else x @ tg.mult.to(x.dtype)
    stats, (z_t, z_sum) = global_lse(x, shard, out if want_grad else None, (z_t, z_sum))
    off, on = smoothing_levels(opts.label_smoothing, opts.smoothing, shard.num_classes)
    total = tg.mult_total if tg.mult is not None else float(shard.num_classes)
    ew = tg.elem_weight.to(x.dtype)
    s_t = (z_t - stats.m_safe) - stats.log_d
    row_s = z_sum - stats.lse_safe * total  # sum_k m_k s_k
    loss = c * off * row_s + _weighted(ew, (on - off) * c * s_t)
    loss = _with_z_loss(loss, stats.lse, tg, opts)
    if not want_grad:
        return loss, None
    g_t = _weighted(ew, torch.full_like(ew, (on - off) * c))
    row = c * off * total + g_t
    if opts.z_loss:
        row = row - 2 * opts.z_loss * stats.lse_safe
    vs = _row_scale(tg, scale)
    # dl/dz_j = vs (off c m_j - q_j S) + vs (on - off) c m_t [j = t]
    grad = stats.probs(-row * vs)
    if tg.mult is None:
        grad.add_((c * off * vs).unsqueeze(1))
    else:
        grad.addcmul_(tg.mult.to(x.dtype).unsqueeze(0), (c * off * vs).unsqueeze(1))
    if shard.width:
        at_target = torch.where(tg.here, g_t * vs, 0.0).unsqueeze(1)
        grad.scatter_add_(1, tg.index.unsqueeze(1), at_target)
    return loss, grad


def linear_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """Smoothed class indices, a term linear in ``P`` (3 all-reduces: ``R, R, 2R`` floats)."""
    assert tg.index is not None and tg.here is not None and tg.elem_weight is not None
    stats, _ = global_lse(x, shard, _separate(out, x))
    s = stats.log_probs(x)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    term = opts.term
    f, g = term.value_and_grad(s, one) if want_grad else (term.value(s, one), None)
    del s
    off, on = smoothing_levels(opts.label_smoothing, opts.smoothing, shard.num_classes)
    ew = tg.elem_weight.to(x.dtype)
    t = tg.index.unsqueeze(1)

    def target_part(v: Tensor) -> Tensor:
        """``(on - off) m_t v_t`` on the rank that holds the target, else 0."""
        if not shard.width:
            return torch.zeros_like(ew)
        return torch.where(tg.here, _weighted(ew, (on - off) * v.gather(1, t).squeeze(1)), 0.0)

    mf = f * tg.mult if tg.mult is not None else f
    parts = [off * mf.sum(dim=1) + target_part(f)]
    del f, mf
    if g is not None:
        mg = g * tg.mult if tg.mult is not None else g
        g_t = target_part(g)
        parts.append(off * mg.sum(dim=1) + g_t)
    sums = all_reduce(torch.stack(parts), "sum", shard.group)
    loss = _with_z_loss(sums[0], stats.lse, tg, opts)
    if g is None:
        return loss, None
    row = sums[1] - 2 * opts.z_loss * stats.lse_safe if opts.z_loss else sums[1]
    vs = _row_scale(tg, scale)
    # dl/dz_j = vs (off m_j g_j - q_j S) + vs (on - off) m_t g_t [j = t]
    grad = stats.probs(-row * vs)
    grad.addcmul_(mg, (off * vs).unsqueeze(1))
    if shard.width:
        grad.scatter_add_(1, t, (g_t * vs).unsqueeze(1))
    return loss, grad


def full_chunk(
    x: Tensor,
    tg: ShardedTargets,
    scale: Tensor,
    opts: EngineOptions,
    shard: Shard,
    out: Tensor | None,
    want_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """A full target ``P`` on the local columns (3 all-reduces: ``R, R, 2R`` floats)."""
    stats, _ = global_lse(x, shard, _separate(out, x))
    s = stats.log_probs(x)
    p = tg.chunk_target(
        shard.width, shard.num_classes, opts.label_smoothing, opts.smoothing, x.dtype
    )
    term = opts.term
    f, g = term.value_and_grad(s, p) if want_grad else (term.value(s, p), None)
    del s
    if term.vanishes_where_target_zero:  # the engine's convention: F = G = 0 where P = 0
        zero = p == 0
        f = torch.where(zero, 0.0, f)
        g = None if g is None else torch.where(zero, 0.0, g)
    del p
    if tg.mult is not None:
        f = f * tg.mult
        g = None if g is None else g * tg.mult
    parts = [f.sum(dim=1)] if g is None else [f.sum(dim=1), g.sum(dim=1)]
    del f
    sums = all_reduce(torch.stack(parts), "sum", shard.group)
    loss = _with_z_loss(sums[0], stats.lse, tg, opts)
    if g is None:
        return loss, None
    row = sums[1] - 2 * opts.z_loss * stats.lse_safe if opts.z_loss else sums[1]
    vs = _row_scale(tg, scale)
    grad = stats.probs(-row * vs)
    return loss, grad.addcmul_(g, vs.unsqueeze(1))
