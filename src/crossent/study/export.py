"""Machine-readable study results: what ``study report --json`` and ``study list --json`` print.

Both return plain JSON-ready dicts (numbers, strings, lists, ``None`` for a missing or NaN
value); ``docs/study.md`` documents the shapes.

Example:
    >>> from crossent.study import Store, load_results
    >>> with Store("runs/crossent.db", readonly=True) as store:       # doctest: +SKIP
    ...     data = report_data(load_results(store, "quick"))
    >>> data["results"][0]["metrics"]["macro_f1"]["mean"]             # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import math
from typing import Any

from crossent.study.results import METRICS, Results, setting_name, summarize, what_to_pick
from crossent.study.store import STATUSES, Store

#: The metrics ``study list`` shows per run.
LIST_METRICS = ("accuracy", "macro_f1", "ece")


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _setting(setting: tuple[str, float, float]) -> dict[str, Any]:
    kind, rate, factor = setting
    return {
        "name": setting_name(setting),
        "noise_kind": kind,
        "noise_rate": rate,
        "imbalance_factor": factor,
    }


def _pick(pick: dict[str, Any] | None) -> dict[str, Any] | None:
    if pick is None:
        return None
    keys = ("best", "value", "runner_up", "margin", "spread", "clear")
    return {key: _number(pick[key]) for key in keys}


def report_data(results: Results) -> dict[str, Any]:
    """The report of one study as JSON-ready data.

    Returns:
        ``{"study", "validation_labels", "runs": {"finished", "failed", "unfinished"},
        "execution": [{"executor", "workers", "threads", "runs"}], "results": [{"setting":
        {"name", "noise_kind", "noise_rate", "imbalance_factor"}, "loss", "n",
        "not_converged", "metrics": {key: {"mean", "std"}}}], "picks": [{"setting",
        "by_macro_f1", "by_ece"}], "failed": [{"id", "description", "error"}]}``; each pick
        is ``{"best", "value", "runner_up", "margin", "spread", "clear"}`` or ``None``.
    """
    summary = summarize(results.rows)
    return {
        "study": results.study,
        "validation_labels": results.validation_labels,
        "runs": {
            "finished": len(results.rows),
            "failed": len(results.failed),
            "unfinished": results.unfinished,
        },
        "execution": results.execution,
        "results": [
            {
                "setting": _setting(entry["setting"]),
                "loss": entry["variant"],
                "n": entry["n"],
                "not_converged": entry["not_converged"],
                "metrics": {
                    key: {s: _number(entry["metrics"][key][s]) for s in ("mean", "std")}
                    for key, _, _ in METRICS
                },
            }
            for entry in summary
        ],
        "picks": [
            {
                "setting": _setting(pick["setting"]),
                "by_macro_f1": _pick(pick["f1"]),
                "by_ece": _pick(pick["ece"]),
            }
            for pick in what_to_pick(summary)
        ],
        "failed": [
            {
                "id": run["id"],
                "description": run["description"],
                "error": ((run["error"] or "").strip().splitlines() or [""])[-1],
            }
            for run in results.failed
        ],
    }


def studies_data(store: Store) -> list[dict[str, Any]]:
    """``[{"name", "updated_at", "counts": {status: n}}]``, most recently updated first."""
    return [
        {"name": s["name"], "updated_at": s["updated_at"], "counts": s["counts"]}
        for s in store.studies()
    ]


def runs_data(store: Store, study: str | None, status: str | None) -> list[dict[str, Any]]:
    """The runs ``study list [NAME] [--status S]`` shows, as JSON-ready data.

    Returns:
        ``[{"id", "status", "description", "attempts", "duration_s", "metrics": {accuracy,
        macro_f1, ece} or None, "executor", "workers", "threads"}]`` in study order.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"Expected `status` to be one of {STATUSES}, but got {status!r}")
    out = []
    for run in store.runs(study, status):
        metrics = run["metrics"]
        env = run["environment"] or {}
        out.append(
            {
                "id": run["id"],
                "status": run["status"],
                "description": run["description"],
                "attempts": run["attempts"],
                "duration_s": run["duration_s"],
                "metrics": None
                if metrics is None
                else {key: _number(metrics.get(key)) for key in LIST_METRICS},
                "executor": env.get("executor"),
                "workers": env.get("workers"),
                "threads": env.get("threads"),
            }
        )
    return out
