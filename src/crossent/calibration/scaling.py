"""Post-hoc calibration maps fitted by minimum NLL: temperature, vector, matrix, Platt scaling.

Every scaler is a :class:`torch.nn.Module` with the same interface: ``fit(logits, labels)``
(returns the scaler), then calling it on logits returns calibrated logits in the input dtype.
Fits run in float64 on held-out data (the validation set, never the training set); they raise
``ValueError`` with fewer than 20 rows or a single class in ``labels``, and ``RuntimeError``
when the optimiser fails.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from crossent.calibration import _validation as V
from crossent.core import checks, config
from crossent.core.checks import check_real, check_tensor
from crossent.core.params import Custom, Real, constrained
from crossent.core.targets import ProbabilityInputWarning


def _nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean NLL of float64 logits: softmax for ``(N, K)``, sigmoid for ``(N,)``."""
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


def _lbfgs(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], max_iter: int) -> None:
    """Minimise ``loss_fn`` over ``params`` with L-BFGS and a strong-Wolfe line search."""
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        final = loss_fn()
    if not bool(torch.isfinite(final)) or not all(bool(torch.isfinite(p).all()) for p in params):
        raise RuntimeError("L-BFGS did not converge: the fitted parameters or NLL are not finite")


def _warn_if_probabilities(scaler: str, logits: torch.Tensor) -> None:
    """Warn (as the metrics do) when the logits given to ``fit`` look like probabilities."""
    evidence = V.probability_evidence(logits.detach())
    if evidence is not None:
        inverse = "torch.log(probs)" if logits.dim() == 2 else "torch.logit(probs)"
        warnings.warn(
            f"{scaler}.fit takes logits, but `logits` look like probabilities ({evidence}); "
            f"the fit treats them as logits anyway: pass {inverse} instead",
            ProbabilityInputWarning,
            stacklevel=3,
        )


def _check_classes(scaler: nn.Module, logits: torch.Tensor, num_classes: int) -> None:
    """Raise unless ``logits`` is ``(N, K)`` with the ``K`` classes the scaler was fitted on."""
    check_tensor("logits", logits)
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise V.bad(
            "logits",
            f"to have shape (N, {num_classes}) (the {num_classes} classes "
            f"{type(scaler).__name__} was fitted on)",
            f"shape {tuple(logits.shape)}",
        )


def _check_bounds(name: str, bounds: object) -> tuple[float, float]:
    """Temperature scaling's search interval ``(low, high)``, ``0 < low < high``."""
    if not isinstance(bounds, tuple) or len(bounds) != 2:
        raise checks.ArgumentTypeError(
            f"Expected `{name}` to be a (low, high) tuple, but got {checks.described(bounds)}"
        )
    low = check_real(f"{name}[0]", bounds[0], low=0, low_open=True)
    return low, check_real(f"{name}[1]", bounds[1], low=low, low_open=True)


