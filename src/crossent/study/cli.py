"""``crossent study``: run a loss-choice study, report it, list and show stored runs.

Examples::

    crossent study run                          # the default `noise` preset on digits
    crossent study run --preset gce-grid --workers 2
    crossent study run my_study.toml --db runs/mine.db --out runs/mine
    crossent study run --executor dask:tcp://scheduler:8786
    crossent study report noise                 # terminal table + HTML report again
    crossent study report noise --json          # the same numbers as JSON
    crossent study list                         # studies in the store, with run counts
    crossent study list noise --status failed
    crossent study show 3f2a                    # one run by id (or a unique prefix)

Every error — an invalid config, a store that cannot be used, an unreachable cluster, a
report folder that cannot be written — is one ``Error:`` line naming the file or the key and
the cause, with exit status 2; ``study run`` exits with 1 when a run of the study failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crossent.study.config import (
    StudyConfig,
    StudyConfigError,
    load_config,
    load_preset,
    preset_names,
)

if TYPE_CHECKING:
    from crossent.study.store import Store

DEFAULT_DB = "runs/crossent.db"
DEFAULT_PRESET = "noise"


class _Problem(click.ClickException):
    """One ``Error:`` line, exit status 2."""

    exit_code = 2


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn a config, store, executor or file error into one ``Error:`` line (exit 2)."""
    from crossent.study.executors import ExecutorError
    from crossent.study.store import StoreError

    try:
        yield
    except (StudyConfigError, StoreError, ExecutorError) as err:
        raise _Problem(str(err)) from None
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        raise _Problem(f"{where}{err.strerror or err}") from None


def _write_report(store: Store, name: str, folder: str | Path) -> Path:
    """:func:`~crossent.study.report.write_report`; a full or unwritable folder is a _Problem."""
    from crossent.study.report import write_report

    try:
        return write_report(store, name, folder)
    except OSError as err:
        where = err.filename or folder
        raise _Problem(f"{where}: cannot write the report ({err.strerror or err})") from None


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _load(config: str | None, preset: str | None) -> StudyConfig:
    if config is not None and preset is not None:
        raise click.UsageError("Give a CONFIG file or --preset, not both.")
    with _errors():
        return load_config(config) if config is not None else load_preset(preset or DEFAULT_PRESET)


def _open(db: str) -> Store:
    """The store at ``db``, opened read-only (``list``, ``report``, ``show`` never write)."""
    from crossent.study.store import Store

    if not Path(db).exists():
        raise _Problem(f"No study store at {db} (run `crossent study run` first).")
    with _errors():
        return Store(db, readonly=True)


