"""Calibration metrics: ECE, MCE, ACE, classwise ECE, Brier score and negative log-likelihood.

Inputs are probabilities ``(N, K)``, or ``(N,)`` positive-class probabilities of a binary
problem, with integer labels ``(N,)``; ``from_logits=True`` takes logits instead (softmax, or
sigmoid for ``(N,)``). Nothing is guessed from the values. Results are 0-d tensors in the
input's dtype (float32 for half precision), accumulated in float64.
"""

from __future__ import annotations

import torch

from crossent.calibration import _validation as V
from crossent.calibration.binning import binned_stats, calibration_error_from_stats, iter_batches
from crossent.core.params import constrained


def _result_dtype(probs: torch.Tensor) -> torch.dtype:
    return torch.float64 if probs.dtype == torch.float64 else torch.float32


@constrained(**V.BINNED, binning=V.BINNING, norm=V.NORM, mode=V.MODE, debiased=V.FLAG)
def expected_calibration_error(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    norm: str = "l1",
    mode: str = "top_label",
    debiased: bool = False,
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Expected calibration error: the binned gap between confidence and accuracy.

    With bins :math:`B_b` of ``N`` predictions, :math:`\mathrm{acc}_b` the fraction of hits
    and :math:`\mathrm{conf}_b` the mean confidence in bin :math:`b`:

    .. math::
        \mathrm{ECE}_{l1} = \sum_b \frac{|B_b|}{N} |\mathrm{acc}_b - \mathrm{conf}_b|, \quad
        \mathrm{ECE}_{l2} = \Big(\sum_b \frac{|B_b|}{N}
            (\mathrm{acc}_b - \mathrm{conf}_b)^2\Big)^{1/2}, \quad
        \mathrm{ECE}_{max} = \max_{|B_b| > 0} |\mathrm{acc}_b - \mathrm{conf}_b| .

    ``mode="top_label"`` bins each row's largest probability, a hit being a correct argmax (the
    first maximum on ties); for binary ``(N,)`` inputs it bins the positive-class probability
    against the positive rate (as scikit-learn's ``calibration_curve`` and torchmetrics'
    ``binary_calibration_error``; pass ``(N, 2)`` for the top-label value of a binary problem).
    ``mode="classwise"`` bins every class's probability against ``labels == k`` and combines
    the per-class errors as :math:`(\frac1K \sum_k \mathrm{ECE}_k^p)^{1/p}` (mean for l1, root
    mean square for l2, maximum for max), the marginal calibration error of Kumar et al. 2019;
    for l1 it is Kull et al.'s classwise-ECE and Nixon et al.'s SCE.

    Uniform bins are ``(lo, hi]`` over ``[0, 1]`` (Guo et al.), with 0 in the first bin and
    1.0 in the last. torchmetrics bins ``[lo, hi)`` and puts a confidence of exactly 1.0 in an
    extra bin, so results differ when a confidence lies on an edge or at 1.0 (see
    ``docs/calibration.md``). ``"quantile"`` bins sort the confidences and split them into
    groups of equal count (sizes differ by at most one, the larger first). ``debiased=True``
    (l2 only) is the estimator of Kumar et al. 2019: each bin's squared gap loses
    :math:`\mathrm{acc}_b (1 - \mathrm{acc}_b) / (|B_b| - 1)`, bins with fewer than two
    predictions are dropped, and the sum is clipped at 0 before the square root.

    Args:
        probs: ``(N, K)`` probabilities (rows sum to 1 within 1e-3), or ``(N,)``
            positive-class probabilities; logits with ``from_logits=True``.
        labels: ``(N,)`` integer class indices in ``[0, K)`` (``{0, 1}`` for ``(N,)``).
        n_bins: number of bins (default 15).
        binning: ``"uniform"`` (default) or ``"quantile"``.
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``.
        mode: ``"top_label"`` (default) or ``"classwise"``.
        debiased: Kumar et al.'s debiased estimator; needs ``norm="l2"`` (default ``False``).
        from_logits: inputs are logits (default ``False``).
        validate_args: check contents (finite, in ``[0, 1]``, rows summing to 1, labels in
            range), chunk by chunk; ``False`` skips these checks (default ``True``).

    Shape:
        - probs: ``(N, K)`` or ``(N,)``.
        - labels: ``(N,)``.
        - output: ``()``, float64 for float64 inputs, float32 otherwise.

    Returns:
        The calibration error as a 0-d tensor.

    Example:
        >>> probs = torch.tensor([1.0, 1.0, 0.95, 0.95])
        >>> expected_calibration_error(probs, torch.tensor([1, 0, 1, 1]), n_bins=10)
        tensor(0.2250)

    References:
        Naeini et al., `Obtaining Well Calibrated Probabilities Using Bayesian Binning
        <https://ojs.aaai.org/index.php/AAAI/article/view/9602>`_, 2015.
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
        Kumar et al., `Verified Uncertainty Calibration <https://arxiv.org/abs/1909.10155>`_,
        2019.
    """
    V.check_inputs(probs, labels)
    V.check_debiased_norm(norm, debiased)
    stats, _ = binned_stats(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        classwise=mode == "classwise",
        from_logits=from_logits,
        check=V.content_checks(validate_args),
    )
    error = calibration_error_from_stats(stats, norm, debiased)
    return error.to(_result_dtype(probs))


@constrained(**V.BINNED, binning=V.BINNING, mode=V.MODE)
def maximum_calibration_error(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    mode: str = "top_label",
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Maximum calibration error: the largest gap over non-empty bins.

    .. math::
        \mathrm{MCE} = \max_{|B_b| > 0} |\mathrm{acc}_b - \mathrm{conf}_b|

    This is :func:`expected_calibration_error` with ``norm="max"``; see there for the bins,
    the modes and the arguments.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        n_bins: number of bins (default 15).
        binning: ``"uniform"`` (default) or ``"quantile"``.
        mode: ``"top_label"`` (default) or ``"classwise"`` (maximum over classes).
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The MCE as a 0-d tensor.

    Example:
        >>> probs = torch.tensor([1.0, 1.0, 0.95, 0.95])
        >>> maximum_calibration_error(probs, torch.tensor([1, 0, 1, 1]), n_bins=10)
        tensor(0.2250)

    References:
        Naeini et al., `Obtaining Well Calibrated Probabilities Using Bayesian Binning
        <https://ojs.aaai.org/index.php/AAAI/article/view/9602>`_, 2015.
    """
    return expected_calibration_error(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        norm="max",
        mode=mode,
        from_logits=from_logits,
        validate_args=validate_args,
    )


