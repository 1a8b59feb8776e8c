"""Argument and input checks of :mod:`crossent.calibration`, built on :mod:`crossent.core.checks`.

Shape, dtype and value checks of Python arguments always run. Checks that read tensor contents
(finiteness, probabilities in ``[0, 1]``, rows summing to one, label range) run chunk by chunk
inside the metric's single pass over the data, so they cost a few cheap reductions of data that
is already in cache; ``validate_args=False`` (or :func:`crossent.set_validation`) skips them.
"""

from __future__ import annotations

import math
import warnings

import torch

from crossent.core import config
from crossent.core.checks import check_floating, check_tensor, fail
from crossent.core.params import Boolean, Integer, Options
from crossent.core.targets import ProbabilityInputWarning

#: Rows of a probability matrix must sum to one within this absolute tolerance (or the dtype's
#: machine epsilon where that is larger, i.e. for bfloat16): loose enough for float16 softmax
#: outputs and CSV files rounded to four decimals, tight enough to catch logits and scores.
ROW_SUM_ATOL = 1e-3

#: Fewer rows than this cannot support a calibration fit.
MIN_FIT_ROWS = 20

#: The largest ``n_bins``. A bin's accuracy is a mean of its hits, so with ``B`` bins the error
#: is noise unless there are many predictions per bin: 10,000 bins already need about 10^6
#: predictions for 100 per bin, more than most evaluation sets hold. Memory grows with ``B``
#: (about 56 bytes per bin and group while binning, 3 float64 numbers per bin in a meter's
#: state; classwise binning has one group per class), so the bound also keeps a mistyped
#: ``n_bins`` from asking for gigabytes: 10,000 bins cost 0.6 MB, 56 MB over 100 classes.
MAX_BINS = 10_000


# The metrics' and scalers' arguments, declared once (crossent.core.params).
N_BINS = Integer(1, MAX_BINS, note="(more bins hold too few predictions each)")
BINNING = Options(("uniform", "quantile"))
NORM = Options(("l1", "l2", "max"))
MODE = Options(("top_label", "classwise"))
FLAG = Boolean()
MAX_ITER = Integer(1)
METRIC = {"from_logits": FLAG, "validate_args": FLAG}  # every metric's switches
BINNED = {**METRIC, "n_bins": N_BINS}


def bad(name: str, expected: str, got: str) -> ValueError:
    """Like :func:`crossent.core.checks.fail`, with ``got`` written as plain text (no ``repr``)."""
    return ValueError(f"Expected `{name}` {expected}, but got {got}")


