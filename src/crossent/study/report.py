"""The study report: a terminal table and an HTML page with PNG figures and CSV tables.

:func:`write_report` writes, into one folder::

    report.html            results table, "what to pick", figures, failed runs
    summary.csv            one row per (setting, loss): mean and std over seeds
    runs.csv               one row per finished run: the stored metrics
    figures/*.png          see crossent.study.figures

and :func:`print_report` prints the same table (mean ± std over seeds) and the picks to a
terminal. Both read only the store, so ``crossent study report`` can run at any time, also
while a study is still running.

Example:
    >>> from crossent.study import Store
    >>> with Store("runs/crossent.db") as store:                   # doctest: +SKIP
    ...     path = write_report(store, "noise", "runs/noise")
"""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from crossent.study.grid import format_loss_spec
from crossent.study.report_tagging import tagging_html
from crossent.study.results import (
    Results,
    execution_text,
    load_results,
    overall_ranking,
    setting_name,
    summarize,
    what_to_pick,
)
from crossent.study.store import Store

if TYPE_CHECKING:
    from crossent.study.figures import FigureFile

_COUNTS = ("memorised", "corrected", "flipped")
_TERMINAL = {"accuracy": "accuracy", "macro_f1": "macro-F1", "ece": "ECE", "ece_ts": "ECE·TS"}
_TERMINAL_TAGGING = {
    "accuracy": "token acc.",
    "entity_f1": "entity F1",
    "ece": "ECE",
    "ece_ts": "ECE·TS",
}


def _terminal_keys(results: Results) -> dict[str, str]:
    return _TERMINAL_TAGGING if results.tagging else _TERMINAL


def _primary_title(results: Results) -> str:
    return "entity F1" if results.tagging else "macro-F1"


def fmt(stat: dict[str, float], key: str = "") -> str:
    """``"0.912 ± 0.004"`` (counts with one decimal, ``"–"`` when missing)."""
    if math.isnan(stat["mean"]):
        return "–"
    digits = 1 if key in _COUNTS else 3
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _verdict(pick: dict[str, Any] | None) -> str:
    if pick is None:
        return "no finished runs"
    if pick["runner_up"] is None:
        return f"{pick['best']} (the only loss)"
    if pick["clear"] is None:
        tail = "one seed, no spread to compare"
    elif pick["clear"]:
        tail = f"exceeds the seed spread {pick['spread']:.3f}"
    else:
        tail = f"within the seed spread {pick['spread']:.3f}: not a clear win"
    best = f"{pick['best']} ({pick['value']:.3f})"
    return f"{best}, margin {pick['margin']:.3f} over {pick['runner_up']}; {tail}"


def validation_note(results: Results) -> str:
    """What the temperature-scaling columns mean for this study's validation labels."""
    if results.validation_labels == "clean":
        return "Temperature scaling was fitted on the validation split with clean labels."
    return (
        "Temperature scaling was fitted on the validation split with noisy labels (what a user "
        'really has; `validation_labels = "noisy"`). There the model looks less accurate than '
        "it is on the clean test split, so the fitted temperature comes out too high and the "
        "scaled model is under-confident on the clean test split: ECE after temperature "
        "scaling can rise, even above the unscaled ECE, as the noise grows. A finding, not a "
        'bug; set `validation_labels = "clean"` to compare.'
    )


