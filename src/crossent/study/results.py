"""Study results as tables: runs grouped by setting and loss, mean ± std over seeds.

A *setting* is a (noise kind, noise rate, imbalance factor) triple; a *variant* is one loss
with one grid point (``gce q=0.7``). :func:`load_results` reads the finished runs of a study,
:func:`summarize` averages every metric over seeds, and :func:`what_to_pick` names, for each
setting, the best variant by macro-F1 and by ECE, its margin over the runner-up and whether
that margin exceeds the seed-to-seed spread.

Example:
    >>> rows = [{"setting": ("none", 0.0, 1.0), "variant": v, "seed": s,
    ...          "metrics": {"macro_f1": f, "ece": e}}
    ...         for v, f, e in (("ce", 0.9, 0.05), ("gce", 0.8, 0.02)) for s in (0, 1)]
    >>> pick = what_to_pick(summarize(rows))[0]
    >>> pick["f1"]["best"], pick["ece"]["best"]
    ('ce', 'gce')
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from crossent.study.grid import variant_name
from crossent.study.store import Store

#: Metrics averaged over seeds: (key, heading, higher is better).
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("macro_f1", "macro-F1", True),
    ("ece", "ECE", False),
    ("ece_ts", "ECE after TS", False),
    ("mce", "MCE", False),
    ("ace", "ACE", False),
    ("nll", "NLL", False),
    ("brier", "Brier", False),
    ("temperature", "temperature", False),
    ("memorised", "memorised", False),
    ("corrected", "corrected", True),
    ("flipped", "flipped", False),
)

#: The metrics of a tagging study (token classification): token accuracy, entity-level
#: scores, token-level calibration on test and on validation with noisy and clean labels.
TAGGING_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "token accuracy", True),
    ("entity_f1", "entity F1", True),
    ("entity_precision", "entity precision", True),
    ("entity_recall", "entity recall", True),
    ("ece", "ECE", False),
    ("mce", "MCE", False),
    ("ace", "ACE", False),
    ("ece_ts", "ECE after TS", False),
    ("val_ece", "val. ECE (noisy)", False),
    ("val_mce", "val. MCE (noisy)", False),
    ("val_clean_ece", "val. ECE (clean)", False),
    ("val_clean_mce", "val. MCE (clean)", False),
    ("val_entity_f1", "val. entity F1 (noisy)", True),
    ("val_clean_entity_f1", "val. entity F1 (clean)", True),
    ("nll", "NLL", False),
    ("temperature", "temperature", False),
    ("memorised", "memorised", False),
    ("corrected", "corrected", True),
    ("flipped", "flipped", False),
)

#: Every metric either kind of study stores: key -> (heading, higher is better).
ALL_METRICS: dict[str, tuple[str, bool]] = {
    key: (title, higher) for key, title, higher in (*METRICS, *TAGGING_METRICS[1:])
}


def setting_name(setting: tuple[str, float, float]) -> str:
    """``"clean"``, ``"symmetric 0.4"``, ``"clean, IF 10"``, ..."""
    kind, rate, factor = setting
    text = "clean" if kind == "none" else f"{kind} {rate:g}"
    return text if factor == 1 else f"{text}, IF {factor:g}"


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """Flatten a stored run into what the report groups on."""
    config = run["config"]
    noise = config["noise"]
    return {
        "id": run["id"],
        "setting": (noise["kind"], noise["rate"], config["imbalance_factor"]),
        "variant": variant_name(config["loss"]),
        "label": config["loss"]["label"],
        "loss": config["loss"],
        "seed": config["seed"],
        "metrics": run["metrics"],
        "history": run["history"],
        "duration_s": run["duration_s"],
    }


@dataclass
class Results:
    """The finished runs of one study plus what the report needs to know about the rest."""

    study: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    failed: list[dict[str, Any]] = field(default_factory=list)
    unfinished: int = 0
    execution: list[dict[str, Any]] = field(default_factory=list)

    @property
    def variants(self) -> list[str]:
        """Variant names in study order."""
        return list(dict.fromkeys(r["variant"] for r in self.rows))

    @property
    def settings(self) -> list[tuple[str, float, float]]:
        """Settings sorted by imbalance factor, noise kind and rate."""
        return sorted({r["setting"] for r in self.rows}, key=lambda s: (s[2], s[0] != "none", s))

    @property
    def tagging(self) -> bool:
        """Whether the study trains a tagger (token classification) rather than a classifier."""
        from crossent.study.taggers import TAGGERS

        return self.config.get("model", {}).get("name") in TAGGERS

    @property
    def metrics(self) -> tuple[tuple[str, str, bool], ...]:
        """The metric table of this kind of study: :data:`TAGGING_METRICS` or :data:`METRICS`."""
        return TAGGING_METRICS if self.tagging else METRICS

    @property
    def primary(self) -> str:
        """The metric the picks rank by: ``"entity_f1"`` for tagging, else ``"macro_f1"``."""
        return "entity_f1" if self.tagging else "macro_f1"

    @property
    def validation_labels(self) -> str:
        """``"noisy"`` or ``"clean"``: the labels temperature scaling was fitted on."""
        return self.config.get("data", {}).get("validation_labels", "noisy")


def execution(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where runs executed: one entry per (executor, workers, threads), most runs first.

    Returns:
        ``[{"executor": "process:2", "workers": 2, "threads": 1, "runs": 12}, ...]``; runs
        stored before the executor was recorded have ``executor`` and ``workers`` ``None``.
    """
    counts: dict[tuple[Any, Any, Any], int] = {}
    for run in runs:
        env = run["environment"] or {}
        key = (env.get("executor"), env.get("workers"), env.get("threads"))
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return [{"executor": e, "workers": w, "threads": t, "runs": n} for (e, w, t), n in ordered]


