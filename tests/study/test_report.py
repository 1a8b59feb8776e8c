import csv
import html
import json
import math
import os
import statistics
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from rich.console import Console

from crossent.cli import main
from crossent.study import Store, load_results, parse_config, print_report, run_study, write_report
from crossent.study.report import fmt
from crossent.study.results import (
    METRICS,
    Results,
    execution_text,
    overall_ranking,
    setting_name,
    summarize,
    what_to_pick,
)
from tests.study.helpers import tiny_raw


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """A finished tiny study with a one-key grid, two noise rates and two seeds."""
    folder = tmp_path_factory.mktemp("study")
    db = folder / "runs.db"
    raw = tiny_raw(
        losses=[
            {"label": "ce", "loss": "ce"},
            {"label": "gce", "loss": "gce", "grid": {"q": [0.3, 0.7]}},
            {"label": "sgce", "loss": "sgce", "params": {"q": 0.7, "label_smoothing": 0.1}},
        ]
    )
    with ThreadPoolExecutor(2) as pool:
        run_study(parse_config(raw), db, executor=pool, workers=2, progress=False)
    with Store(db) as store:
        path = write_report(store, "tiny", folder / "report")
        yield store, path


def test_report_files_exist(studied):
    _, path = studied
    folder = path.parent
    assert path.name == "report.html"
    for name in ("summary.csv", "runs.csv"):
        assert (folder / name).stat().st_size > 0
    figures = {
        "accuracy_f1.png",
        "grid_f1.png",
        "calibration.png",
        "reliability.png",
        "confusion.png",
        "training_curves.png",
    }
    for name in figures:
        png = folder / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}" in path.read_text()
    assert not (folder / "figures" / "precision_recall.png").exists()  # digits is not binary


def test_tables_hold_the_stored_numbers(studied):
    store, path = studied
    page = path.read_text()
    runs = [r for r in store.runs("tiny") if r["status"] == "finished"]
    groups = {}
    for run in runs:
        c = run["config"]
        key = (c["noise"]["rate"], c["loss"]["label"], c["loss"]["grid"].get("q"))
        groups.setdefault(key, []).append(run["metrics"])
    assert len(groups) == 2 * 4
    for members in groups.values():
        for metric in ("accuracy", "macro_f1", "ece", "ece_ts"):
            values = [m[metric] for m in members]
            cell = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
            assert html.escape(cell) in page, (metric, cell)
    with (path.parent / "runs.csv").open() as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {r["id"] for r in runs}
    for run in runs:
        assert float(rows[run["id"]]["macro_f1"]) == pytest.approx(run["metrics"]["macro_f1"])
        assert float(rows[run["id"]]["ece"]) == pytest.approx(run["metrics"]["ece"])


def test_report_says_which_validation_labels_temperature_scaling_saw(studied):
    _, path = studied
    assert "validation split with noisy labels" in path.read_text()


def test_what_to_pick_section(studied):
    store, path = studied
    results = load_results(store, "tiny")
    picks = what_to_pick(summarize(results.rows))
    assert len(picks) == 2
    page = path.read_text()
    for pick in picks:
        assert html.escape(pick["f1"]["best"]) in page
        assert pick["f1"]["margin"] >= 0 and pick["f1"]["spread"] >= 0


def test_terminal_table(studied):
    store, _ = studied
    console = Console(record=True, width=200)
    print_report(load_results(store, "tiny"), console)
    text = console.export_text()
    assert "What to pick" in text and "symmetric 0.4" in text and "gce q=0.7" in text
    entry = summarize(load_results(store, "tiny").rows)[0]
    assert fmt(entry["metrics"]["accuracy"]).replace(" ± ", "±") in text


def _entry(setting, variant, f1, f1_std, ece, n=3):
    metrics = {key: {"mean": math.nan, "std": math.nan} for key in ("accuracy",)}
    metrics["macro_f1"] = {"mean": f1, "std": f1_std}
    metrics["ece"] = {"mean": ece, "std": 0.01}
    return {"setting": setting, "variant": variant, "n": n, "not_converged": 0, "metrics": metrics}


def test_what_to_pick_margin_and_spread():
    s1, s2 = ("symmetric", 0.4, 1.0), ("symmetric", 0.8, 1.0)
    summary = [
        _entry(s1, "ce", 0.80, 0.01, 0.10),
        _entry(s1, "gce", 0.90, 0.02, 0.05),
        _entry(s2, "ce", 0.50, 0.05, 0.30),
        _entry(s2, "gce", 0.52, 0.04, 0.10),
    ]
    first, second = what_to_pick(summary)
    assert first["f1"]["best"] == "gce" and first["f1"]["runner_up"] == "ce"
    assert first["f1"]["margin"] == pytest.approx(0.10) and first["f1"]["spread"] == 0.02
    assert first["f1"]["clear"] is True
    assert second["f1"]["margin"] == pytest.approx(0.02) and second["f1"]["clear"] is False
    assert first["ece"]["best"] == "gce"
    assert overall_ranking(summary) == [("gce", 1.0), ("ce", 2.0)]
    single = what_to_pick(
        [_entry(s1, "ce", 0.8, 0.0, 0.1, n=1), _entry(s1, "gce", 0.7, 0.0, 0.1, n=1)]
    )
    assert single[0]["f1"]["clear"] is None  # one seed: no spread to compare against