def _terminal_table(results: Results, summary: list[dict[str, Any]]) -> Table:
    """Settings as section rows, one row per loss, compact ``mean±std`` cells."""
    seeds = max((e["n"] for e in summary), default=0)
    table = Table(
        title=f"{results.study}: clean test split, mean±std over {seeds} seeds",
        caption="n.c.: runs not converged; (n) after a loss: fewer seeds finished",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("loss", no_wrap=True, overflow="ellipsis", max_width=24)
    terminal = _terminal_keys(results)
    for heading in terminal.values():
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("n.c.", justify="right", no_wrap=True)
    for setting in results.settings:
        table.add_row(f"[bold]{setting_name(setting)}[/bold]")
        for entry in (e for e in summary if e["setting"] == setting):
            name = entry["variant"] + (f" ({entry['n']})" if entry["n"] < seeds else "")
            cells = [fmt(entry["metrics"][key], key).replace(" ± ", "±") for key in terminal]
            table.add_row(f"  {name}", *cells, str(entry["not_converged"] or ""))
    return table


def print_report(results: Results, console: Console | None = None) -> None:
    """Print the results table (mean ± std over seeds) and the picks."""
    console = console or Console()
    summary = summarize(results.rows)
    console.print(_terminal_table(results, summary))
    console.print("[bold]What to pick[/bold]")
    for pick in what_to_pick(summary, results.primary):
        console.print(f"  {setting_name(pick['setting'])}:")
        console.print(f"    by {_primary_title(results)}: {_verdict(pick['f1'])}")
        console.print(f"    by ECE:      {_verdict(pick['ece'])}")
    console.print(
        "ECE·TS: ECE after temperature scaling. " + validation_note(results),
        style="dim",
        markup=False,
    )
    for entry in results.execution:
        console.print(f"ran on {execution_text(entry)}", markup=False)
    if results.failed or results.unfinished:
        console.print(f"[yellow]{len(results.failed)} failed, {results.unfinished} unfinished runs")


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_tables(results: Results, summary: list[dict[str, Any]], folder: Path) -> None:
    """``runs.csv`` (one row per finished run) and ``summary.csv`` (mean, std per group)."""
    keys = [key for key, _, _ in results.metrics]
    _write_csv(
        folder / "runs.csv",
        ["id", "setting", "loss", "seed", *keys, "converged"],
        [
            [r["id"], setting_name(r["setting"]), r["variant"], r["seed"]]
            + [r["metrics"].get(key) for key in keys]
            + [r["metrics"].get("converged")]
            for r in results.rows
        ],
    )
    _write_csv(
        folder / "summary.csv",
        [
            "setting",
            "loss",
            "n",
            *(f"{k}_{s}" for k in keys for s in ("mean", "std")),
            "not_converged",
        ],
        [
            [setting_name(e["setting"]), e["variant"], e["n"]]
            + [e["metrics"][k][s] for k in keys for s in ("mean", "std")]
            + [e["not_converged"]]
            for e in summary
        ],
    )


def _table_html(results: Results, summary: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ("setting", "loss", "n"))
    head += "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in results.metrics)
    head += "<th>not converged</th>"
    body = []
    for entry in sorted(summary, key=lambda e: results.settings.index(e["setting"])):
        cells = [setting_name(entry["setting"]), entry["variant"], str(entry["n"])]
        cells += [fmt(entry["metrics"][key], key) for key, _, _ in results.metrics]
        cells.append(f"{entry['not_converged']} of {entry['n']}" if entry["not_converged"] else "")
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"<div class='scroll'>{table}</div>"


def _picks_html(results: Results, summary: list[dict[str, Any]]) -> str:
    primary = _primary_title(results)
    rows = []
    for pick in what_to_pick(summary, results.primary):
        cells = (setting_name(pick["setting"]), _verdict(pick["f1"]), _verdict(pick["ece"]))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    ranking = overall_ranking(summary, results.primary) if summary else []
    ranked = ", ".join(f"{v} ({r:.1f})" for v, r in ranking)
    return (
        f"<div class='scroll'><table><thead><tr><th>setting</th><th>best by {primary}</th>"
        f"<th>best by ECE</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"<p>Mean rank by {primary} over all settings (1 = best): {html.escape(ranked)}.</p>"
        "<p>Margin: difference of the means of the best loss and the runner-up. Seed spread: the "
        "larger of their standard deviations over seeds. A margin within the spread is not a "
        "clear win: pick on other grounds (calibration, simplicity).</p>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222;
  padding: 0 1em; }
.scroll { overflow-x: auto; } code { overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:nth-child(-n+2) { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; } figure { margin: 2em 0; }
figcaption { color: #555; font-size: 14px; } code, pre { background: #f6f6f6; }
"""


def _arm_text(arm: dict[str, Any]) -> str:
    """``label = gce(q=0.7) over q in [0.3, 0.7], weights {...}, sampler ...``."""
    text = f"{arm['label']} = {format_loss_spec(arm['name'], arm['params'])}"
    for key, values in arm["grid"].items():
        text += f" over {key} in {values}"
    if arm.get("class_weights"):
        text += f" with class weights {arm['class_weights']}"
    if arm.get("sampler", "none") != "none":
        text += f", {arm['sampler']} sampling"
    return text


def _meta_html(results: Results) -> str:
    cfg = results.config
    data, model, training = cfg.get("data", {}), cfg.get("model", {}), cfg.get("training", {})
    items = [
        f"data: <code>{html.escape(str(data.get('name')))}</code>",
        f"model: <code>{html.escape(str(model))}</code>",
        f"training: <code>{html.escape(str(training))}</code>",
        f"seeds: {html.escape(str(cfg.get('seeds')))}",
        "losses: " + "; ".join(html.escape(_arm_text(arm)) for arm in cfg.get("losses", [])),
        f"finished runs: {len(results.rows)}, failed: {len(results.failed)}, "
        f"unfinished: {results.unfinished}",
        *(f"ran on {html.escape(execution_text(entry))}" for entry in results.execution),
    ]
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _failed_html(results: Results) -> str:
    if not results.failed:
        return ""
    rows = []
    for run in results.failed:
        last = (run["error"] or "").strip().splitlines() or [""]
        cells = (run["id"], run["description"], last[-1])
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return (
        "<h2>Failed runs</h2><p>Kept with their traceback (<code>crossent study show ID</code>); "
        "run again with <code>--retry-failed</code>.</p><div class='scroll'><table><thead><tr>"
        f"<th>id</th><th>run</th><th>error</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></div>"
    )


def make_figures(results: Results, store: Store, folder: Path) -> list[FigureFile]:
    """Draw every figure that applies to the study."""
    from crossent.study import figures as fg  # matplotlib only when drawing

    summary = summarize(results.rows)
    if results.tagging:
        from crossent.study import figures_tagging as ft

        made = [
            fg.metric_lines(
                results, summary, folder, ("entity_f1", "accuracy"), "entity_f1_accuracy.png"
            ),
            ft.q_heatmaps(results, folder),
            fg.metric_lines(results, summary, folder, ("ece", "mce", "ece_ts"), "calibration.png"),
            ft.smoothing_calibration(results, folder),
            ft.loss_curves(results, folder),
            ft.reliability_at(results, store, folder),
            fg.confusion_matrices(results, folder),
            fg.training_curves(results, folder),
        ]
        return [f for f in made if f is not None]
    made = [
        fg.metric_lines(results, summary, folder, ("accuracy", "macro_f1"), "accuracy_f1.png"),
        fg.grid_heatmaps(results, folder),
        fg.metric_lines(results, summary, folder, ("ece", "mce", "ece_ts"), "calibration.png"),
        fg.reliability(results, store, folder),
        fg.confusion_matrices(results, folder),
        fg.pr_curves(results, folder),
        fg.training_curves(results, folder),
    ]
    return [f for f in made if f is not None]


def _results_note(results: Results) -> str:
    unit = "tokens' tags" if results.tagging else "labels"
    note = (
        f"Clean test split, mean ± standard deviation over seeds. Memorised / corrected: of the "
        f"flipped training {unit} (those the noise changed), how many the model predicts as the "
        "noisy label / as the true one after training. Not converged: runs whose training loss "
        "still fell by more than 1% of its first-epoch value over the last tenth of the epochs."
    )
    if results.tagging:
        note += (
            " Tagging: accuracy is over non-padding tokens; entity precision, recall and F1 are "
            "micro-averaged over entities (conlleval rules, as seqeval); ECE, MCE and ACE are "
            "token-level (15 bins); val. columns score the validation split against its noisy "
            "and its clean tags."
        )
    return note


def write_report(store: Store, study: str, folder: str | Path) -> Path:
    """Write the HTML report, its figures and CSV tables for a stored study.

    Args:
        store: the results store.
        study: the study name.
        folder: output folder (created).

    Returns:
        The path of ``report.html``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    results = load_results(store, study)
    summary = summarize(results.rows)
    write_tables(results, summary, folder)
    figures = make_figures(results, store, folder)
    parts = [
        f"<h1>Study <code>{html.escape(study)}</code></h1>",
        f"<p>{html.escape(results.config.get('description', ''))}</p>",
        _meta_html(results),
        "<h2>What to pick</h2>",
        _picks_html(results, summary),
        tagging_html(results, summary) if results.tagging else "",
        "<h2>Results</h2>",
        f"<p>{html.escape(_results_note(results))}</p>",
        f"<p>{html.escape(validation_note(results))}</p>",
        _table_html(results, summary),
        "<p>Also as CSV: <a href='summary.csv'>summary.csv</a>, "
        "<a href='runs.csv'>runs.csv</a>.</p>",
    ]
    for figure in figures:
        parts.append(
            f"<figure><h3>{html.escape(figure.title)}</h3><img src='{figure.path}' "
            f"alt='{html.escape(figure.title)}'><figcaption>{html.escape(figure.caption)}"
            "</figcaption></figure>"
        )
    parts.append(_failed_html(results))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>crossent study {html.escape(study)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
