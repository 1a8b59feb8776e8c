"""The figures of a tagging study (token classification under label noise).

Besides the figures every study draws (:mod:`crossent.study.figures`):

* :func:`q_heatmaps` — entity F1 over GCE's ``q`` × noise rate, one panel per loss with a
  ``q`` grid (and per value of its other grid keys, e.g. each smoothing ``s`` of SGCE);
* :func:`smoothing_calibration` — ECE and MCE against the noise rate, one line per smoothing
  value, on the test split and on the validation split with noisy and with clean labels;
* :func:`loss_curves` — training loss per epoch, one panel per noise rate, one line per loss
  (and ``q``);
* :func:`reliability_at` — reliability diagrams (10 bins) at the noise rate nearest 0.6.

Example:
    >>> from crossent.study.results import Results
    >>> q_heatmaps(Results("s", {}, []), "/tmp") is None
    True
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from crossent.study.figures import (
    FigureFile,
    _colors,
    _figure,
    _legend,
    _save,
    reliability,
    title_of,
)
from crossent.study.results import Results
from crossent.study.store import Store

#: The noise rate of the reliability diagrams (the original experiment's n = 0.6).
RELIABILITY_RATE = 0.6


def _smoothing(loss: dict[str, Any]) -> float:
    """The label smoothing of a loss variant (0 without; SGCE's default counts)."""
    params = loss["params"]
    if "label_smoothing" in params:
        return float(params["label_smoothing"])
    return 0.1 if loss["name"] == "sgce" else 0.0


def first_kind(results: Results) -> tuple[str, list[dict[str, Any]]]:
    """The study's first noise kind and its rows (with the clean ones).

    The figures over the noise rate draw one kind; a study of several kinds shows the others
    in the line plots and tables of every study.
    """
    kinds = [s[0] for s in results.settings if s[0] != "none"] or ["none"]
    return kinds[0], [r for r in results.rows if r["setting"][0] in ("none", kinds[0])]


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [r["metrics"].get(key) for r in rows]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _panels(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """``(label, other grid values, rows)`` of each loss arm with a ``q`` grid."""
    panels: dict[tuple[str, str], tuple[str, dict[str, Any], list[dict[str, Any]]]] = {}
    for row in rows:
        grid = row["loss"]["grid"]
        if "q" not in grid:
            continue
        rest = {k: v for k, v in grid.items() if k != "q"}
        key = (row["label"], repr(sorted(rest.items())))
        panels.setdefault(key, (row["label"], rest, []))[2].append(row)
    return [p for p in panels.values() if len({r["loss"]["grid"]["q"] for r in p[2]}) > 1]


def _cell(rows: list[dict[str, Any]], q: float, rate: float) -> float:
    """Mean entity F1 of the runs at ``q`` and noise rate ``rate``."""
    return _mean(
        [r for r in rows if r["loss"]["grid"]["q"] == q and r["setting"][1] == rate], "entity_f1"
    )


def q_heatmaps(results: Results, folder: str | Path) -> FigureFile | None:
    """Entity F1 over ``q`` × noise rate (mean over seeds), one panel per arm with a q grid."""
    kind, rows = first_kind(results)
    panels = _panels(rows)
    if not panels:
        return None
    rates = sorted({r["setting"][1] for r in rows})
    fig = _figure(
        max(5.0, 0.9 * len(rates) + 2.5) * min(len(panels), 3), 4.2 * math.ceil(len(panels) / 3)
    )
    axes = np.atleast_2d(
        fig.subplots(math.ceil(len(panels) / 3), min(len(panels), 3), squeeze=False)
    )
    for ax, (label, rest, members) in zip(axes.flat, panels, strict=False):
        qs = sorted({r["loss"]["grid"]["q"] for r in members})
        cells = np.array([[_cell(members, q, n) for n in rates] for q in qs])
        image = ax.imshow(cells, cmap="viridis", vmin=0, vmax=1, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(cells):
            if not math.isnan(value):
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(rates)), [f"{n:g}" for n in rates])
        ax.set_yticks(range(len(qs)), [f"{q:g}" for q in qs])
        ax.set_xlabel("noise rate n")
        ax.set_ylabel("q")
        extra = " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in rest.items()
        )
        ax.set_title(f"{label} {extra}".strip() + ": entity F1", fontsize=10)
        fig.colorbar(image, ax=ax, label="entity F1")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    path = _save(fig, folder, "q_heatmap.png")
    return FigureFile(
        path,
        "Entity F1 over q × noise rate",
        f"Clean test split, micro entity F1 (conlleval / seqeval), mean over seeds; {kind} noise.",
    )