class TemperatureScaling(nn.Module):
    r"""Temperature scaling: divide the logits by one scalar ``T`` fitted by minimum NLL.

    .. math::
        \hat z = z / T, \qquad
        T = \exp\Big(\arg\min_{\tau \in [\log T_{lo}, \log T_{hi}]}
            \mathrm{NLL}(z / e^{\tau}, y)\Big)

    The NLL is a one-dimensional function of :math:`\tau = \log T` with a single minimum
    (it is convex in :math:`1/T`), which a bounded Brent search (``scipy.optimize.
    minimize_scalar(method="bounded")``) finds to ``1e-8`` in :math:`\tau`. Dividing by a
    positive ``T`` never changes the argmax, so accuracy is unchanged. ``(N,)`` binary logits
    are scaled the same way under a sigmoid.

    Args:
        temperature: the temperature before fitting (default 1.0, the identity).
        bounds: the search interval of ``T`` (default ``(0.01, 100.0)``); a fit that ends on
            a bound raises ``RuntimeError``.

    Shape:
        - logits: ``(N, K)`` or ``(N,)``; labels ``(N,)``.
        - output: same shape and dtype as the logits.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> z = torch.randn(500, 5)
        >>> y = torch.distributions.Categorical(logits=z).sample()
        >>> scaler = TemperatureScaling().fit(3 * z, y)
        >>> 2.5 < scaler.temperature < 3.5
        True
        >>> calibrated = scaler(3 * z)

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """

    log_temperature: torch.Tensor

    @constrained(
        temperature=Real(0, open="low"),
        bounds=Custom(
            _check_bounds, ((0, 1), (2.0, 1.0), 5), "a (low, high) tuple with 0 < low < high"
        ),
    )
    def __init__(
        self, temperature: float = 1.0, *, bounds: tuple[float, float] = (0.01, 100.0)
    ) -> None:
        super().__init__()
        self.bounds = bounds
        self.register_buffer("log_temperature", torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> float:
        """The current temperature ``T`` (1.0 until fitted, unless given)."""
        return math.exp(float(self.log_temperature))

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> TemperatureScaling:
        """Fit ``T`` by minimising the NLL of ``softmax(logits / T)`` on held-out data.

        Args:
            logits: ``(N, K)`` logits (``(N,)`` for binary), ``N >= 20``.
            labels: ``(N,)`` class indices with at least two classes present.

        Returns:
            The fitted scaler.
        """
        from scipy.optimize import minimize_scalar

        V.check_fit_inputs(logits, labels, allow_masked=True)
        _warn_if_probabilities("TemperatureScaling", logits)
        z = logits.detach().double()
        y = labels.detach()

        def objective(tau: float) -> float:
            with torch.no_grad():
                return float(_nll(z * math.exp(-tau), y))

        low, high = math.log(self.bounds[0]), math.log(self.bounds[1])
        result = minimize_scalar(
            objective, bounds=(low, high), method="bounded", options={"xatol": 1e-8}
        )
        tau, best = float(result.x), float(result.fun)
        if not result.success or not (math.isfinite(tau) and math.isfinite(best)):
            message = getattr(result, "message", "no message")
            raise RuntimeError(f"temperature scaling failed to converge: {message}")
        if min(tau - low, high - tau) < 1e-4:
            raise RuntimeError(
                f"temperature scaling ended on the bound T = {math.exp(tau):.4g} of "
                f"`bounds` = {self.bounds}: the NLL has no minimum inside (separable data?)"
            )
        # a strict minimum: a 0.1% change of T must cost NLL (it is flat when the NLL rounds
        # to 0, i.e. on perfectly separated data, and then T is not identifiable)
        if not objective(tau - 1e-3) > best < objective(tau + 1e-3):
            raise RuntimeError(
                f"temperature scaling found no strict minimum: the NLL is flat "
                f"({best:.3g}) around T = {math.exp(tau):.4g} (separable data?)"
            )
        self.log_temperature.fill_(tau)
        return self

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Return ``logits / T`` in the dtype of ``logits``."""
        return logits / self.temperature


class VectorScaling(nn.Module):
    r"""Vector scaling: a per-class scale and bias on the logits, fitted by minimum NLL.

    .. math::
        \hat z_k = w_k z_k + b_k

    fitted by L-BFGS from the identity (:math:`w = 1, b = 0`). Unlike temperature scaling it
    can change the argmax. Logits must be finite.

    Args:
        max_iter: L-BFGS iterations (default 200).

    Shape:
        - logits: ``(N, K)``; labels ``(N,)``.
        - output: ``(N, K)`` in the dtype of the logits.

    Example:
        >>> z, y = torch.randn(100, 3), torch.arange(100) % 3
        >>> calibrated = VectorScaling().fit(z, y)(z)
        >>> calibrated.shape
        torch.Size([100, 3])

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """

    weight: torch.Tensor | None
    bias: torch.Tensor | None

    @constrained(max_iter=V.MAX_ITER)
    def __init__(self, *, max_iter: int = 200) -> None:
        super().__init__()
        self.max_iter = max_iter
        self.register_buffer("weight", None)
        self.register_buffer("bias", None)

    def _initial_weight(self, num_classes: int) -> torch.Tensor:
        return torch.ones(num_classes, dtype=torch.float64)

    def _apply_map(self, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return z * weight + bias

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> VectorScaling:
        """Fit the map by minimising the NLL of the calibrated logits on held-out data.

        Args:
            logits: ``(N, K)`` finite logits, ``N >= 20``.
            labels: ``(N,)`` class indices with at least two classes present.

        Returns:
            The fitted scaler.
        """
        num_classes = V.check_fit_inputs(logits, labels, dims=(2,))
        _warn_if_probabilities(type(self).__name__, logits)
        z = logits.detach().double()
        y = labels.detach()
        weight = self._initial_weight(num_classes).to(z.device).requires_grad_()
        bias = torch.zeros(num_classes, dtype=torch.float64, device=z.device, requires_grad=True)
        _lbfgs([weight, bias], lambda: _nll(self._apply_map(z, weight, bias), y), self.max_iter)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the calibrated logits in the dtype of ``logits``."""
        if self.weight is None or self.bias is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(logits, labels)")
        _check_classes(self, logits, self.bias.shape[0])
        calibrated = self._apply_map(logits.double(), self.weight, self.bias)
        return calibrated.to(logits.dtype)


class MatrixScaling(VectorScaling):
    r"""Matrix scaling: a full linear map of the logits, fitted by minimum NLL.

    .. math::
        \hat z = W z + b

    fitted by L-BFGS from the identity (:math:`W = I, b = 0`). It has :math:`K^2 + K`
    parameters and overfits with many classes and few rows (Guo et al.); prefer temperature
    or vector scaling there. Logits must be finite.

    Args:
        max_iter: L-BFGS iterations (default 200).

    Shape:
        - logits: ``(N, K)``; labels ``(N,)``.
        - output: ``(N, K)`` in the dtype of the logits.

    Example:
        >>> z, y = torch.randn(100, 3), torch.arange(100) % 3
        >>> MatrixScaling().fit(z, y).weight.shape
        torch.Size([3, 3])

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """

    def _initial_weight(self, num_classes: int) -> torch.Tensor:
        return torch.eye(num_classes, dtype=torch.float64)

    def _apply_map(self, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return z @ weight.t() + bias


class PlattScaling(nn.Module):
    r"""Platt scaling of binary scores: a logistic regression on one score.

    .. math::
        \hat z = a s + b, \qquad \hat p = \sigma(a s + b)

    ``a`` and ``b`` minimise the cross-entropy against Platt's smoothed targets
    :math:`t_+ = (N_+ + 1)/(N_+ + 2)` and :math:`t_- = 1/(N_- + 2)` (a prior that keeps the fit
    finite on separable data, as scikit-learn's ``CalibratedClassifierCV(method="sigmoid")``),
    by L-BFGS in float64 on scores divided by ``max(1, max|s|)``.

    The scores ``s`` are logits or decision values (any real, default) or, with
    ``from_probs=True``, positive-class probabilities, which are mapped to logits
    :math:`s = \log p - \log(1 - p)` after clipping to :math:`[\varepsilon, 1 - \varepsilon]`
    (:math:`\varepsilon` the dtype's machine epsilon). Calling the scaler on scores of the same
    kind returns calibrated logits; ``torch.sigmoid`` of them are the probabilities.

    Args:
        from_probs: the scores are probabilities (default ``False``: logits).
        max_iter: L-BFGS iterations (default 200).

    Shape:
        - scores: ``(N,)``; labels ``(N,)`` in ``{0, 1}``.
        - output: ``(N,)`` logits in the dtype of the scores.

    Example:
        >>> s = torch.linspace(-3, 3, 40)
        >>> y = (torch.arange(40) % 4 != 0).long()
        >>> probs = torch.sigmoid(PlattScaling().fit(s, y)(s))

    References:
        Platt, `Probabilistic Outputs for Support Vector Machines and Comparisons to
        Regularized Likelihood Methods <https://home.cs.colorado.edu/~mozer/Teaching/
        syllabi/6622/papers/Platt1999.pdf>`_, 1999.
    """

    weight: torch.Tensor | None
    bias: torch.Tensor | None

    @constrained(from_probs=V.FLAG, max_iter=V.MAX_ITER)
    def __init__(self, *, from_probs: bool = False, max_iter: int = 200) -> None:
        super().__init__()
        self.from_probs = from_probs
        self.max_iter = max_iter
        self.register_buffer("weight", None)
        self.register_buffer("bias", None)

    def _scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores as float64 logits (probabilities are clipped and mapped to logits)."""
        s = scores.detach().double()
        if not self.from_probs:
            return s
        eps = torch.finfo(scores.dtype).eps
        p = s.clamp(eps, 1 - eps)
        # logit(p) = log p - log(1 - p), with log(1 - p) = log1p(-p)
        return p.log() - torch.log1p(-p)

    def fit(self, scores: torch.Tensor, labels: torch.Tensor) -> PlattScaling:
        """Fit ``a`` and ``b`` on held-out binary scores.

        Args:
            scores: ``(N,)`` logits (probabilities with ``from_probs=True``), ``N >= 20``.
            labels: ``(N,)`` labels in ``{0, 1}``, both present.

        Returns:
            The fitted scaler.
        """
        V.check_fit_inputs(scores, labels, dims=(1,), name="scores")
        if self.from_probs and config.validate_args():
            hint = "use PlattScaling() without from_probs for logits"
            V.check_probs_chunk(scores, "scores", hint)
        s = self._scores(scores)
        scale = float(s.abs().max().clamp(min=1))
        s = s / scale
        positive = labels.detach() == 1
        n_pos = float(positive.sum())
        n_neg = positive.numel() - n_pos
        targets = torch.where(positive, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)).double()
        ab = torch.tensor([1.0, 0.0], dtype=torch.float64, device=s.device, requires_grad=True)
        _lbfgs(
            [ab],
            lambda: F.binary_cross_entropy_with_logits(ab[0] * s + ab[1], targets),
            self.max_iter,
        )
        self.weight, self.bias = ab.detach()[0] / scale, ab.detach()[1]
        return self

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """Return the calibrated logits ``a s + b`` in the dtype of ``scores``."""
        if self.weight is None or self.bias is None:
            raise RuntimeError("PlattScaling is not fitted: call fit(scores, labels)")
        if check_tensor("scores", scores).dim() != 1:
            raise V.bad(
                "scores",
                "to have shape (N,) (one binary score per row; for (N, 2) logits pass the "
                "margin z[:, 1] - z[:, 0])",
                f"shape {tuple(scores.shape)}",
            )
        return (self.weight * self._scores(scores) + self.bias).to(scores.dtype)