def _check_folder(folder: Path) -> None:
    """Create the report folder and write a byte into it.

    So a report folder that cannot be written fails before any run is trained, not after.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".crossent-check-") as probe:
            probe.write(b"x")
            probe.flush()
    except OSError as err:
        cause = err.strerror or str(err)
        raise _Problem(f"{folder}: cannot write the report there ({cause})") from None


def _executor(executor: str | None, workers: int, workers_given: bool) -> str:
    from crossent.study.executors import parse_executor

    if executor is None:
        return f"process:{workers}"
    if workers_given:
        raise click.UsageError("Give --workers or --executor, not both.")
    try:
        parse_executor(executor)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--executor") from None
    return executor


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


@click.group()
def study() -> None:
    """Which loss to pick: train under label noise and class imbalance, store, report."""


@study.command("run")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--preset",
    type=click.Choice(preset_names()),
    help=f"A bundled study [default: {DEFAULT_PRESET}].",
)
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
@click.option("--out", default=None, help="Report folder [default: runs/<study>].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=_default_workers,
    show_default="cores, at most 8",
    help="Parallel worker processes (same as --executor process:N).",
)
@click.option(
    "--executor",
    default=None,
    metavar="SPEC",
    help="Where runs execute: process:N, dask:ADDRESS, dask:local:N, ray:ADDRESS, ray:local:N.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch threads per run [default: cores // workers; 1 on Dask and Ray].",
)
@click.option("--retry-failed", is_flag=True, help="Run failed runs again.")
@click.option("--no-report", is_flag=True, help="Skip the report at the end.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def run_command(
    ctx: click.Context,
    config: str | None,
    preset: str | None,
    db: str,
    out: str | None,
    workers: int,
    executor: str | None,
    threads: int | None,
    retry_failed: bool,
    no_report: bool,
    no_progress: bool,
) -> None:
    """Run a study from a TOML CONFIG file or a preset; finished runs are skipped."""
    from rich.console import Console

    from crossent.study.report import print_report
    from crossent.study.results import load_results
    from crossent.study.runner import run_study
    from crossent.study.store import Store

    given = ctx.get_parameter_source("workers") is not click.core.ParameterSource.DEFAULT
    spec = _executor(executor, workers, given)
    cfg = _load(config, preset)
    folder = Path(out) if out else Path("runs") / cfg.name
    if not no_report:
        _check_folder(folder)
    console = Console()
    with _errors():
        summary = run_study(
            cfg,
            db,
            executor=spec,
            workers=workers,
            threads=threads,
            retry_failed=retry_failed,
            progress=not no_progress,
            console=console,
        )
    console.print(
        f"study {summary.study}: {summary.finished}/{summary.total} finished "
        f"({summary.ran} ran now, {summary.skipped} already done), {summary.failed} failed, "
        f"{summary.elsewhere} with another runner; {summary.duration_s:.1f} s"
    )
    if not no_report:
        with _errors(), Store(db, readonly=True) as store:
            print_report(load_results(store, cfg.name), console)
            path = _write_report(store, cfg.name, folder)
        console.print(f"report: {path}")
    if summary.failed:
        console.print(
            "[yellow]Some runs failed: `crossent study list --status failed`, `--retry-failed`."
        )
        raise SystemExit(1)


def _study_name(store: Store, name: str | None, db: str) -> str:
    studies = [s["name"] for s in store.studies()]
    if not studies:
        raise _Problem(f"No study in {db}.")
    name = name or studies[0]
    if name not in studies:
        raise _Problem(f"No study {name!r} in {db}; stored: {', '.join(studies)}.")
    return name


@study.command("report")
@click.argument("name", required=False)
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
@click.option("--out", default=None, help="Report folder [default: runs/<study>].")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the results as JSON (the HTML report only with --out).",
)
def report_command(name: str | None, db: str, out: str | None, as_json: bool) -> None:
    """Print the results table and write the HTML report of study NAME (default: latest)."""
    from rich.console import Console

    from crossent.study.export import report_data
    from crossent.study.report import print_report
    from crossent.study.results import load_results

    console = Console()
    with _errors(), _open(db) as store:
        name = _study_name(store, name, db)
        results = load_results(store, name)
        if as_json:
            data = report_data(results)
            data["report"] = str(_write_report(store, name, out)) if out else None
            _echo_json(data)
            return
        print_report(results, console)
        path = _write_report(store, name, out or Path("runs") / name)
    console.print(f"report: {path}")


@study.command("list")
@click.argument("name", required=False)
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
@click.option("--status", type=click.Choice(["pending", "running", "finished", "failed"]))
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_command(name: str | None, db: str, status: str | None, as_json: bool) -> None:
    """List the studies in the store, or the runs of study NAME."""
    from crossent.study.export import runs_data, studies_data

    with _errors(), _open(db) as store:
        if name is None and status is None:
            studies = studies_data(store)
            if as_json:
                _echo_json({"db": db, "studies": studies, "presets": preset_names()})
            else:
                _print_studies(db, studies)
            return
        runs = runs_data(store, name, status)
    if as_json:
        _echo_json({"db": db, "study": name, "status": status, "runs": runs})
    else:
        _print_runs(db, name, runs)


def _print_studies(db: str, studies: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("study", "finished", "failed", "running", "pending", title=db)
    for entry in studies:
        counts = entry["counts"]
        table.add_row(
            entry["name"], *(str(counts[s]) for s in ("finished", "failed", "running", "pending"))
        )
    console = Console()
    console.print(table)
    console.print(f"presets: {', '.join(preset_names())}")


def _print_runs(db: str, name: str | None, runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{db}: {name or 'all studies'}")
    table.add_column("id", no_wrap=True, min_width=16)
    for heading in ("status", "run", "accuracy", "macro-F1", "ECE", "seconds"):
        table.add_column(heading)
    for run in runs:
        metrics = run["metrics"] or {}
        values = [
            f"{metrics[k]:.3f}" if metrics.get(k) is not None else ""
            for k in ("accuracy", "macro_f1", "ece")
        ]
        seconds = f"{run['duration_s']:.1f}" if run["duration_s"] is not None else ""
        table.add_row(run["id"], run["status"], run["description"], *values, seconds)
    Console().print(table)


@study.command("show")
@click.argument("run_id")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
def show_command(run_id: str, db: str) -> None:
    """Show one stored run: config, metrics, history length, error (RUN_ID or a prefix)."""
    with _errors(), _open(db) as store:
        try:
            run = store.get(run_id)
        except KeyError as err:
            raise _Problem(str(err.args[0])) from None
    click.echo(f"id:          {run['id']}")
    click.echo(f"run:         {run['description']}")
    click.echo(f"status:      {run['status']} (attempts: {run['attempts']}, owner: {run['owner']})")
    click.echo(f"studies:     {', '.join(run['studies'])}")
    if run["duration_s"] is not None:
        click.echo(f"duration:    {run['duration_s']:.2f} s")
    click.echo(f"environment: {json.dumps(run['environment'])}")
    click.echo("config:")
    click.echo(json.dumps(run["config"], indent=2, sort_keys=True))
    if run["metrics"] is not None:
        click.echo("metrics:")
        click.echo(json.dumps(run["metrics"], indent=2, sort_keys=True))
    if run["history"] is not None:
        epochs = len(run["history"]["train_loss"])
        click.echo(f"history:     {epochs} epochs of {', '.join(sorted(run['history']))}")
    if run["error"]:
        click.echo("error:")
        click.echo(run["error"])
