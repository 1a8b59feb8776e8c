"""``crossent study``: run a loss-choice study, report it, list and show stored runs.

Examples::

    crossent study run                          # the default `noise` preset on digits
    crossent study run --preset gce-grid --workers 2
    crossent study run my_study.toml --db runs/mine.db --out runs/mine
    crossent study report noise                 # terminal table + HTML report again
    crossent study list                         # studies in the store, with run counts
    crossent study list noise --status failed
    crossent study show 3f2a                    # one run by id (or a unique prefix)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

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


class _ConfigProblem(click.ClickException):
    exit_code = 2


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _load(config: str | None, preset: str | None) -> StudyConfig:
    if config is not None and preset is not None:
        raise click.UsageError("Give a CONFIG file or --preset, not both.")
    try:
        return load_config(config) if config is not None else load_preset(preset or DEFAULT_PRESET)
    except StudyConfigError as err:
        raise _ConfigProblem(str(err)) from None


def _open(db: str) -> Store:
    from crossent.study.store import Store

    if not Path(db).exists():
        raise click.ClickException(f"No study store at {db} (run `crossent study run` first).")
    return Store(db)


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
    help="Parallel worker processes.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch threads per worker [default: cores // workers].",
)
@click.option("--retry-failed", is_flag=True, help="Run failed runs again.")
@click.option("--no-report", is_flag=True, help="Skip the report at the end.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run_command(
    config: str | None,
    preset: str | None,
    db: str,
    out: str | None,
    workers: int,
    threads: int | None,
    retry_failed: bool,
    no_report: bool,
    no_progress: bool,
) -> None:
    """Run a study from a TOML CONFIG file or a preset; finished runs are skipped."""
    from rich.console import Console

    from crossent.study.report import print_report, write_report
    from crossent.study.results import load_results
    from crossent.study.runner import run_study
    from crossent.study.store import Store

    cfg = _load(config, preset)
    console = Console()
    try:
        summary = run_study(
            cfg,
            db,
            workers=workers,
            retry_failed=retry_failed,
            progress=not no_progress,
            console=console,
        )
    except StudyConfigError as err:
        raise _ConfigProblem(str(err)) from None
    console.print(
        f"study {summary.study}: {summary.finished}/{summary.total} finished "
        f"({summary.ran} ran now, {summary.skipped} already done), {summary.failed} failed, "
        f"{summary.elsewhere} with another runner; {summary.duration_s:.1f} s"
    )
    if not no_report:
        with Store(db) as store:
            print_report(load_results(store, cfg.name), console)
            path = write_report(store, cfg.name, out or Path("runs") / cfg.name)
        console.print(f"report: {path}")
    if summary.failed:
        console.print(
            "[yellow]Some runs failed: `crossent study list --status failed`, `--retry-failed`."
        )
        raise SystemExit(1)


@study.command("report")
@click.argument("name", required=False)
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
@click.option("--out", default=None, help="Report folder [default: runs/<study>].")
def report_command(name: str | None, db: str, out: str | None) -> None:
    """Print the results table and write the HTML report of study NAME (default: latest)."""
    from rich.console import Console

    from crossent.study.report import print_report, write_report
    from crossent.study.results import load_results

    with _open(db) as store:
        studies = [s["name"] for s in store.studies()]
        if not studies:
            raise click.ClickException(f"No study in {db}.")
        name = name or studies[0]
        if name not in studies:
            raise click.ClickException(f"No study {name!r} in {db}; stored: {', '.join(studies)}.")
        console = Console()
        print_report(load_results(store, name), console)
        path = write_report(store, name, out or Path("runs") / name)
    console.print(f"report: {path}")


@study.command("list")
@click.argument("name", required=False)
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
@click.option("--status", type=click.Choice(["pending", "running", "finished", "failed"]))
def list_command(name: str | None, db: str, status: str | None) -> None:
    """List the studies in the store, or the runs of study NAME."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with _open(db) as store:
        if name is None and status is None:
            table = Table("study", "finished", "failed", "running", "pending", title=db)
            for entry in store.studies():
                counts = entry["counts"]
                table.add_row(
                    entry["name"],
                    *(str(counts[s]) for s in ("finished", "failed", "running", "pending")),
                )
            console.print(table)
            console.print(f"presets: {', '.join(preset_names())}")
            return
        table = Table(title=f"{db}: {name or 'all studies'}")
        table.add_column("id", no_wrap=True, min_width=16)
        for heading in ("status", "run", "accuracy", "macro-F1", "ECE", "seconds"):
            table.add_column(heading)
        for run in store.runs(name, status):
            metrics = run["metrics"] or {}
            values = [
                f"{metrics[k]:.3f}" if k in metrics else "" for k in ("accuracy", "macro_f1", "ece")
            ]
            seconds = f"{run['duration_s']:.1f}" if run["duration_s"] is not None else ""
            table.add_row(run["id"], run["status"], run["description"], *values, seconds)
        console.print(table)


@study.command("show")
@click.argument("run_id")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLite results store.")
def show_command(run_id: str, db: str) -> None:
    """Show one stored run: config, metrics, history length, error (RUN_ID or a prefix)."""
    with _open(db) as store:
        try:
            run = store.get(run_id)
        except KeyError as err:
            raise click.ClickException(str(err.args[0])) from None
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
