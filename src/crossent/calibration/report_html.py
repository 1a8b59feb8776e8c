"""The page of ``crossent calibrate --out DIR``: ``report.html`` beside the JSON and the PNGs.

One static page: the metrics before and after temperature scaling, the temperature, the
precision-recall points of binary predictions, every diagram written, a link to
``calibration.json``. No script, no network; it reads at a phone's width.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

_CAPTIONS = {
    "reliability_before.png": "Reliability diagram of the predictions as given: accuracy "
    "against confidence per bin; the gap to the diagonal is the miscalibration.",
    "reliability_after.png": "The same after temperature scaling (logits divided by T).",
    "pr_curve.png": "Precision-recall curve of the positive class with the F1-optimal threshold.",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 900px; padding: 0 1em;
  color: #222; }
table { border-collapse: collapse; font-size: 14px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child { text-align: left; }
.scroll { overflow-x: auto; } code { overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; border: 1px solid #eee; } figure { margin: 2em 0; }
figcaption, .note { color: #555; font-size: 14px; }
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    table = f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='scroll'>{table}</div>"


def _metrics(report: dict, names: Sequence[tuple[str, str]]) -> str:
    after = report["after"] or {}
    temperature = report["temperature"]
    head = (
        "metric",
        "before",
        "after T-scaling" if temperature is None else f"after T = {temperature:.4g}",
    )
    rows = [
        (
            title,
            f"{report['before'][key]:.4f}",
            "-" if after.get(key) is None else f"{after[key]:.4f}",
        )
        for key, title in names
        if key in report["before"]
    ]
    return _table(head, rows)


def write_report_html(
    path: Path, report: dict, names: Sequence[tuple[str, str]], images: Sequence[str]
) -> None:
    """Write the calibration page.

    Args:
        path: the file to write (``DIR/report.html``).
        report: :func:`crossent.calibration.report.calibration_report`'s result, with
            ``"predictions"`` (the file name) added.
        names: ``(key, title)`` of the metrics in table order.
        images: the PNG files written beside it.
    """
    source = Path(str(report.get("predictions", ""))).name
    kind = "binary" if report["binary"] else f"{report['num_classes']} classes"
    if report["temperature"] is None:
        scaling = f"Temperature scaling skipped: {report['temperature_error']}"
    else:
        scaling = (
            f"Temperature T = {report['temperature']:.4f}, fitted and evaluated on the same "
            "rows: fit on held-out data for an honest estimate."
        )
    parts = [
        f"<h1>Calibration of <code>{html.escape(source)}</code></h1>",
        f"<p>{report['n']} predictions ({kind}, {html.escape(report['input'])}), "
        f"{report['n_bins']} bins.</p>",
        _metrics(report, names),
        f"<p class='note'>{html.escape(scaling)}</p>",
    ]
    if report.get("pr_curve"):
        parts.append("<h2>Precision-recall (predict positive when p &ge; threshold)</h2>")
        rows = [
            [f"{p[k]:.4f}" for k in ("threshold", "precision", "recall")]
            for p in report["pr_curve"]
        ]
        parts.append(_table(("threshold", "precision", "recall"), rows))
    for name in images:
        caption = html.escape(_CAPTIONS.get(name, name))
        parts.append(
            f"<figure><img src='{html.escape(name)}' alt='{html.escape(name)}'>"
            f"<figcaption>{caption}</figcaption></figure>"
        )
    parts.append("<p>Every number: <a href='calibration.json'>calibration.json</a>.</p>")
    path.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>crossent calibrate {html.escape(source)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>",
        encoding="utf-8",
    )
