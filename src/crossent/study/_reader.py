"""Reading a study config table key by key: typed values, key paths, typo rejection.

Every error is a :class:`StudyConfigError` naming the key path (``losses[1].grid.q``) and
the reason, raised before any run starts.
"""

from __future__ import annotations

import copy
from typing import Any

_MISSING = object()


class StudyConfigError(ValueError):
    """An invalid study config: ``path`` is the key path, ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"Invalid study config at `{path}`: {reason}")


class Table:
    """A TOML table read key by key; remembers the path for messages and rejects typos."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise StudyConfigError(path, f"expected a table, but got {data!r}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: object = _MISSING) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise StudyConfigError(self.at(key), "is required but missing")
        return copy.deepcopy(default)

    def table(self, key: str) -> Table:
        return Table(self.get(key, {}), self.at(key))

    def string(self, key: str, default: object = _MISSING, choices: tuple[str, ...] = ()) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value:
            raise StudyConfigError(self.at(key), f"expected a non-empty string, but got {value!r}")
        return choice(value, self.at(key), choices) if choices else value

    def number(
        self,
        key: str,
        default: object = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        integer: bool = False,
    ) -> Any:
        return number(self.get(key, default), self.at(key), low, high, low_open, integer)

    def numbers(self, key: str, default: object = _MISSING, **bounds: Any) -> list[Any]:
        value = self.get(key, default)
        if not isinstance(value, list) or not value:
            raise StudyConfigError(self.at(key), f"expected a non-empty list, but got {value!r}")
        out = [number(v, f"{self.at(key)}[{i}]", **bounds) for i, v in enumerate(value)]
        if len(set(out)) != len(out):
            raise StudyConfigError(self.at(key), f"expected distinct values, but got {value!r}")
        return out

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise StudyConfigError(self.at(unknown[0]), f"unknown key (known keys: {known})")


def choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise StudyConfigError(path, f"expected one of {allowed}, but got {value!r}")
    return str(value)


def number(
    value: object,
    path: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> Any:
    """Check one number; integers stay ``int`` with ``integer=True``, otherwise become float."""
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise StudyConfigError(path, f"expected {kind}, but got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise StudyConfigError(path, f"expected a finite number, but got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise StudyConfigError(path, f"expected {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        raise StudyConfigError(path, f"expected <= {high:g}, but got {value!r}")
    return int(value) if integer else float(value)
