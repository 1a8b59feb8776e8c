"""``crossent calibrate``: calibration metrics, temperature scaling and diagrams of a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from crossent.calibration._validation import MAX_BINS

if TYPE_CHECKING:
    import torch

_ROWS = (
    ("accuracy", "Accuracy"),
    ("nll", "NLL"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("mce", "MCE"),
    ("rmsce", "RMSCE"),
    ("ace", "ACE"),
    ("f1_threshold", "F1-optimal threshold"),
    ("f1", "F1 at that threshold"),
    ("average_precision", "Average precision"),
)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _load(
    predictions: Path,
    labels_file: Path | None,
    from_logits: bool | None,
    keys: tuple[str | None, str | None],
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Predictions, labels and their kind (the flag wins over the file's key names).

    ``keys`` are ``--pred-key`` and ``--label-key``; the label key applies to the file that
    holds the labels (``--labels FILE`` if given).
    """
    from crossent.calibration.io import PredictionFileError, read_labels, read_predictions

    pred_key, label_key = keys
    try:
        if labels_file is None:
            content = read_predictions(predictions, pred_key=pred_key, label_key=label_key)
            labels = content.labels
        else:
            content = read_predictions(predictions, pred_key=pred_key)
            labels = read_labels(labels_file, key=label_key)
    except PredictionFileError as err:
        raise click.ClickException(_one_line(err)) from err
    if labels is None:
        raise click.ClickException(
            f"{predictions}: the file holds no labels: pass --labels FILE, or --label-key NAME "
            "for labels stored under another name"
        )
    if len(labels) != len(content.values):
        raise click.ClickException(
            f"{labels_file}: {len(labels)} labels for {len(content.values)} predictions "
            f"in {predictions}"
        )
    kind = from_logits if from_logits is not None else bool(content.from_logits)
    return content.values, labels, kind


def _write_error(out: Path, err: OSError) -> click.ClickException:
    return click.ClickException(f"{out}: cannot write ({err.strerror or err})")


