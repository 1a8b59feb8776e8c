from click.testing import CliRunner

from crossent.cli import main
from crossent.study import Store, expand, load_preset


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_end_to_end_on_quick(quick_study, tmp_path):
    db, out, result = quick_study.db, quick_study.out, quick_study.result
    assert result.exit_code == 0, result.output
    total = len(expand(load_preset("quick")))
    assert f"{total}/{total} finished" in result.output
    assert "What to pick" in result.output
    assert (out / "report.html").exists() and (out / "figures" / "accuracy_f1.png").exists()
    # --threads is used, recorded with each run, and shown in the report
    threads = quick_study.threads
    with Store(db, readonly=True) as store:
        environments = [run["environment"] for run in store.runs("quick")]
    assert {(e["executor"], e["workers"], e["threads"]) for e in environments} == {
        ("process:1", 1, threads)
    }
    where = f"process:1 (1 worker, {threads} thread per run): {total} runs"
    assert f"ran on {where}" in result.output
    assert where in (out / "report.html").read_text()

    listed = _invoke("study", "list", "--db", str(db))
    assert listed.exit_code == 0 and "quick" in listed.output
    with Store(db) as store:
        rid = store.runs("quick")[0]["id"]
    runs = _invoke("study", "list", "quick", "--db", str(db))
    assert rid in runs.output and "finished" in runs.output
    shown = _invoke("study", "show", rid[:8], "--db", str(db))
    assert shown.exit_code == 0 and rid in shown.output and '"accuracy"' in shown.output

    again = _invoke(
        "study", "run", "--preset", "quick", "--db", str(db), "--no-report", "--no-progress"
    )
    assert f"0 ran now, {total} already done" in again.output

    report = _invoke("study", "report", "--db", str(db), "--out", str(tmp_path / "again"))
    assert report.exit_code == 0 and (tmp_path / "again" / "report.html").exists()


def test_cli_retry_failed(tmp_path):
    config = tmp_path / "explode.toml"
    config.write_text(
        "[study]\nseeds = [0]\n[model]\nhidden = [8]\n[training]\nepochs = 2\nlr = 1e30\n"
        '[[losses]]\nloss = "ce"\n'
    )
    db = tmp_path / "runs.db"
    first = _invoke(
        "study",
        "run",
        str(config),
        "--db",
        str(db),
        "--no-report",
        "--no-progress",
        "--workers",
        "1",
        "--threads",
        "1",
    )
    assert first.exit_code == 1 and "1 failed" in first.output
    with Store(db) as store:
        (run,) = store.runs("explode")
        assert run["status"] == "failed" and "FloatingPointError" in run["error"]
    retried = _invoke(
        "study",
        "run",
        str(config),
        "--db",
        str(db),
        "--no-report",
        "--no-progress",
        "--workers",
        "1",
        "--threads",
        "1",
        "--retry-failed",
    )
    assert "1 ran now" in retried.output
    with Store(db) as store:
        assert store.get(run["id"])["attempts"] == 2
    shown = _invoke("study", "show", run["id"], "--db", str(db))
    assert "Traceback" in shown.output


def test_cli_rejects_invalid_configs_with_the_key_path(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[noise]\nrates = [0.2, 2.0]\n[[losses]]\nloss = "ce"\n')
    result = CliRunner().invoke(main, ["study", "run", str(config), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "Invalid study config at `noise.rates[1]`: expected <= 1" in result.output
    assert not (tmp_path / "x.db").exists()
    both = CliRunner().invoke(main, ["study", "run", str(config), "--preset", "quick"])
    assert both.exit_code == 2 and "not both" in both.output


def test_cli_without_a_store(tmp_path):
    result = CliRunner().invoke(main, ["study", "list", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "No study store" in result.output
    assert not (tmp_path / "none.db").exists()


def test_show_unknown_run(tmp_path):
    db = tmp_path / "runs.db"
    Store(db).close()
    result = CliRunner().invoke(main, ["study", "show", "abc", "--db", str(db)])
    assert result.exit_code == 2 and "no run with id 'abc'" in result.output


def test_help_lists_presets():
    result = CliRunner().invoke(main, ["study", "run", "--help"])
    assert "noise" in result.output and "gce-grid" in result.output
