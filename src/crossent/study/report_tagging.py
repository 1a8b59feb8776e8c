"""The tagging part of a study report: the direction of the original experiment, per-type F1.

The experiment that motivated Smooth-GCE (a tagger fine-tuned on CoNLL-2003 with per-token
label noise) found two things; :func:`direction` checks both on a study's results:

1. GCE or SGCE ahead of CE in entity F1 at noise rates ``n >= 0.4``, by more than the seed
   spread (the larger of the two standard deviations over seeds);
2. CE's test ECE rising with ``n``: the last rate's mean ECE above the clean one's by more
   than the seed spread, and no step down larger than the spread of its two points.

Example:
    >>> from crossent.study.results import Results
    >>> direction(Results("s", {}, []), [])
    []
"""

from __future__ import annotations

import html
import statistics
from typing import Any

from crossent.study.results import Results, setting_name

#: The noise rate from which the original experiment saw GCE / SGCE ahead of CE.
FROM_RATE = 0.4
_ROBUST = ("gce", "sgce")
_CE = ("ce", "cross_entropy")


def _entries(results: Results, summary: list[dict[str, Any]]) -> dict[tuple[Any, str], Any]:
    return {(e["setting"], e["variant"]): e for e in summary}


def _names(results: Results) -> tuple[list[str], list[str], list[str]]:
    """``(CE variants, GCE/SGCE variants, SGCE variants)``; CE is plain (no parameters)."""
    ce, robust, sgce = [], [], []
    for row in results.rows:
        loss = row["loss"]
        if loss["name"] in _CE and not loss["params"]:
            ce.append(row["variant"])
        elif loss["name"] in _ROBUST:
            robust.append(row["variant"])
            if loss["name"] == "sgce":
                sgce.append(row["variant"])
    return list(dict.fromkeys(ce)), list(dict.fromkeys(robust)), list(dict.fromkeys(sgce))


def _against(entries: dict, setting: Any, base: Any, variants: list[str]) -> dict[str, Any] | None:
    """The best of ``variants`` by entity F1 at ``setting`` against CE's entry ``base``."""
    others = [entries[(setting, v)] for v in variants if (setting, v) in entries]
    if not others:
        return None
    best = max(others, key=lambda e: e["metrics"]["entity_f1"]["mean"])
    b, c = best["metrics"]["entity_f1"], base["metrics"]["entity_f1"]
    margin = b["mean"] - c["mean"]
    spread = max(b["std"], c["std"])
    return {
        "best": best["variant"],
        "best_f1": b,
        "margin": margin,
        "spread": spread,
        "ahead": margin > 0 and margin > spread,
    }


def _f1_check(
    entries: dict, setting: Any, ce: str, robust: list[str], sgce: list[str]
) -> dict[str, Any] | None:
    base = entries.get((setting, ce))
    best = _against(entries, setting, base, robust) if base else None
    if best is None:
        return None
    return {
        **best,
        "setting": setting,
        "ce_f1": base["metrics"]["entity_f1"],
        "sgce": _against(entries, setting, base, sgce),
    }


def _ece_check(entries: dict, settings: list[Any], ce: str) -> dict[str, Any] | None:
    kept = [s for s in settings if (s, ce) in entries]
    points = [entries[(s, ce)]["metrics"]["ece"] for s in kept]
    if len(points) < 2:
        return None
    steps_ok = all(
        b["mean"] >= a["mean"] - max(a["std"], b["std"])
        for a, b in zip(points, points[1:], strict=False)
    )
    end = points[-1]["mean"] - points[0]["mean"] > max(points[0]["std"], points[-1]["std"])
    peak = max(range(len(points)), key=lambda i: points[i]["mean"])
    return {
        "rates": [s[1] for s in kept],
        "values": [p["mean"] for p in points],
        "rising": steps_ok and end,
        "peak": kept[peak][1],
    }


