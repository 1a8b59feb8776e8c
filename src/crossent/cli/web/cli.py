"""The ``--web``, ``--port``, ``--open`` and ``--out`` options of ``crossent calc``."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from crossent.cli.web.page import write_page
from crossent.cli.web.server import serve

DEFAULT_PORT = 8765
_WEB_OPTIONS = {"web": "--web", "port": "--port", "open_browser": "--open", "out": "--out"}


def _given(ctx: click.Context) -> list[str]:
    """The parameters of the running command given on the command line."""
    return [n for n in ctx.params if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]


def run_from_calc(web: bool, port: int | None, open_browser: bool, out: Path | None) -> bool:
    """Write or serve the page when ``--web`` is given; whether it was (calc then stops).

    ``--web --out DIR`` writes ``DIR/calc.html``; ``--web [--port P] [--open]`` serves the page
    on ``127.0.0.1:P`` (default 8765; 0: any free port) until Ctrl+C.

    Raises:
        click.UsageError: ``--port``/``--open``/``--out`` without ``--web``, or ``--web`` with a
            prediction or loss option (the page has its own controls).
        click.ClickException: ``--out`` cannot be written.
        click.BadParameter: the port cannot be bound.
    """
    given = _given(click.get_current_context())
    if not web:
        stray = [_WEB_OPTIONS[n] for n in given if n in _WEB_OPTIONS]
        if stray:
            raise click.UsageError(f"{', '.join(stray)} go(es) with --web.")
        return False
    others = [n for n in given if n not in _WEB_OPTIONS]
    if others:
        names = ", ".join("--" + n.replace("as_json", "json") for n in others)
        raise click.UsageError(f"--web opens the page, which has its own controls: drop {names}.")
    if out is not None:
        if port is not None or open_browser:
            raise click.UsageError("--out writes the page, it serves nothing: drop --port, --open.")
        try:
            path = write_page(out)
        except OSError as err:
            raise click.ClickException(f"{out}: cannot write ({err.strerror or err})") from None
        click.echo(f"wrote {path} (open it in a browser: it needs no network)")
        return True
    port = DEFAULT_PORT if port is None else port
    try:
        serve(port, open_browser, announce=click.echo)
    except OSError as err:
        raise click.BadParameter(
            f"cannot listen on 127.0.0.1:{port} ({err.strerror or err}); pick another port, "
            "or 0 for any free one",
            param_hint="--port",
        ) from None
    return True
