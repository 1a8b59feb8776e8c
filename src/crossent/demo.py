"""``crossent demo``: a short demonstration until the study command is the main job."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Print cross-entropy of a few predictions (placeholder main job)."""
    click.echo("crossent demo")
