"""The report's figures (matplotlib, object-oriented API, no display needed).

Each function draws one PNG into ``folder`` and returns a :class:`FigureFile` (or ``None``
when the study has nothing to show for it, e.g. PR curves of a multi-class set):

* :func:`metric_lines` — accuracy and macro-F1 (or ECE, MCE, ECE after TS) against the noise
  rate (or the imbalance factor), one line per loss, mean ± std over seeds;
* :func:`grid_heatmaps` — macro-F1 over (hyper-parameter × noise rate) for every loss with a
  one-parameter grid (the GCE grid: q × noise rate);
* :func:`reliability` — reliability diagrams of CE against SGCE (or the best other loss) at
  the heaviest setting, on the test split and on the validation split;
* :func:`confusion_matrices`, :func:`pr_curves` (binary sets), :func:`training_curves`.

Example:
    >>> from crossent.study.results import Results
    >>> metric_lines(Results("s", {}, []), [], "/tmp", ("accuracy",), "acc.png") is None
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from crossent.study.results import ALL_METRICS, Results, setting_name
from crossent.study.store import Store

_TITLES = {key: title for key, (title, _) in ALL_METRICS.items()}


def title_of(results: Results, key: str) -> str:
    """The heading of a metric in this kind of study (``token accuracy`` for tagging)."""
    return next((t for k, t, _ in results.metrics if k == key), _TITLES[key])


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its file name (relative to the report folder), title and caption."""

    path: str
    title: str
    caption: str


