"""The ``crossent`` command: one click group, sub-commands contributed by sub-packages."""

from __future__ import annotations

import click

from crossent import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossent")
def main() -> None:
    """crossent: the cross-entropy family of losses, calibration and loss-choice studies."""


def _register() -> None:
    """Attach the sub-commands of each sub-package (each module owns its own command)."""
    from crossent.cli.commands import register

    register(main)


_register()
