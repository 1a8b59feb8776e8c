"""A streaming calibration meter: per-bin sums, mergeable and all-reducible across processes."""

from __future__ import annotations

import torch

from crossent.calibration import _validation as V
from crossent.calibration.binning import (
    add_counts,
    calibration_error_from_stats,
    iter_batches,
    uniform_key,
)
from crossent.core.checks import fail
from crossent.core.params import NONE, Integer, constrained


class CalibrationMeter:
    r"""Streaming ECE, MCE, RMSCE, Brier score, NLL and accuracy with memory independent of N.

    The state is the per-bin sufficient statistics of uniform ``(lo, hi]`` bins (counts,
    confidence sums, hit counts: ``3 * n_bins`` float64 numbers) plus the sums of the Brier
    score, the NLL and the correct predictions, and the row count. :meth:`update` adds a batch,
    :meth:`merge` adds another meter, :meth:`sync` all-reduces the sums across the processes of
    a ``torch.distributed`` group. Every sum is float64, so streaming over batches or processes
    equals the one-shot functions (:func:`~crossent.calibration.expected_calibration_error`,
    :func:`~crossent.calibration.brier_score`, ...) to about 1e-12 for float64 inputs. The
    adaptive calibration error needs every confidence (to sort them) and is therefore not
    reported; compute it with :func:`~crossent.calibration.adaptive_calibration_error`.

    A meter pickled into another process (``torch.multiprocessing.spawn``, a ``DataLoader``
    worker) carries a copy of its statistics: what one process adds never reaches another
    except through :meth:`sync` or :meth:`merge`.

    Inputs follow the metric functions: ``(N, K)`` probabilities, binned top-label, or ``(N,)``
    positive-class probabilities of a binary problem, binned against the positive rate (a meter
    takes one kind, not both); logits with ``from_logits=True``.

    Args:
        n_bins: number of uniform bins (default 15).
        num_classes: expected ``K`` (2 for ``(N,)`` inputs); ``None`` (default) takes it from
            the first update, and later updates must match.
        from_logits: updates are logits (default ``False``).
        validate_args: run the content checks of the metric functions (default ``True``).

    Example:
        >>> meter = CalibrationMeter(n_bins=10)
        >>> meter.update(torch.tensor([1.0, 1.0]), torch.tensor([1, 0]))
        >>> meter.update(torch.tensor([0.95, 0.95]), torch.tensor([1, 1]))
        >>> round(meter.compute()["ece"], 6), meter.compute()["n"]
        (0.225, 4)

    References:
        Guo et al., `On Calibration of Modern Neural Networks
        <https://arxiv.org/abs/1706.04599>`_, 2017.
    """

    @constrained(**V.BINNED, num_classes=Integer(2) | NONE)
    def __init__(
        self,
        n_bins: int = 15,
        num_classes: int | None = None,
        *,
        from_logits: bool = False,
        validate_args: bool = True,
    ) -> None:
        self.n_bins = n_bins
        self.num_classes = num_classes
        self.from_logits = from_logits
        self.validate_args = validate_args
        self._binary: bool | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every update (the number of classes given at construction is kept)."""
        # Layout: 3 * n_bins bin statistics, then brier sum, nll sum, correct count, row count.
        self._state = torch.zeros(3 * self.n_bins + 4, dtype=torch.float64)
        self._reduced: torch.Tensor | None = None

    def update(
        self, probs: torch.Tensor, labels: torch.Tensor, *, from_logits: bool | None = None
    ) -> None:
        """Add a batch of predictions.

        Args:
            probs: ``(N, K)`` probabilities or ``(N,)`` positive-class probabilities (logits
                with ``from_logits=True``).
            labels: ``(N,)`` integer class indices.
            from_logits: whether this batch is logits; default ``None`` uses the meter's
                ``from_logits``.
        """
        num_classes = V.check_inputs(probs, labels)
        logits = (
            self.from_logits if from_logits is None else V.check_bool("from_logits", from_logits)
        )
        self._check_kind(probs.dim() == 1, num_classes, "probs")
        check = V.content_checks(self.validate_args)
        stats = torch.zeros(3, 1, self.n_bins, dtype=torch.float64, device=probs.device)
        sums = torch.zeros(3, dtype=torch.float64, device=probs.device)
        for batch in iter_batches(
            probs, labels, from_logits=logits, check=check, num_classes=num_classes
        ):
            conf, hits = batch.top_label
            add_counts(stats, uniform_key(conf, hits, self.n_bins), conf)
            sums[0] += batch.brier_sum()
            sums[1] += batch.nll_sum()
            if probs.dim() == 1:
                sums[2] += batch.correct().sum()
        if probs.dim() == 2:  # top-label hits are the correct predictions
            sums[2] = stats[2].sum()
        n = torch.tensor([probs.shape[0]], dtype=torch.float64)
        self._state += torch.cat((stats.flatten().cpu(), sums.cpu(), n))
        self._reduced = None

    def merge(self, other: CalibrationMeter) -> CalibrationMeter:
        """Add the statistics of ``other`` (same ``n_bins`` and kind) into this meter.

        Returns:
            This meter, for chaining.
        """
        if not isinstance(other, CalibrationMeter):
            raise TypeError(
                f"Expected `other` to be a CalibrationMeter, but got {type(other).__name__}"
            )
        if other.n_bins != self.n_bins:
            raise fail("other", f"to have n_bins={self.n_bins}", other.n_bins)
        if other._binary is not None and other.num_classes is not None:
            self._check_kind(other._binary, other.num_classes, "other")
        self._state += other._state
        self._reduced = None
        return self

    def sync(self, group: object | None = None) -> None:
        """Sum the statistics over the processes of a ``torch.distributed`` group.

        A collective: every process of ``group`` (default: the world) must call it. Afterwards
        :meth:`compute` reports the totals on every process, until the next :meth:`update`,
        :meth:`merge` or :meth:`reset`; calling it again re-reduces the local statistics, so it
        never counts a batch twice. Without an initialised process group it does nothing.
        With the NCCL back end the sums travel on the current CUDA device.

        Args:
            group: the process group (default ``None``: the default group).
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        buffer = self._state.clone()
        if dist.get_backend(group) == "nccl":
            buffer = buffer.cuda()
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
        self._reduced = buffer.cpu()

    def compute(self) -> dict[str, float | int]:
        """The metrics of everything seen so far (after :meth:`sync`: of every process).

        Returns:
            ``{"ece", "mce", "rmsce", "brier", "nll", "accuracy"}`` as floats and ``"n"``, the
            number of predictions, as an int. ``ece``/``mce``/``rmsce`` are the l1/max/l2
            calibration errors of :func:`~crossent.calibration.expected_calibration_error`.
        """
        state = self._state if self._reduced is None else self._reduced
        n = int(state[-1])
        if n == 0:
            raise RuntimeError("CalibrationMeter.compute() needs at least one update")
        stats = state[: 3 * self.n_bins].view(3, 1, self.n_bins)
        brier, nll, correct = state[3 * self.n_bins : -1].tolist()
        return {
            "ece": calibration_error_from_stats(stats, "l1", False).item(),
            "mce": calibration_error_from_stats(stats, "max", False).item(),
            "rmsce": calibration_error_from_stats(stats, "l2", False).item(),
            "brier": brier / n,
            "nll": nll / n,
            "accuracy": correct / n,
            "n": n,
        }

    def __getstate__(self) -> dict[str, object]:
        """The meter's attributes, with the statistics as NumPy copies.

        ``torch.multiprocessing`` pickles tensors as handles to shared memory, so a meter sent
        to other processes (``torch.multiprocessing.spawn``, a ``DataLoader`` worker) would
        share one statistics tensor and every process would add into it: a later
        :meth:`sync` then counted each batch once per process. NumPy arrays pickle by value,
        so every process gets its own copy of the statistics at the time of pickling.
        """
        state = dict(self.__dict__)
        for name in ("_state", "_reduced"):
            if state[name] is not None:
                state[name] = state[name].numpy().copy()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name in ("_state", "_reduced"):
            if state[name] is not None:
                state[name] = torch.from_numpy(state[name])
        self.__dict__.update(state)

    def _check_kind(self, binary: bool, num_classes: int, name: str) -> None:
        """Check that new statistics are of the kind (binary or K classes) seen so far."""
        if self.num_classes is not None and num_classes != self.num_classes:
            raise fail(name, f"to have {self.num_classes} classes", num_classes)
        if self._binary is not None and binary != self._binary:
            kinds = ("(N, K) top-label", "(N,) binary")
            raise V.bad(
                name,
                f"to hold {kinds[self._binary]} predictions like the earlier updates",
                f"{kinds[binary]} predictions",
            )
        self.num_classes = num_classes
        self._binary = binary

    def __repr__(self) -> str:
        n = int(self._state[-1])
        return f"CalibrationMeter(n_bins={self.n_bins}, num_classes={self.num_classes}, n={n})"