def test_report_of_a_binary_set_draws_pr_curves(tmp_path):
    raw = tiny_raw(data={"name": "breast_cancer"}, study={"name": "bin", "seeds": [0]})
    with ThreadPoolExecutor(1) as pool:
        run_study(parse_config(raw), tmp_path / "b.db", executor=pool, progress=False)
    with Store(tmp_path / "b.db") as store:
        path = write_report(store, "bin", tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "precision_recall.png").exists()
    assert "Precision-recall curves" in path.read_text()


def test_report_lists_failed_runs(tmp_path):
    raw = tiny_raw(training={"epochs": 2, "lr": 1e30}, study={"name": "bad", "seeds": [0]})
    with ThreadPoolExecutor(1) as pool:
        summary = run_study(parse_config(raw), tmp_path / "f.db", executor=pool, progress=False)
    assert summary.failed == summary.total
    with Store(tmp_path / "f.db") as store:
        page = write_report(store, "bad", tmp_path / "out").read_text()
    assert "Failed runs" in page and "FloatingPointError" in page


def _cli_json(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_terminal_legend_explains_ece_after_temperature_scaling(studied):
    store, _ = studied
    results = load_results(store, "tiny")
    console = Console(record=True, width=100)
    print_report(results, console)
    text = " ".join(console.export_text().split())
    assert "ECE·TS: ECE after temperature scaling." in text
    assert "validation split with noisy labels" in text
    assert "temperature comes out too high" in text and "under-confident" in text
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert results.execution == [
        {"executor": "ThreadPoolExecutor", "workers": 2, "threads": threads, "runs": 16}
    ]
    assert f"ran on {execution_text(results.execution[0])}" in text
    clean = Results("c", {"data": {"validation_labels": "clean"}}, rows=[])
    console = Console(record=True, width=100)
    print_report(clean, console)
    assert "validation split with clean labels" in " ".join(console.export_text().split())


def test_report_json(studied):
    store, path = studied
    db = path.parent.parent / "runs.db"
    data = _cli_json("study", "report", "tiny", "--json", "--db", db)
    assert data["report"] is None  # no HTML without --out
    assert data["study"] == "tiny" and data["validation_labels"] == "noisy"
    assert data["runs"] == {"finished": 16, "failed": 0, "unfinished": 0}
    summary = summarize(load_results(store, "tiny").rows)
    assert [(e["setting"]["name"], e["loss"]) for e in data["results"]] == [
        (setting_name(e["setting"]), e["variant"]) for e in summary
    ]
    for got, want in zip(data["results"], summary, strict=True):
        assert got["n"] == want["n"] and set(got["metrics"]) == {k for k, _, _ in METRICS}
        for key in ("accuracy", "macro_f1", "ece"):
            assert got["metrics"][key]["mean"] == pytest.approx(want["metrics"][key]["mean"])
    assert data["results"][0]["setting"] == {
        "name": "clean", "noise_kind": "none", "noise_rate": 0.0, "imbalance_factor": 1.0,
    }  # fmt: skip
    picks = what_to_pick(summary)
    assert [p["by_macro_f1"]["best"] for p in data["picks"]] == [p["f1"]["best"] for p in picks]
    assert set(data["picks"][0]["by_ece"]) == {
        "best", "value", "runner_up", "margin", "spread", "clear",
    }  # fmt: skip
    assert data["failed"] == [] and data["execution"][0]["runs"] == 16


def test_list_json(studied):
    store, path = studied
    db = path.parent.parent / "runs.db"
    listed = _cli_json("study", "list", "--json", "--db", db)
    assert listed["db"] == str(db) and "quick" in listed["presets"]
    (entry,) = listed["studies"]
    assert entry["name"] == "tiny"
    assert entry["counts"] == {"pending": 0, "running": 0, "finished": 16, "failed": 0}
    runs = _cli_json("study", "list", "tiny", "--json", "--db", db)
    assert runs["study"] == "tiny" and runs["status"] is None
    stored = store.runs("tiny")
    assert [r["id"] for r in runs["runs"]] == [r["id"] for r in stored]
    first = runs["runs"][0]
    assert first["metrics"]["macro_f1"] == stored[0]["metrics"]["macro_f1"]
    assert (first["status"], first["attempts"], first["workers"]) == ("finished", 1, 2)
    assert first["description"] == stored[0]["description"]
    assert (
        _cli_json("study", "list", "tiny", "--status", "failed", "--json", "--db", db)["runs"] == []
    )