def _colors(variants: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _legend(fig: Figure, ax: Any) -> None:
    """One legend for the figure, outside the panels on the right."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def _save(fig: Figure, folder: str | Path, name: str) -> str:
    path = Path(folder) / "figures" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return f"figures/{name}"


def x_axis(results: Results) -> str:
    """``"rate"`` when the study varies the noise rate, else ``"factor"`` if it varies IF."""
    rates = {s[1] for s in results.settings}
    factors = {s[2] for s in results.settings}
    return "factor" if len(rates) == 1 and len(factors) > 1 else "rate"


def facets(results: Results, axis: str) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Panels of a line plot: ``(title, settings on its x-axis)``.

    Against the noise rate there is one panel per (noise kind, imbalance factor); the clean
    setting (kind ``"none"``) belongs to every kind's panel. Against the imbalance factor
    there is one panel per noise setting.
    """
    settings = results.settings
    if axis == "factor":
        keys = list(dict.fromkeys((s[0], s[1]) for s in settings))
        return [
            (setting_name((k, r, 1.0)), [s for s in settings if (s[0], s[1]) == (k, r)])
            for k, r in keys
        ]
    kinds = list(dict.fromkeys(s[0] for s in settings if s[0] != "none")) or ["none"]
    factors = list(dict.fromkeys(s[2] for s in settings))
    out = []
    for factor in factors:
        for kind in kinds:
            members = [s for s in settings if s[2] == factor and s[0] in (kind, "none")]
            title = f"{'clean' if kind == 'none' else kind + ' noise'}"
            out.append((title if factor == 1 else f"{title}, IF {factor:g}", members))
    return out


def metric_lines(
    results: Results,
    summary: list[dict[str, Any]],
    folder: str | Path,
    keys: tuple[str, ...],
    name: str,
) -> FigureFile | None:
    """Each metric in ``keys`` (rows) against the noise rate or IF, one line per variant."""
    if not summary:
        return None
    axis = x_axis(results)
    panels = facets(results, axis)
    colors = _colors(results.variants)
    fig = _figure(5.2 * len(panels) + 2.4, 3.2 * len(keys))
    axes = np.atleast_2d(fig.subplots(len(keys), len(panels), squeeze=False))
    index = {(e["setting"], e["variant"]): e for e in summary}
    for col, (title, settings) in enumerate(panels):
        xs = [s[1] if axis == "rate" else s[2] for s in settings]
        for row, key in enumerate(keys):
            ax = axes[row, col]
            for variant in results.variants:
                points = [
                    (x, index[(s, variant)]["metrics"][key])
                    for x, s in zip(xs, settings, strict=True)
                    if (s, variant) in index
                ]
                points.sort(key=lambda p: p[0])
                mean = [p[1]["mean"] for p in points]
                std = [p[1]["std"] for p in points]
                ax.errorbar(
                    [p[0] for p in points],
                    mean,
                    yerr=std,
                    label=variant,
                    color=colors[variant],
                    marker="o",
                    markersize=4,
                    capsize=3,
                    linewidth=1.5,
                )
            if axis == "factor":
                ax.set_xscale("log")
            ax.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
            ax.minorticks_off()
            ax.set_xlabel("noise rate" if axis == "rate" else "imbalance factor")
            ax.set_ylabel(title_of(results, key))
            ax.set_title(f"{title_of(results, key)} — {title}")
            ax.grid(alpha=0.3)
    _legend(fig, axes[0, 0])
    path = _save(fig, folder, name)
    what = " and ".join(title_of(results, k) for k in keys)
    return FigureFile(
        path,
        f"{what} vs {'noise rate' if axis == 'rate' else 'imbalance factor'}",
        f"Clean test split; mean over seeds, bars are ± one standard deviation. {what} per loss.",
    )


def _grid_arms(results: Results) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Arms with a one-key numeric grid of >= 2 values: label -> (grid key, rows)."""
    arms: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for row in results.rows:
        grid = row["loss"]["grid"]
        if len(grid) == 1 and isinstance(next(iter(grid.values())), int | float):
            arms.setdefault(row["label"], (next(iter(grid)), []))[1].append(row)
    return {
        label: (key, rows)
        for label, (key, rows) in arms.items()
        if len({r["loss"]["grid"][key] for r in rows}) > 1
    }


def grid_heatmaps(results: Results, folder: str | Path) -> FigureFile | None:
    """Macro-F1 heatmap over (grid value × noise rate or IF) for each one-parameter grid."""
    key_f1 = results.primary
    name_f1 = title_of(results, key_f1)
    arms = _grid_arms(results)
    if not arms:
        return None
    axis = x_axis(results)
    fig = _figure(max(5.5, 1.0 * len(results.settings) + 2.5) * len(arms), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(arms), squeeze=False)[0])
    for ax, (label, (key, rows)) in zip(axes, arms.items(), strict=True):
        values = sorted({r["loss"]["grid"][key] for r in rows})
        xs = sorted({r["setting"][1] if axis == "rate" else r["setting"][2] for r in rows})
        cells = np.full((len(values), len(xs)), np.nan)
        for i, v in enumerate(values):
            for j, x in enumerate(xs):
                f1 = [
                    r["metrics"][key_f1]
                    for r in rows
                    if r["loss"]["grid"][key] == v
                    and (r["setting"][1] if axis == "rate" else r["setting"][2]) == x
                ]
                if f1:
                    cells[i, j] = float(np.mean(f1))
        image = ax.imshow(cells, cmap="viridis", vmin=0, vmax=1, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(cells):
            if not math.isnan(value):
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(values)), [f"{v:g}" for v in values])
        ax.set_xlabel("noise rate" if axis == "rate" else "imbalance factor")
        ax.set_ylabel(key)
        ax.set_title(f"{label}: {name_f1} over {key} × {'noise rate' if axis == 'rate' else 'IF'}")
        fig.colorbar(image, ax=ax, label=name_f1)
    path = _save(fig, folder, "grid_f1.png")
    return FigureFile(
        path, f"{name_f1} over the hyper-parameter grid", "Clean test split, mean over seeds."
    )


def heaviest_setting(results: Results) -> tuple[str, float, float]:
    """The setting with the most noise (then the largest imbalance factor)."""
    return max(results.settings, key=lambda s: (s[1], s[2]))


def reference_variants(results: Results, setting: tuple[str, float, float]) -> tuple[str, str]:
    """``(CE, challenger)``: plain CE (else the first loss) against SGCE (else the best F1)."""
    rows = [r for r in results.rows if r["setting"] == setting]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    ce = next(
        (
            r["variant"]
            for r in rows
            if r["loss"]["name"] in ("ce", "cross_entropy")
            and not r["loss"]["params"]
            and r["loss"]["class_weights"] is None
        ),
        variants[0],
    )
    others = [v for v in variants if v != ce]
    sgce = [r["variant"] for r in rows if r["loss"]["name"] == "sgce" and r["variant"] != ce]
    if sgce:
        return ce, sgce[0]
    if not others:
        return ce, ce
    mean_f1 = {
        v: np.mean([r["metrics"][results.primary] for r in rows if r["variant"] == v])
        for v in others
    }
    return ce, max(others, key=lambda v: mean_f1[v])


def reliability(
    results: Results,
    store: Store,
    folder: str | Path,
    setting: tuple[str, float, float] | None = None,
) -> FigureFile | None:
    """Reliability diagrams of CE and its challenger at ``setting`` (default: the heaviest).

    Drawn for the first seed, on the test split and on the validation split; for a tagging
    study with noisy validation labels, also on the validation split against its clean labels.
    """
    from crossent.calibration import reliability_diagram

    if not results.rows:
        return None
    setting = setting or heaviest_setting(results)
    pair = reference_variants(results, setting)
    clean_row = results.tagging and results.validation_labels == "noisy"
    fig = _figure(10, 9.5 * (1.5 if clean_row else 1))
    axes = fig.subplots(3 if clean_row else 2, 2)
    seeds = sorted({r["seed"] for r in results.rows})
    for col, variant in enumerate(pair):
        run = next(
            (
                r
                for seed in seeds
                for r in results.rows
                if r["setting"] == setting and r["variant"] == variant and r["seed"] == seed
            ),
            None,
        )
        arrays = store.arrays(run["id"]) if run else {}
        if not arrays:
            continue
        splits = [
            ("test", arrays["test_probs"], arrays["test_labels"], "clean"),
            ("validation", arrays["val_probs"], arrays["val_labels"], results.validation_labels),
        ]
        if clean_row:
            splits.append(("validation", arrays["val_probs"], arrays["val_clean_labels"], "clean"))
        for row, (split, probs, labels, kind) in enumerate(splits):
            p = torch.from_numpy(np.asarray(probs, dtype=np.float64))
            p = p / p.sum(dim=1, keepdim=True)  # stored as float16
            title = f"{variant} — {split} ({kind} labels)"
            y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
            reliability_diagram(p, y, n_bins=10, ax=axes[row, col], title=title)
    path = _save(fig, folder, "reliability.png")
    return FigureFile(
        path,
        f"Reliability diagrams at {setting_name(setting)}",
        f"{pair[0]} against {pair[1]}, seed {seeds[0]}, 10 bins: top row on the clean test split, "
        f"second row on the validation split with the {results.validation_labels} labels that "
        "temperature scaling was fitted on"
        + (
            "; third row the same validation predictions against the clean labels."
            if clean_row
            else "."
        )
        + (" Tokens: every non-padding token is one prediction." if results.tagging else ""),
    )


def _matrix(ax: Any, share: np.ndarray, title: str, names: list[str]) -> Any:
    """One row-normalised confusion matrix with percentages written in (up to 10 classes)."""
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    k = share.shape[0]
    if k <= 10:
        size = 6 if k > 5 else 10
        for (i, j), value in np.ndenumerate(share):
            if value >= 0.005:
                color = "white" if value > 0.6 else "black"
                ax.text(
                    j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=size, color=color
                )
    labels = names if k <= 4 and len(names) == k else [str(c) for c in range(k)]
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.tick_params(labelsize=6 if k > 4 else 8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    return image


def confusion_matrices(results: Results, folder: str | Path) -> FigureFile | None:
    """Row-normalised confusion matrices at the heaviest setting, summed over seeds."""
    if not results.rows:
        return None
    setting = heaviest_setting(results)
    rows = [r for r in results.rows if r["setting"] == setting]
    variants = list(dict.fromkeys(r["variant"] for r in rows))[:16]
    names = rows[0]["metrics"].get("class_names", [])
    ncols = min(4, len(variants))
    nrows = math.ceil(len(variants) / ncols)
    fig = _figure(3.4 * ncols + 1.0, 3.3 * nrows)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    image = None
    for ax, variant in zip(axes.flat, variants, strict=False):
        members = [r for r in rows if r["variant"] == variant]
        cm = sum(np.asarray(r["metrics"]["confusion_matrix"]) for r in members)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        image = _matrix(ax, share, variant, names)
    for ax in list(axes.flat)[len(variants) :]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    path = _save(fig, folder, "confusion.png")
    return FigureFile(
        path,
        f"Confusion matrices at {setting_name(setting)}",
        "Clean test split, summed over seeds; each row is normalised to its true class "
        "(numbers are percent).",
    )


def pr_curves(results: Results, folder: str | Path) -> FigureFile | None:
    """Precision-recall curves of a binary set at the clean and the heaviest setting."""
    rows = [r for r in results.rows if "precision_recall" in r["metrics"]]
    if not rows:
        return None
    settings = list(dict.fromkeys([results.settings[0], heaviest_setting(results)]))
    colors = _colors(results.variants)
    fig = _figure(6 * len(settings) + 2, 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(settings), squeeze=False)[0])
    seed = min(r["seed"] for r in rows)
    for ax, setting in zip(axes, settings, strict=True):
        for r in rows:
            if r["setting"] == setting and r["seed"] == seed:
                pr = r["metrics"]["precision_recall"]
                label = f"{r['variant']} (AP {pr['average_precision']:.3f})"
                ax.step(
                    pr["recall"],
                    pr["precision"],
                    where="post",
                    label=label,
                    color=colors[r["variant"]],
                )
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(setting_name(setting))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    path = _save(fig, folder, "precision_recall.png")
    return FigureFile(
        path, "Precision-recall curves", f"Clean test split, seed {seed}, positive class 1."
    )


def _curve(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """Mean over seeds of one history curve; ``"loss"`` is the excess where there is one."""
    if key == "loss":
        curves = [r["history"].get("train_loss_excess") or r["history"]["train_loss"] for r in rows]
    else:
        curves = [r["history"][key] for r in rows]
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    return np.maximum(mean, 1e-8) if key == "loss" else mean  # the loss axis is logarithmic


def training_curves(results: Results, folder: str | Path) -> FigureFile | None:
    """Training loss, test accuracy and test ECE per epoch, mean over seeds.

    Drawn at the clean and at the heaviest setting; smoothed losses show their excess over the
    minimum achievable loss.
    """
    if not results.rows:
        return None
    settings = list(dict.fromkeys([results.settings[0], heaviest_setting(results)]))
    colors = _colors(results.variants)
    keys = (
        ("loss", "training loss (excess if smoothed)"),
        ("test_accuracy", "test accuracy"),
        ("test_ece", "test ECE"),
    )
    fig = _figure(6 * len(settings) + 2.4, 3.0 * len(keys))
    axes = np.atleast_2d(fig.subplots(len(keys), len(settings), squeeze=False))
    for col, setting in enumerate(settings):
        for variant in results.variants:
            rows = [r for r in results.rows if r["setting"] == setting and r["variant"] == variant]
            if not rows:
                continue
            for row, (key, label) in enumerate(keys):
                curve = _curve(rows, key)
                epochs = np.arange(1, len(curve) + 1)
                axes[row, col].plot(
                    epochs, curve, label=variant, color=colors[variant], linewidth=1.3
                )
                axes[row, col].set_ylabel(label)
        for row in range(len(keys)):
            axes[row, col].set_xlabel("epoch")
            axes[row, col].set_title(setting_name(setting))
            axes[row, col].grid(alpha=0.3)
        axes[0, col].set_yscale("log")
    _legend(fig, axes[0, 0])
    path = _save(fig, folder, "training_curves.png")
    return FigureFile(
        path,
        "Training curves",
        "Mean over seeds. Smoothed losses cannot reach 0, so their curve is the training loss "
        "minus its minimum achievable value (the excess); test accuracy and ECE on the clean "
        "test split after each epoch.",
    )