def execution_text(entry: dict[str, Any]) -> str:
    """``"process:2 (2 workers, 1 thread per run): 12 runs"``."""
    threads = entry["threads"]
    per_run = f"{threads} thread{'s' if threads != 1 else ''} per run" if threads else ""
    if entry["executor"] is None:
        where = "an unrecorded executor" + (f" ({per_run})" if per_run else "")
    else:
        workers = f"{entry['workers']} worker{'s' if entry['workers'] != 1 else ''}"
        where = f"{entry['executor']} ({', '.join(x for x in (workers, per_run) if x)})"
    return f"{where}: {entry['runs']} run{'s' if entry['runs'] != 1 else ''}"


def load_results(store: Store, study: str) -> Results:
    """Read a study's runs from the store (finished ones as rows; failures listed)."""
    runs = store.runs(study)
    done = [r for r in runs if r["status"] in ("finished", "failed")]
    return Results(
        study=study,
        config=store.study_config(study),
        rows=[run_row(r) for r in runs if r["status"] == "finished"],
        failed=[r for r in runs if r["status"] == "failed"],
        unfinished=sum(r["status"] in ("pending", "running") for r in runs),
        execution=execution(done),
    )


def _stats(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": math.nan, "std": math.nan}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (setting, variant): ``n`` seeds, mean/std of each metric, flags.

    Returns:
        Entries ``{"setting", "variant", "n", "not_converged", "metrics": {key: {"mean",
        "std"}}}`` in order of first appearance.
    """
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["variant"]), []).append(row)
    out = []
    for (setting, variant), members in groups.items():
        metrics = {}
        for key in ALL_METRICS:
            metrics[key] = _stats([r["metrics"].get(key) for r in members])
        out.append(
            {
                "setting": setting,
                "variant": variant,
                "n": len(members),
                "not_converged": sum(not r["metrics"].get("converged", True) for r in members),
                "metrics": metrics,
            }
        )
    return out


def _pick(entries: list[dict[str, Any]], key: str, higher: bool) -> dict[str, Any] | None:
    ranked = [e for e in entries if not math.isnan(e["metrics"][key]["mean"])]
    if not ranked:
        return None
    ranked.sort(key=lambda e: e["metrics"][key]["mean"], reverse=higher)
    best = ranked[0]
    pick: dict[str, Any] = {"best": best["variant"], "value": best["metrics"][key]["mean"]}
    if len(ranked) == 1:
        return {**pick, "runner_up": None, "margin": None, "spread": None, "clear": None}
    second = ranked[1]
    margin = abs(best["metrics"][key]["mean"] - second["metrics"][key]["mean"])
    spread = max(best["metrics"][key]["std"], second["metrics"][key]["std"])
    one_seed = best["n"] < 2 or second["n"] < 2
    return {
        **pick,
        "runner_up": second["variant"],
        "margin": margin,
        "spread": spread,
        "clear": None if one_seed else margin > spread,
    }


def what_to_pick(summary: list[dict[str, Any]], key: str = "macro_f1") -> list[dict[str, Any]]:
    """For each setting, the best variant by ``key`` (macro-F1; entity F1 for tagging) and ECE.

    ``margin`` is the difference of the means of the best and the runner-up; ``spread`` the
    larger of their seed-to-seed standard deviations; ``clear`` says whether the margin
    exceeds the spread (``None`` with a single seed, where there is no spread to compare).
    """
    by_setting: dict[Any, list[dict[str, Any]]] = {}
    for entry in summary:
        by_setting.setdefault(entry["setting"], []).append(entry)
    return [
        {
            "setting": setting,
            "f1": _pick(entries, key, True),
            "ece": _pick(entries, "ece", False),
        }
        for setting, entries in by_setting.items()
    ]


def overall_ranking(
    summary: list[dict[str, Any]], key: str = "macro_f1"
) -> list[tuple[str, float]]:
    """Variants by mean rank over the settings (1 = best), best first."""
    higher = ALL_METRICS[key][1]
    by_setting: dict[Any, list[dict[str, Any]]] = {}
    for entry in summary:
        by_setting.setdefault(entry["setting"], []).append(entry)
    ranks: dict[str, list[int]] = {}
    for entries in by_setting.values():
        ordered = sorted(entries, key=lambda e: e["metrics"][key]["mean"], reverse=higher)
        for rank, entry in enumerate(ordered, start=1):
            ranks.setdefault(entry["variant"], []).append(rank)
    mean_rank = [(variant, statistics.fmean(r)) for variant, r in ranks.items()]
    return sorted(mean_rank, key=lambda vr: vr[1])
