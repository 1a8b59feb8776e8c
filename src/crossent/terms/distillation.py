r"""Distillation terms: divergences between a student and a teacher distribution.

The engine (:mod:`crossent.engine`) passes each term a "target" ``P``; for these terms that
tensor holds the teacher's **log**-probabilities ``t`` (not probabilities), so
``F(s, t)`` and ``G(s, t) = dF/ds`` are written in ``t``. Call the engine with the teacher's
``log_softmax`` as a probability-shaped target and no label smoothing:

.. math::

    \mathrm{KL}(p_t \,\|\, p_s) = \sum_k e^{t_k} (t_k - s_k), \qquad
    \mathrm{KL}(p_s \,\|\, p_t) = \sum_k e^{s_k} (s_k - t_k).

None of them is zero where the engine's ``P`` (here ``t``) is zero, so
``vanishes_where_target_zero`` is ``False``: ``t = 0`` means a teacher probability of 1.
A class with ``-inf`` log-probability on either side contributes 0 wherever the divergence
is finite there (``e^t (t - s) = 0`` at ``t = -inf``); no ``0 * inf`` is formed.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from crossent.core.term import KernelCode, Term


def _zero_where_neg_inf(x: Tensor, f: Tensor) -> Tensor:
    """``f`` with 0 where ``x = -inf`` (the ``e^x (...)`` factor is 0 there)."""
    return torch.where(torch.isneginf(x), torch.zeros_like(f), f)


class ForwardKLTerm(Term):
    r"""Forward KL divergence ``KL(teacher || student)``: ``F = e^t (t - s)``, ``G = -e^t``.

    ``t`` is the teacher's log-probability (see the module docstring). Summed over classes the
    gradient with respect to the student's logits is ``softmax(z) - e^t``.

    Reference: Hinton et al., `Distilling the Knowledge in a Neural Network
    <https://arxiv.org/abs/1503.02531>`_, 2015.

    Example:
        >>> t = torch.log(torch.tensor([0.5, 0.5]))
        >>> ForwardKLTerm().value(t, t)
        tensor([0., 0.])
    """

    name: ClassVar[str] = "forward_kl"
    kernel: ClassVar[KernelCode | None] = KernelCode.FORWARD_KL
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``e^t (t - s)``, 0 where ``t = -inf``."""
        return _zero_where_neg_inf(p, torch.exp(p) * (p - s))

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``-e^t``."""
        return -torch.exp(p) * torch.ones_like(s)


class ReverseKLTerm(Term):
    r"""Reverse KL divergence ``KL(student || teacher)``.

    .. math::

        F(s, t) = e^{s} (s - t), \qquad G(s, t) = e^{s} (s - t + 1).

    ``t`` is the teacher's log-probability. Mode-seeking: the student is pushed onto the
    teacher's largest modes.

    Reference: Gu et al., `MiniLLM: Knowledge Distillation of Large Language Models
    <https://arxiv.org/abs/2306.08543>`_, 2023.

    Example:
        >>> t = torch.log(torch.tensor([0.5, 0.5]))
        >>> ReverseKLTerm().value(t, t)
        tensor([0., 0.])
    """

    name: ClassVar[str] = "reverse_kl"
    kernel: ClassVar[KernelCode | None] = KernelCode.REVERSE_KL
    vanishes_where_target_zero: ClassVar[bool] = False

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``e^s (s - t)``, 0 where ``s = -inf``."""
        return _zero_where_neg_inf(s, torch.exp(s) * (s - p))

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``e^s (s - t + 1)``, 0 where ``s = -inf``."""
        return _zero_where_neg_inf(s, torch.exp(s) * (s - p + 1))


class JensenShannonTerm(Term):
    r"""Jensen-Shannon divergence between teacher and student.

    .. math::

        F(s, t) = \tfrac12\left[e^{t} (t - m) + e^{s} (s - m)\right], \quad
        m = \log\frac{e^{t} + e^{s}}{2}, \qquad G(s, t) = \tfrac12 e^{s} (s - m),

    with ``m = logaddexp(t, s) - log 2`` (never the log of a sum of probabilities). The
    derivative of ``m`` cancels: ``d/ds [e^t (t - m) + e^s (s - m)] = e^s (s - m)``. Bounded
    by ``log 2`` per element, symmetric.

    Reference: Lin, `Divergence Measures Based on the Shannon Entropy
    <https://doi.org/10.1109/18.61115>`_, 1991.

    Example:
        >>> t = torch.log(torch.tensor([1.0, 0.0]))
        >>> s = torch.log(torch.tensor([0.0, 1.0]))
        >>> round(JensenShannonTerm().value(s, t).sum().item(), 4)
        0.6931
    """

    name: ClassVar[str] = "jensen_shannon"
    kernel: ClassVar[KernelCode | None] = KernelCode.JSD
    vanishes_where_target_zero: ClassVar[bool] = False

    @staticmethod
    def _mid(s: Tensor, p: Tensor) -> Tensor:
        """``m = log((e^t + e^s) / 2) = logaddexp(t, s) - log 2``, exactly ``s`` where ``t = s``."""
        return torch.where(p == s, s, torch.logaddexp(p, s) - math.log(2.0))

    def value(self, s: Tensor, p: Tensor) -> Tensor:
        """``(e^t (t - m) + e^s (s - m)) / 2``."""
        m = self._mid(s, p)
        teacher = _zero_where_neg_inf(p, torch.exp(p) * (p - m))
        student = _zero_where_neg_inf(s, torch.exp(s) * (s - m))
        return 0.5 * (teacher + student)

    def grad(self, s: Tensor, p: Tensor) -> Tensor:
        """``e^s (s - m) / 2``, 0 where ``s = -inf``."""
        m = self._mid(s, p)
        return _zero_where_neg_inf(s, 0.5 * torch.exp(s) * (s - m))
