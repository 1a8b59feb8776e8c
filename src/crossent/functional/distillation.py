r"""Knowledge distillation: a divergence between temperature-softened student and teacher."""

from __future__ import annotations

import torch
from torch import Tensor

from crossent.core import checks
from crossent.core.autograd import compute_dtype
from crossent.core.params import Options, constrained
from crossent.core.targets import check_input, prepare_targets
from crossent.engine import shifted_log_softmax, term_loss
from crossent.functional import _params
from crossent.functional.cross_entropy import cross_entropy
from crossent.terms import ForwardKLTerm, JensenShannonTerm, ReverseKLTerm, Term, WeightedSumTerm

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "mixed")


def divergence_term(divergence: str, mix: float) -> Term:
    """The term of a validated ``divergence`` name (``"mixed"`` uses ``mix``)."""
    if divergence == "forward_kl":
        return ForwardKLTerm()
    if divergence == "reverse_kl":
        return ReverseKLTerm()
    if divergence == "jsd":
        return JensenShannonTerm()
    return WeightedSumTerm([(mix, ForwardKLTerm()), (1.0 - mix, ReverseKLTerm())])


@constrained(
    temperature=_params.TEMPERATURE,
    divergence=Options(DIVERGENCES),
    mix=_params.UNIT,
    alpha=_params.UNIT,
    ignore_index=_params.IGNORE_INDEX,
    reduction=_params.REDUCTION,
)
def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 1.0,
    divergence: str = "forward_kl",
    mix: float = 0.5,
    labels: Tensor | None = None,
    alpha: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Distillation loss between student and teacher logits (Hinton et al. 2015).

    With ``s = log_softmax(z_s / T)`` and ``t = log_softmax(z_t / T)`` per element:

    .. math::

        D = T^2 \sum_k d(s_k, t_k), \qquad
        \ell = \alpha\, \mathrm{CE}(z_s, y) + (1 - \alpha)\, D \ \text{(with labels)},

    where ``d`` is

    * ``"forward_kl"``: ``KL(teacher || student) = sum_k e^t (t - s)`` (Hinton et al.);
    * ``"reverse_kl"``: ``KL(student || teacher) = sum_k e^s (s - t)`` (mode-seeking);
    * ``"jsd"``: the Jensen-Shannon divergence;
    * ``"mixed"``: ``mix * forward + (1 - mix) * reverse``.

    The ``T^2`` keeps the soft part's gradient on the scale of the hard part's as ``T``
    changes (Hinton et al.). The divergence is summed over classes and averaged over rows
    (and positions for ``(N, C, d1, ..., dn)`` inputs). With ``labels``, the cross-entropy
    is on the unsoftened student logits and rows whose label is ``ignore_index`` are
    excluded from both parts (the ``mean`` divides by the number of kept rows). The teacher
    gets no gradient (it is detached).

    Teachers trained with label smoothing distil worse: smoothing erases the information
    about class similarities that the student learns from (Müller et al. 2019).

    The divergences are engine terms (:mod:`crossent.terms.distillation`) whose target is the
    teacher's log-probabilities; the gradient is analytic (forward KL:
    ``T (softmax(z_s/T) - softmax(z_t/T))`` per logit).

    Args:
        student_logits: ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``.
        teacher_logits: the same shape; detached.
        temperature: ``T > 0``. Default 1.
        divergence: ``"forward_kl" | "reverse_kl" | "jsd" | "mixed"``. Default
            ``"forward_kl"``.
        mix: weight of the forward KL in ``"mixed"``, in [0, 1]. Default 0.5.
        labels: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dn)``, or ``None``.
            Default None.
        alpha: weight of the cross-entropy with ``labels``, in [0, 1]; without labels the
            loss is the divergence alone, whatever ``alpha`` (so a module built with ``alpha``
            also takes unlabelled batches). Default 0.
        ignore_index: label that excludes an element from both parts. Default -100.
        reduction: ``"none" | "mean" | "sum"``. Default ``"mean"``.

    Shape:
        - student_logits, teacher_logits: ``(C)``, ``(N, C)`` or ``(N, C, d1, ..., dn)``
        - labels: ``()``, ``(N)`` or ``(N, d1, ..., dn)``
        - output: scalar, or ``(N, d1, ..., dn)`` with ``reduction="none"``

    Returns:
        The loss (float32 for half inputs).

    Example:
        >>> import torch
        >>> from crossent import distillation_loss
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> distillation_loss(z, z, temperature=2.0)
        tensor(0.)

    References:
        Hinton et al., `Distilling the Knowledge in a Neural Network
        <https://arxiv.org/abs/1503.02531>`_, 2015;
        Müller et al., `When Does Label Smoothing Help?
        <https://arxiv.org/abs/1906.02629>`_, 2019.
    """
    temp = temperature
    student = check_input(student_logits)
    teacher = checks.check_tensor("teacher_logits", teacher_logits)
    checks.check_devices(student, "student_logits", teacher_logits=teacher, labels=labels)
    if teacher.shape != student.shape:
        raise checks.fail(
            "teacher_logits",
            f"to have the shape of `student_logits` {tuple(student.shape)}",
            teacher,
        )
    class_dim = 0 if student.dim() == 1 else 1
    t = _teacher_log_probs(teacher, class_dim, temp, compute_dtype(student.dtype))
    z = student / temp if temp != 1 else student
    per = term_loss(z, t, divergence_term(divergence, mix), reduction="none") * temp**2
    if labels is None:
        return _reduce(per, None, reduction)
    keep = _kept(student, labels, ignore_index)
    per = torch.where(keep, per, torch.zeros_like(per))
    if alpha > 0:
        ce = cross_entropy(student, labels, ignore_index=ignore_index, reduction="none")
        per = alpha * ce + (1 - alpha) * per
    return _reduce(per, keep, reduction)


def _teacher_log_probs(teacher: Tensor, dim: int, temp: float, dtype: torch.dtype) -> Tensor:
    """``log_softmax(teacher / T)``, detached, with the engine's arithmetic for the student.

    ``(x - m) - log sum e^(x - m)`` as the engine forms ``s``
    (:func:`crossent.engine.shifted_log_softmax`), so equal logits give exactly equal
    log-probabilities and a divergence of exactly 0.
    """
    with torch.no_grad():
        x = teacher.detach().to(dtype) / temp
        if x.shape[dim] == 0:  # no classes: nothing to normalise
            return x
        return shifted_log_softmax(x, dim)[0]


def _kept(student: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Elements whose label is not ``ignore_index`` (labels validated), shaped like the loss."""
    labels = checks.check_tensor("labels", labels)
    if labels.is_floating_point():
        raise TypeError(f"Expected `labels` to hold class indices (integers), got {labels.dtype}")
    x, y = (student.unsqueeze(0), labels.unsqueeze(0)) if student.dim() == 1 else (student, labels)
    try:
        targets = prepare_targets(x, y, None, None, ignore_index, 0.0, "uniform")
    except ValueError as err:
        raise ValueError(str(err).replace("`target`", "`labels`")) from None
    return targets.valid.reshape(y.shape)


def _reduce(per: Tensor, keep: Tensor | None, reduction: str) -> Tensor:
    """``none``, ``sum``, or the mean over kept elements (all elements without labels)."""
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    total = per.sum()
    if keep is None:
        return total / per.numel() if per.numel() else total
    # No kept element: total is 0 and so is the loss; clamping (not torch.where) keeps the
    # backward of 0/0 from turning the gradient into NaN.
    return total / keep.sum().to(total.dtype).clamp_min(1)