def direction(results: Results, summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two checks of the module doc, per noise kind: one dict per kind.

    Each has ``kind``, ``f1`` (one check per rate ``>= 0.4``: best GCE/SGCE variant, its
    and CE's entity F1 mean and std, ``margin``, ``spread``, ``ahead``), ``ece`` (CE's mean
    test ECE by rate and ``rising``) and ``shown`` (both hold everywhere), or nothing when
    the study lacks CE or GCE/SGCE.
    """
    ce_names, robust, sgce = _names(results)
    if not ce_names or not robust:
        return []
    ce, entries = ce_names[0], _entries(results, summary)
    clean = [s for s in results.settings if s[0] == "none"]
    out = []
    for kind in dict.fromkeys(s[0] for s in results.settings if s[0] != "none"):
        settings = clean + sorted(s for s in results.settings if s[0] == kind)
        f1 = [_f1_check(entries, s, ce, robust, sgce) for s in settings if s[1] >= FROM_RATE]
        f1 = [c for c in f1 if c is not None]
        ece = _ece_check(entries, settings, ce)
        shown = bool(f1) and all(c["ahead"] for c in f1) and bool(ece and ece["rising"])
        out.append({"kind": kind, "f1": f1, "ece": ece, "shown": shown})
    return out


def _margin_text(check: dict[str, Any]) -> str:
    if check["ahead"]:
        return f"ahead by {check['margin']:.3f}, beyond the seed spread {check['spread']:.3f}"
    if check["margin"] > 0:
        return f"ahead by {check['margin']:.3f}, within the seed spread {check['spread']:.3f}"
    return f"behind CE by {-check['margin']:.3f}"


def _f1_line(check: dict[str, Any]) -> str:
    b, c = check["best_f1"], check["ce_f1"]
    line = (
        f"{setting_name(check['setting'])}: best of GCE/SGCE {check['best']} "
        f"{b['mean']:.3f} ± {b['std']:.3f} vs CE {c['mean']:.3f} ± {c['std']:.3f}: "
        f"{_margin_text(check)}."
    )
    sgce = check["sgce"]
    if sgce and sgce["best"] != check["best"]:
        f1 = sgce["best_f1"]
        line += f" SGCE ({sgce['best']}): {f1['mean']:.3f} ± {f1['std']:.3f}, {_margin_text(sgce)}."
    return line


def _direction_html(results: Results, summary: list[dict[str, Any]]) -> str:
    checks = direction(results, summary)
    if not checks:
        return ""
    parts = [
        "<h3>Does this study show the direction of the original experiment?</h3>",
        f"<p>The NER experiment behind Smooth-GCE found GCE / SGCE ahead of CE in entity F1 at "
        f"noise rates n ≥ {FROM_RATE:g}, and CE's calibration error rising with n.</p>",
    ]
    for check in checks:
        items = [_f1_line(c) for c in check["f1"]] or [f"no noise rate ≥ {FROM_RATE:g}"]
        if check["ece"]:
            items.append(_ece_line(check["ece"]))
        parts.append(f"<p><b>{html.escape(check['kind'])} noise — {_verdict(check)}.</b></p>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    return "".join(parts)


def _ece_line(ece: dict[str, Any]) -> str:
    values = ", ".join(
        f"n = {n:g}: {v:.3f}" for n, v in zip(ece["rates"], ece["values"], strict=True)
    )
    if ece["rising"]:
        return f"CE's test ECE by noise rate ({values}) rises with n."
    return (
        f"CE's test ECE by noise rate ({values}) does not rise steadily with n: it is highest "
        f"at n = {ece['peak']:g}."
    )


def _verdict(check: dict[str, Any]) -> str:
    """One sentence: which of the two findings hold."""
    if check["shown"]:
        return "yes: both findings hold"
    f1 = bool(check["f1"]) and all(c["ahead"] for c in check["f1"])
    ece = bool(check["ece"] and check["ece"]["rising"])
    first = f"GCE/SGCE ahead of CE beyond the seed spread at every n ≥ {FROM_RATE:g}: " + (
        "yes" if f1 else "no"
    )
    return f"only in part: {first}; CE's ECE rising with n: {'yes' if ece else 'no'}"


def _per_type_html(results: Results) -> str:
    """Entity F1 per type (mean over seeds) at the clean and the n ≈ 0.6 setting."""
    from crossent.study.figures_tagging import RELIABILITY_RATE

    if not results.rows:
        return ""
    heavy = min(results.settings, key=lambda s: (abs(s[1] - RELIABILITY_RATE), -s[1]))
    types = list(results.rows[0]["metrics"].get("entity_per_type", {}))
    body = []
    for setting in dict.fromkeys([results.settings[0], heavy]):
        for variant in results.variants:
            rows = [r for r in results.rows if r["setting"] == setting and r["variant"] == variant]
            if not rows:
                continue
            cells = [setting_name(setting), variant]
            for kind in types:
                f1 = [r["metrics"]["entity_per_type"][kind]["f1"] for r in rows]
                cells.append(f"{statistics.fmean(f1):.3f}" if f1 else "–")
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ("setting", "loss", *types))
    return (
        "<h3>Entity F1 per type</h3><p>Clean test split, mean over seeds.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def tagging_html(results: Results, summary: list[dict[str, Any]]) -> str:
    """The tagging sections of the report: what to pick for tagging, direction, per type."""
    guide = (
        "<h3>What to pick for tagging</h3><p>Rank by entity F1 first: it is what a tagger is "
        "judged on, and token accuracy is dominated by the O tag (about 80% of the tokens). "
        "Under noisy tags, prefer a loss that wins beyond the seed spread at your expected noise "
        "rate in the table above; where none does, keep CE (or the best-calibrated loss, by "
        "ECE) and fix the calibration afterwards with temperature scaling on a validation set "
        "with clean tags if you have one: noisy validation tags mislead it (val. ECE noisy vs "
        "clean in the results).</p>"
    )
    return guide + _direction_html(results, summary) + _per_type_html(results)
