"""The ``crossent`` command (:func:`main`) and its tool sub-commands (``calc``)."""

from __future__ import annotations

from crossent.cli.main import main

__all__ = ["main"]