@constrained(**V.BINNED, classwise=V.FLAG)
def adaptive_calibration_error(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 15,
    classwise: bool = False,
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Adaptive calibration error: the l1 ECE over equal-mass (quantile) bins.

    With ``R = n_bins`` bins holding equal numbers of predictions (sizes differ by at most
    one), ``classwise=False`` gives the top-label AdaECE of Mukhoti et al. 2020,

    .. math::
        \mathrm{AdaECE} = \sum_{r=1}^{R} \frac{|B_r|}{N} |\mathrm{acc}_r - \mathrm{conf}_r|,

    and ``classwise=True`` gives the ACE of Nixon et al. 2019, where every class ``k`` gets
    its own equal-mass bins over all ``N`` probabilities :math:`p_{ik}`:

    .. math::
        \mathrm{ACE} = \frac{1}{K} \sum_{k=1}^{K} \sum_{r=1}^{R}
            \frac{|B_{kr}|}{N} |\mathrm{acc}_{kr} - \mathrm{conf}_{kr}| .

    netcal's ``ACE`` is a different quantity (an unweighted mean over bins); see
    ``docs/calibration.md``. ACE needs every confidence (to sort them), so
    :class:`~crossent.calibration.CalibrationMeter` does not report it.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        n_bins: number of bins ``R`` (default 15).
        classwise: Nixon et al.'s classwise ACE instead of top-label AdaECE (default ``False``).
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The adaptive calibration error as a 0-d tensor.

    Example:
        >>> probs = torch.tensor([0.6, 0.7, 0.8, 0.9])
        >>> adaptive_calibration_error(probs, torch.tensor([0, 1, 1, 1]), n_bins=2)
        tensor(0.1500)

    References:
        Nixon et al., `Measuring Calibration in Deep Learning
        <https://arxiv.org/abs/1904.01685>`_, 2019.
        Mukhoti et al., `Calibrating Deep Neural Networks using Focal Loss
        <https://arxiv.org/abs/2002.09437>`_, 2020.
    """
    return expected_calibration_error(
        probs,
        labels,
        n_bins=n_bins,
        binning="quantile",
        mode="classwise" if classwise else "top_label",
        from_logits=from_logits,
        validate_args=validate_args,
    )


@constrained(**V.BINNED, binning=V.BINNING, norm=V.NORM, debiased=V.FLAG)
def classwise_calibration_error(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    norm: str = "l1",
    debiased: bool = False,
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Classwise calibration error: every class's probability binned against ``labels == k``.

    .. math::
        \mathrm{cwECE} = \frac{1}{K} \sum_{k=1}^{K} \sum_b \frac{|B_{kb}|}{N}
            |\mathrm{acc}_{kb} - \mathrm{conf}_{kb}|

    for l1 (Kull et al. 2019's classwise-ECE, Nixon et al. 2019's SCE); l2 is the root mean
    square and max the maximum of the per-class errors. This is
    :func:`expected_calibration_error` with ``mode="classwise"``.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        n_bins: number of bins per class (default 15).
        binning: ``"uniform"`` (default) or ``"quantile"``.
        norm: ``"l1"`` (default), ``"l2"`` or ``"max"``.
        debiased: Kumar et al.'s debiased l2 estimator (default ``False``).
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The classwise calibration error as a 0-d tensor.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> classwise_calibration_error(probs, torch.tensor([0, 1]), n_bins=10)
        tensor(0.1500)

    References:
        Kull et al., `Beyond temperature scaling: Obtaining well-calibrated multiclass
        probabilities with Dirichlet calibration <https://arxiv.org/abs/1910.12656>`_, 2019.
    """
    return expected_calibration_error(
        probs,
        labels,
        n_bins=n_bins,
        binning=binning,
        norm=norm,
        mode="classwise",
        debiased=debiased,
        from_logits=from_logits,
        validate_args=validate_args,
    )


@constrained(**V.METRIC)
def brier_score(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Brier score: the mean squared distance between the probabilities and the one-hot label.

    .. math::
        \mathrm{BS} = \frac1N \sum_{i=1}^{N} \sum_{k=1}^{K} (p_{ik} - y_{ik})^2
        \quad \text{for } (N, K), \qquad
        \mathrm{BS} = \frac1N \sum_{i=1}^{N} (p_i - y_i)^2 \quad \text{for } (N,).

    The ``(N,)`` value equals scikit-learn's ``brier_score_loss``; it is half the ``(N, 2)``
    value of the same predictions, because the two columns' errors are equal. Range: ``[0, 2]``
    for ``(N, K)``, ``[0, 1]`` for ``(N,)``.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The Brier score as a 0-d tensor.

    Example:
        >>> brier_score(torch.tensor([0.9, 0.2]), torch.tensor([1, 0]))
        tensor(0.0250)
        >>> brier_score(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 0]))
        tensor(0.0500)

    References:
        Brier, `Verification of forecasts expressed in terms of probability
        <https://doi.org/10.1175/1520-0493(1950)078%3C0001:VOFEIT%3E2.0.CO;2>`_, 1950.
    """
    return _row_mean(probs, labels, "brier", from_logits=from_logits, validate_args=validate_args)


@constrained(**V.METRIC)
def negative_log_likelihood(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    from_logits: bool = False,
    validate_args: bool = True,
) -> torch.Tensor:
    r"""Mean negative log-likelihood of the labels (cross-entropy, log loss).

    .. math::
        \mathrm{NLL} = -\frac1N \sum_{i=1}^{N} \log \max(p_{i, y_i}, \varepsilon)

    From probabilities, :math:`p_{i,y_i}` is clipped below at
    :math:`\varepsilon` = ``torch.finfo(probs.dtype).eps`` (as scikit-learn's ``log_loss``), so
    a confident mistake costs at most :math:`-\log\varepsilon` (36.04 in float64, 15.94 in
    float32, 6.93 in float16). From logits (``from_logits=True``) the log-probability is exact,
    :math:`z_y - \operatorname{logsumexp}(z)`, without clipping. For ``(N,)`` inputs,
    :math:`p_{i,y_i}` is :math:`p_i` for a positive and :math:`1 - p_i` for a negative.

    Args:
        probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities.
        labels: ``(N,)`` integer class indices.
        from_logits: inputs are logits (default ``False``).
        validate_args: run the content checks (default ``True``).

    Returns:
        The mean NLL as a 0-d tensor.

    Example:
        >>> negative_log_likelihood(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.tensor([0, 0]))
        tensor(0.3993)
    """
    return _row_mean(probs, labels, "nll", from_logits=from_logits, validate_args=validate_args)


def _row_mean(
    probs: torch.Tensor,
    labels: torch.Tensor,
    which: str,
    *,
    from_logits: bool,
    validate_args: bool,
) -> torch.Tensor:
    """Mean over rows of the Brier score or the NLL, accumulated in float64 chunk by chunk."""
    num_classes = V.check_inputs(probs, labels)
    check = V.content_checks(validate_args)
    total = torch.zeros((), dtype=torch.float64, device=probs.device)
    for batch in iter_batches(
        probs, labels, from_logits=from_logits, check=check, num_classes=num_classes
    ):
        total += batch.brier_sum() if which == "brier" else batch.nll_sum()
    return (total / probs.shape[0]).to(_result_dtype(probs))