def check_n_bins(n_bins: object) -> int:
    """Return ``n_bins`` after checking it is an integer in ``[1, MAX_BINS]``."""
    return N_BINS.check("n_bins", n_bins)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` after checking it is a ``bool``."""
    return FLAG.check(name, value)


def check_debiased_norm(norm: str, debiased: bool) -> None:
    """Kumar et al.'s debiased estimator is of the squared (``"l2"``) error."""
    if debiased and norm != "l2":
        raise fail("norm", "to be 'l2' when `debiased=True` (Kumar et al.'s estimator)", norm)


def content_checks(validate_args: object) -> bool:
    """Whether checks that read tensor contents run (per-call switch and global switch)."""
    return check_bool("validate_args", validate_args) and config.validate_args()


def check_inputs(probs: torch.Tensor, labels: torch.Tensor, name: str = "probs") -> int:
    """Check shapes and dtypes of ``(probs, labels)`` and return the number of classes.

    ``probs`` is ``(N, K)`` with ``K >= 2``, or ``(N,)`` positive-class values of a binary
    problem (then 2 is returned); ``labels`` is an integer or bool ``(N,)`` tensor, ``N >= 1``.
    """
    probs = check_tensor(name, probs)
    labels = check_tensor("labels", labels)
    check_floating(name, probs)
    if probs.dim() not in (1, 2):
        raise bad(name, "to have shape (N, K) or (N,)", f"shape {tuple(probs.shape)}")
    if probs.dim() == 2 and probs.shape[1] < 2:
        raise bad(name, "to have at least 2 columns (classes)", f"shape {tuple(probs.shape)}")
    if probs.shape[0] < 1:
        raise bad(name, "to have at least one row", f"shape {tuple(probs.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"Expected `labels` to have an integer dtype, but got {labels.dtype}")
    if labels.shape != probs.shape[:1]:
        raise bad(
            "labels",
            f"to have shape ({probs.shape[0]},) to match `{name}`",
            f"shape {tuple(labels.shape)}",
        )
    return 2 if probs.dim() == 1 else probs.shape[1]


def check_labels_chunk(labels: torch.Tensor, num_classes: int) -> None:
    """Raise unless every label lies in ``[0, num_classes)``."""
    low, high = torch.aminmax(labels.long())
    if low < 0 or high >= num_classes:
        value = int(low) if low < 0 else int(high)
        raise fail("labels", f"to be class indices in [0, {num_classes - 1}]", value)


def check_probs_chunk(
    probs: torch.Tensor, name: str = "probs", hint: str = "pass from_logits=True for logits"
) -> None:
    """Raise unless ``probs`` holds finite probabilities whose rows (if 2-D) sum to one.

    ``hint`` ends the message: what to do instead when the values are logits.
    """
    low, high = torch.aminmax(probs)
    if not bool(torch.isfinite(low) & torch.isfinite(high)):
        raise fail(name, "to be finite", float(high if torch.isfinite(low) else low))
    if low < 0 or high > 1:
        value = float(low) if low < 0 else float(high)
        raise fail(name, f"to hold probabilities in [0, 1] ({hint})", value)
    if probs.dim() == 2:
        dtype = torch.float64 if probs.dtype == torch.float64 else torch.float32
        low, high = torch.aminmax(probs.sum(dim=1, dtype=dtype))
        tol = max(ROW_SUM_ATOL, torch.finfo(probs.dtype).eps)
        if low < 1 - tol or high > 1 + tol:
            total = float(low) if 1 - low > high - 1 else float(high)
            raise bad(
                name, f"rows to sum to 1 (within {tol:g}; {hint})", f"a row summing to {total:.6g}"
            )


def check_finite_lse(lse: torch.Tensor, name: str = "probs") -> None:
    """Raise unless every row's log-sum-exp of the logits is finite (no NaN/+inf, not all -inf)."""
    if not bool(torch.isfinite(lse).all()):
        raise bad(
            name,
            "(logits, from_logits=True) to be finite with at least one finite logit per row",
            "a row with NaN, +inf or only -inf",
        )


def probability_evidence(logits: torch.Tensor) -> str | None:
    """Why ``logits`` look like probabilities (``"all in [0, 1]..."``), or ``None``.

    Always ``None`` when the warning is switched off (:func:`crossent.set_probability_warning`).
    """
    # a few binary logits in [0, 1] are no evidence; a row summing to 1 is
    if not config.warn_probabilities() or logits.numel() < (16 if logits.dim() == 1 else 1):
        return None
    low, high = torch.aminmax(logits)
    if not (low >= 0 and high <= 1):
        return None
    if logits.dim() != 2:
        return "all in [0, 1]"
    if bool(torch.all((logits.sum(dim=1) - 1).abs() <= ROW_SUM_ATOL)):
        return "all in [0, 1] and rows sum to 1"
    return None


def warn_if_probabilities(logits: torch.Tensor) -> None:
    """Warn (never change the result) when ``from_logits=True`` data look like probabilities."""
    evidence = probability_evidence(logits)
    if evidence is not None:
        warnings.warn(
            f"from_logits=True but the inputs look like probabilities ({evidence}); "
            "a softmax/sigmoid will be applied anyway",
            ProbabilityInputWarning,
            stacklevel=4,
        )


def check_fit_inputs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    dims: tuple[int, ...] = (1, 2),
    allow_masked: bool = False,
    name: str = "logits",
) -> int:
    """Check the data given to a scaler's ``fit`` and return the number of classes.

    Raises ``ValueError`` with fewer than :data:`MIN_FIT_ROWS` rows, a single class in
    ``labels``, a shape not allowed by ``dims`` (1: ``(N,)``, 2: ``(N, K)``), NaN or infinite
    logits (``-inf`` is allowed with ``allow_masked``) or out-of-range labels; the content checks
    obey the global switch :func:`crossent.set_validation`.
    """
    num_classes = check_inputs(logits, labels, name=name)
    if logits.dim() not in dims:
        expected = "(N,) (binary scores)" if dims == (1,) else "(N, K)"
        raise bad(name, f"to have shape {expected}", f"shape {tuple(logits.shape)}")
    if logits.shape[0] < MIN_FIT_ROWS:
        raise bad(name, f"to have at least {MIN_FIT_ROWS} rows to fit", f"{logits.shape[0]} rows")
    if config.validate_args():
        check_labels_chunk(labels, num_classes)
        # NaN < inf and inf < inf are both False: one comparison finds NaN and +inf.
        finite = logits < math.inf if allow_masked else torch.isfinite(logits)
        if not bool(finite.all()):
            allowed = " (or -inf for masked classes)" if allow_masked else ""
            raise bad(name, f"to be finite{allowed}", "NaN or infinite values")
    classes = torch.unique(labels)
    if classes.numel() < 2:
        raise bad("labels", "to contain at least two classes", f"only class {int(classes[0])}")
    return num_classes