def _make_directory(out: Path) -> None:
    """Create ``--out`` before any work, so an unusable directory is a one-line error."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(out, err) from err


def _pr_table(points: list[dict]) -> object:
    """The precision-recall curve of binary predictions as a small table (before scaling)."""
    from rich.table import Table

    table = Table(title="Precision-recall curve (positive class, predict p >= threshold)")
    for name in ("threshold", "precision", "recall"):
        table.add_column(name, justify="right")
    for point in points:
        table.add_row(*(f"{point[name]:.4f}" for name in ("threshold", "precision", "recall")))
    return table


def _print_table(report: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    temperature = report["temperature"]
    after = report["after"] or {}
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column(
        "after T-scaling" if temperature is None else f"after T = {temperature:.4g}",
        justify="right",
    )
    for key, name in _ROWS:
        if key in report["before"]:
            value = after.get(key)
            table.add_row(
                name, f"{report['before'][key]:.4f}", "-" if value is None else f"{value:.4f}"
            )
    console = Console()
    console.print(table)
    if report.get("pr_curve"):
        console.print(_pr_table(report["pr_curve"]))
    if temperature is None:
        console.print(f"temperature scaling skipped: {report['temperature_error']}")
    else:
        console.print(
            f"temperature T = {temperature:.4f} (fitted and evaluated on the same rows: "
            "fit on held-out data for an honest estimate)"
        )


def _write_outputs(
    out: Path, values: torch.Tensor, labels: torch.Tensor, report: dict, n_bins: int
) -> list[str]:
    """Write reliability diagrams (and the PR curve for binary data) as PNG; return names."""
    from crossent.calibration.plots import reliability_diagram
    from crossent.calibration.report import (
        as_logits,
        f1_optimal_threshold,
        positive_scores,
        pr_curve_figure,
        precision_recall_curve,
    )

    from_logits = report["input"] == "logits"
    figures = {
        "reliability_before.png": reliability_diagram(
            values, labels, n_bins=n_bins, from_logits=from_logits, title="Before scaling"
        )
    }
    if report["temperature"] is not None:
        scaled = as_logits(values, from_logits).double() / report["temperature"]
        figures["reliability_after.png"] = reliability_diagram(
            scaled,
            labels,
            n_bins=n_bins,
            from_logits=True,
            title=f"After temperature scaling (T = {report['temperature']:.3g})",
        )
    if "f1" in report["before"]:
        curve = precision_recall_curve(positive_scores(values, from_logits), labels.numpy() == 1)
        figures["pr_curve.png"] = pr_curve_figure(
            curve, f1_optimal_threshold(curve), "Precision-recall (positive class)"
        )
    for name, figure in figures.items():
        figure.savefig(out / name)
    return list(figures)


@click.command("calibrate")
@click.argument("predictions", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File with the labels, if PREDICTIONS has none (.npy/.npz/.pt/.csv/.parquet/.txt).",
)
@click.option(
    "--logits/--probs",
    "from_logits",
    default=None,
    help="Read the predictions as logits or probabilities "
    "[default: from the file's key or column names, else probabilities].",
)
@click.option(
    "--bins",
    "n_bins",
    type=click.IntRange(min=1, max=MAX_BINS),
    default=15,
    show_default=True,
    help=f"Number of bins of ECE/MCE/ACE and of the diagrams (at most {MAX_BINS}).",
)
@click.option(
    "--pred-key",
    metavar="NAME",
    help="Name of the predictions' array (.npz/.pt) or column (.csv/.parquet), if not one of "
    "the names below.",
)
@click.option(
    "--label-key",
    metavar="NAME",
    help="Name of the labels' array or column (in --labels FILE if given), if not one of the "
    "names below.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for calibration.json and the PNG diagrams (nothing is written without it).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report as JSON (the content of calibration.json) instead of tables.",
)
def calibrate(
    predictions: Path,
    labels_file: Path | None,
    from_logits: bool | None,
    n_bins: int,
    pred_key: str | None,
    label_key: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Measure the calibration of PREDICTIONS and fit temperature scaling.

    PREDICTIONS is a .npz, .npy, .pt, .csv or .parquet file of (N, K) probabilities or logits,
    or (N,) positive-class values for a binary problem. Prints accuracy, NLL, Brier, ECE, MCE,
    RMSCE and ACE before and after temperature scaling with the fitted T (for binary
    predictions also the F1-optimal threshold, average precision and the precision-recall
    curve) and, with --out, writes calibration.json, report.html (a page of all of it),
    reliability_before.png, reliability_after.png and, for binary predictions, pr_curve.png.

    Layouts (names are case-insensitive; details in docs/calibration.md):

    .npz/.pt: arrays "logits" (read as logits), "probs"/"probabilities" (probabilities) or
    "predictions"/"preds"/"scores"; labels under "labels"/"label"/"targets"/"target"/"y". A .pt
    file may also hold a tensor or a (predictions, labels) pair.

    .npy: the predictions array alone (labels from --labels).

    .csv (header row required) and .parquet: a label column named as above, every other column
    a prediction column (one column: binary); "logit*" columns mean logits, "prob*" columns
    probabilities. A parquet file may instead hold one list column named as the .npz keys.

    --labels FILE: any of these holding only labels, or .txt with one integer per line.

    Other names: --pred-key NAME and --label-key NAME name the arrays or columns.
    """
    from crossent.calibration.report import calibration_report

    values, labels, kind = _load(predictions, labels_file, from_logits, (pred_key, label_key))
    if out is not None:
        _make_directory(out)
    try:
        report = calibration_report(values, labels, from_logits=kind, n_bins=n_bins)
    except (ValueError, TypeError) as err:
        source = predictions if labels_file is None else f"{predictions} / {labels_file}"
        # the library's errors name its argument; here the option is --logits
        message = _one_line(err).replace("from_logits=True", "--logits")
        raise click.ClickException(f"{source}: {message}") from err
    report.update(
        predictions=str(predictions), labels=None if labels_file is None else str(labels_file)
    )
    if not as_json:
        _print_table(report, f"{predictions.name}: {report['n']} predictions, {n_bins} bins")
    if out is not None:
        _save(out, values, labels, report)
        # with --json, stdout holds the JSON alone
        click.echo(f"wrote {', '.join(report['files'])} to {out}", err=as_json)
    if as_json:
        click.echo(_dumps(report))


def _dumps(report: dict) -> str:
    import json

    return json.dumps(report, indent=2)


def _save(out: Path, values: torch.Tensor, labels: torch.Tensor, report: dict) -> None:
    """Write the diagrams, calibration.json and report.html into ``out`` (listed in the report)."""
    from crossent.calibration.report_html import write_report_html

    try:
        files = _write_outputs(out, values, labels, report, report["n_bins"])
        report["files"] = [*files, "calibration.json", "report.html"]
        (out / "calibration.json").write_text(_dumps(report) + "\n")
        write_report_html(out / "report.html", report, _ROWS, files)
    except OSError as err:  # an --out that cannot be created or written: no traceback
        raise _write_error(out, err) from err
