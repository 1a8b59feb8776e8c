"""Registration of every sub-command on the ``crossent`` group.

Each sub-package exposes a click command (or group) in its own ``cli`` module; this list
is the single place that wires them. Imports are local so ``crossent --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each sub-command, in help order.
_COMMANDS: list[tuple[str, str]] = [
    ("crossent.study.cli", "study"),
    ("crossent.cli.calc", "calc"),
    ("crossent.calibration.cli", "calibrate"),
]


def register(group: click.Group) -> None:
    """Add every known sub-command to ``group``."""
    for module_name, attribute in _COMMANDS:
        module = importlib.import_module(module_name)
        group.add_command(getattr(module, attribute))