def _smoothing_lines(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped into lines: CE, and each smoothing value of the smoothed arms.

    Arms whose parameters hold a smoothing (``label_smoothing`` fixed or in the grid) give one
    line per value, averaged over their other grid keys (``q``); plain CE is the reference.
    """
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        loss = row["loss"]
        smoothed = "label_smoothing" in loss["params"] or loss["name"] == "sgce"
        if smoothed:
            lines.setdefault(f"{row['label']} s={_smoothing(loss):g}", []).append(row)
        elif loss["name"] in ("ce", "cross_entropy") and not loss["grid"]:
            lines.setdefault(row["label"], []).append(row)
    return lines


def smoothing_calibration(results: Results, folder: str | Path) -> FigureFile | None:
    """ECE and MCE vs the noise rate per smoothing value, on test and validation."""
    kind, rows = first_kind(results)
    lines = _smoothing_lines(rows)
    if not lines:
        return None
    panels = (
        ("ece", "test (clean)"),
        ("val_ece", "validation (noisy labels)"),
        ("val_clean_ece", "validation (clean labels)"),
    )
    colors = _colors(list(lines))
    fig = _figure(4.6 * len(panels) + 2.4, 6.4)
    axes = fig.subplots(2, len(panels), squeeze=False)
    for col, (key, where) in enumerate(panels):
        for row, metric in enumerate((key, key.replace("ece", "mce"))):
            ax = axes[row, col]
            for name, members in lines.items():
                rates = sorted({r["setting"][1] for r in members})
                values = [
                    _mean([r for r in members if r["setting"][1] == n], metric) for n in rates
                ]
                ax.plot(rates, values, marker="o", markersize=4, label=name, color=colors[name])
            ax.set_xlabel("noise rate n")
            ax.set_ylabel(title_of(results, metric))
            ax.set_title(f"{'ECE' if row == 0 else 'MCE'} — {where}", fontsize=10)
            ax.grid(alpha=0.3)
    _legend(fig, axes[0, 0])
    path = _save(fig, folder, "smoothing_calibration.png")
    return FigureFile(
        path,
        "ECE and MCE vs noise rate per smoothing value",
        f"Token-level, 15 bins, non-padding tokens, {kind} noise; mean over seeds (and over q "
        "for arms with a q grid). The validation panels score the same predictions against "
        "the noisy labels a user has and against the clean ones.",
    )


def loss_curves(results: Results, folder: str | Path) -> FigureFile | None:
    """Training loss per epoch (mean over seeds), one panel per noise rate, one line per loss."""
    if not results.rows:
        return None
    kind, all_rows = first_kind(results)
    rates = sorted({r["setting"][1] for r in all_rows})
    colors = _colors(results.variants)
    fig = _figure(3.6 * len(rates) + 2.4, 3.4)
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    for ax, rate in zip(axes, rates, strict=True):
        for variant in results.variants:
            rows = [r for r in all_rows if r["setting"][1] == rate and r["variant"] == variant]
            if not rows:
                continue
            curves = [
                r["history"].get("train_loss_excess") or r["history"]["train_loss"] for r in rows
            ]
            length = min(len(c) for c in curves)
            mean = np.mean([c[:length] for c in curves], axis=0)
            ax.plot(
                np.arange(1, length + 1), mean, label=variant, color=colors[variant], linewidth=1.3
            )
        ax.set_title(f"n = {rate:g}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (excess if smoothed)")
    _legend(fig, axes[0])
    path = _save(fig, folder, "loss_curves.png")
    return FigureFile(
        path,
        "Training-loss curves per loss and noise rate",
        f"Mean over seeds of the training loss per epoch on the training tags ({kind} noise); "
        "smoothed losses show the loss minus its minimum achievable value. Losses of different "
        "families have different scales: compare shapes (does the loss keep falling as the "
        "noise is memorised?) rather than heights.",
    )


def reliability_at(results: Results, store: Store, folder: str | Path) -> FigureFile | None:
    """Reliability diagrams at the noise rate nearest :data:`RELIABILITY_RATE`."""
    if not results.rows:
        return None
    setting = min(results.settings, key=lambda s: (abs(s[1] - RELIABILITY_RATE), -s[1]))
    return reliability(results, store, folder, setting)
