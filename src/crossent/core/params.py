"""Declared argument constraints: each hyper-parameter's allowed values, stated once.

Modelled on scikit-learn's ``_parameter_constraints`` and ``validate_params``: a public
function is decorated with :func:`constrained`, which names a :class:`Constraint` for each of
its hyper-parameters; the call checks (and normalises, e.g. ``2`` to ``2.0``) those arguments
before the body runs, and the module mirroring the function checks its constructor's
arguments against the same declarations (:func:`validate`). The declarations are data, so a
meta-test can ask each constraint for values it rejects (:meth:`Constraint.invalid`) and call
every public loss, metric and scaler with each of them.

Messages follow :mod:`crossent.core.checks`: ``Expected `gamma` in [0, inf), but got -1.0``
(:class:`~crossent.core.checks.ArgumentError`: a ``ValueError``, also a ``RuntimeError``) or
``Expected `n_bins` to be an int, but got 1.5 (float)``
(:class:`~crossent.core.checks.ArgumentTypeError`: a ``TypeError``, also a ``ValueError``).

Example:
    >>> @constrained(q=Real(0, 1))
    ... def lq(x, *, q=0.7):
    ...     return q
    >>> lq(None, q=1)
    1.0
    >>> lq(None, q=2)
    Traceback (most recent call last):
    ...
    crossent.core.checks.ArgumentError: Expected `q` in [0, 1], but got 2
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, cast
from weakref import WeakKeyDictionary

from crossent.core import checks

F = TypeVar("F", bound=Callable[..., Any])

# The declarations of every constrained function, by function.
_DECLARED: WeakKeyDictionary[Callable[..., Any], Mapping[str, Constraint]] = WeakKeyDictionary()


class Constraint:
    """The values one argument may take."""

    def check(self, name: str, value: object) -> Any:
        """Return ``value`` (normalised) or raise an error naming ``name`` and ``value``."""
        raise NotImplementedError

    def invalid(self) -> tuple[object, ...]:
        """Values this constraint rejects (for the meta-tests)."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is expected, as in ``Expected `name` <describe()>``."""
        raise NotImplementedError

    def same_kind(self, value: object) -> bool:
        """Whether ``value`` is of the kind this constraint takes (its range aside)."""
        return True

    def __or__(self, other: Constraint) -> AnyOf:
        return AnyOf((self, other))


@dataclass(frozen=True)
class Real(Constraint):
    """A finite real number in ``[low, high]`` (``None``: unbounded; ``open`` excludes ends).

    ``open`` is ``""``, ``"low"``, ``"high"`` or ``"both"``.
    """

    low: float | None = None
    high: float | None = None
    open: str = ""

    def check(self, name: str, value: object) -> float:
        """The value as a float, after :func:`crossent.core.checks.check_real`."""
        return checks.check_real(
            name,
            value,
            low=self.low,
            high=self.high,
            low_open=self.open in ("low", "both"),
            high_open=self.open in ("high", "both"),
        )

    def same_kind(self, value: object) -> bool:
        """A real number (not a bool)."""
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    def invalid(self) -> tuple[object, ...]:
        """Just outside each finite end, NaN, and a string."""
        out: list[object] = [math.nan, "1"]
        if self.low is not None:
            out.append(self.low if self.open in ("low", "both") else self.low - 1.0)
        if self.high is not None:
            out.append(self.high if self.open in ("high", "both") else self.high + 1.0)
        return tuple(out)

    def describe(self) -> str:
        """``in [low, high]`` with the interval's brackets."""
        left = "(" if self.low is None or self.open in ("low", "both") else "["
        right = ")" if self.high is None or self.open in ("high", "both") else "]"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer (anything with ``__index__`` but a bool) in ``[low, high]``."""

    low: int | None = None
    high: int | None = None
    note: str = ""

    def check(self, name: str, value: object) -> int:
        """The value as an ``int``."""
        if isinstance(value, bool):
            raise checks.ArgumentTypeError(
                f"Expected `{name}` to be an int, but got {value!r} (bool)"
            )
        try:
            number = operator.index(value)
        except TypeError:
            got = checks.described(value)
            raise checks.ArgumentTypeError(
                f"Expected `{name}` to be an int, but got {got}"
            ) from None
        if self.low is not None and number < self.low:
            raise checks.fail(name, f">= {self.low}", value)
        if self.high is not None and number > self.high:
            raise checks.fail(name, f"<= {self.high:,} {self.note}".rstrip(), value)
        return number

    def same_kind(self, value: object) -> bool:
        """An integer (not a bool)."""
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def invalid(self) -> tuple[object, ...]:
        """A float, a bool, and just outside each end."""
        out: list[object] = [1.5, True]
        if self.low is not None:
            out.append(self.low - 1)
        if self.high is not None:
            out.append(self.high + 1)
        return tuple(out)

    def describe(self) -> str:
        """``to be an int`` and its range (``>= low``, ``<= high`` or ``in [low, high]``)."""
        if self.low is not None and self.high is not None:
            return f"to be an int in [{self.low}, {self.high:,}]"
        if self.low is not None:
            return f"to be an int >= {self.low}"
        if self.high is not None:
            return f"to be an int <= {self.high:,}"
        return "to be an int"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a few values (strings, usually)."""

    values: tuple[object, ...]

    def check(self, name: str, value: object) -> object:
        """The value itself."""
        checks.check_choice(name, value, self.values)
        return value

    def same_kind(self, value: object) -> bool:
        """A value of the type of one of the options."""
        return isinstance(value, tuple({type(v) for v in self.values}))

    def invalid(self) -> tuple[object, ...]:
        """A value that is none of them."""
        return ("not-an-option",)

    def describe(self) -> str:
        """``to be one of ...``."""
        return "to be one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False`` (not a truthy number or string)."""

    def check(self, name: str, value: object) -> bool:
        """The value itself."""
        if not isinstance(value, bool):
            got = checks.described(value)
            raise checks.ArgumentTypeError(f"Expected `{name}` to be a bool, but got {got}")
        return value

    def invalid(self) -> tuple[object, ...]:
        """A string and a number."""
        return ("yes", 2)

    def describe(self) -> str:
        """``to be a bool``."""
        return "to be a bool"


@dataclass(frozen=True)
class Nothing(Constraint):
    """``None`` (an alternative in :class:`AnyOf`, e.g. ``Real(0, 1) | NONE``)."""

    def check(self, name: str, value: object) -> None:
        """``None``, or an error."""
        if value is not None:
            raise checks.fail(name, "to be None", value)

    def same_kind(self, value: object) -> bool:
        """Only ``None``."""
        return value is None

    def invalid(self) -> tuple[object, ...]:
        """Anything else."""
        return (0,)

    def describe(self) -> str:
        """``None``."""
        return "None"


NONE = Nothing()


@dataclass(frozen=True)
class AnyOf(Constraint):
    """Any of several constraints (``a | b``); the first that accepts the value normalises it.

    The error of the alternative that best matches the value's kind is raised: for a value of
    the right kind but out of range it is that range's message.
    """

    alternatives: tuple[Constraint, ...]

    def __or__(self, other: Constraint) -> AnyOf:
        return AnyOf((*self.alternatives, other))

    def check(self, name: str, value: object) -> Any:
        """The value as the first accepting alternative normalises it."""
        errors: list[Exception] = []
        for alternative in self.alternatives:
            try:
                return alternative.check(name, value)
            except (TypeError, ValueError) as err:
                if alternative.same_kind(value) and not isinstance(err, checks.ArgumentTypeError):
                    errors.append(err)
        if len(errors) == 1:  # the one alternative of the value's kind: its range's message
            raise errors[0]
        if not errors:  # of no alternative's kind: a type error
            got = checks.described(value)
            raise checks.ArgumentTypeError(f"Expected `{name}` {self.describe()}, but got {got}")
        raise checks.fail(name, self.describe(), value)

    def invalid(self) -> tuple[object, ...]:
        """Values every alternative rejects."""
        rejected = [
            value
            for alternative in self.alternatives
            for value in alternative.invalid()
            if not any(_accepts(other, value) for other in self.alternatives)
        ]
        return tuple(key.value for key in dict.fromkeys(map(_Key, rejected)))

    def describe(self) -> str:
        """The alternatives' descriptions joined by ``or``."""
        return " or ".join(a.describe() for a in self.alternatives)


@dataclass(frozen=True)
class Custom(Constraint):
    """A check written as a function (tensors, sequences), with the values it must reject."""

    function: Callable[[str, object], Any]
    rejects: tuple[object, ...]
    expected: str

    def check(self, name: str, value: object) -> Any:
        """What ``function(name, value)`` returns."""
        return self.function(name, value)

    def invalid(self) -> tuple[object, ...]:
        """The declared rejected values."""
        return self.rejects

    def describe(self) -> str:
        """The declared description."""
        return self.expected


class _Key:
    """Hashable stand-in used to de-duplicate invalid values (NaN, unhashable)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __hash__(self) -> int:
        return hash(repr(self.value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and repr(other.value) == repr(self.value)


def _accepts(constraint: Constraint, value: object) -> bool:
    try:
        constraint.check("value", value)
    except (TypeError, ValueError):
        return False
    return True


def constrained(**constraints: Constraint) -> Callable[[F], F]:
    """Declare the constraints of a function's arguments; check them on every call.

    Keyword arguments (how hyper-parameters are passed) are checked directly; a call that
    passes a constrained argument by position is bound to the signature first. Defaults are
    not checked (they are valid by declaration). :func:`constraints_of` returns the
    declarations (a read-only mapping).
    """

    def decorate(function: F) -> F:
        signature = inspect.signature(function)
        names = list(signature.parameters)
        unknown = set(constraints) - set(names)
        if unknown:
            raise TypeError(f"{function.__name__} has no arguments {sorted(unknown)}")
        first = min(names.index(n) for n in constraints) if constraints else len(names)

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if len(args) > first:  # a constrained argument given by position
                bound = signature.bind(*args, **kwargs)
                for name, value in bound.arguments.items():
                    if name in constraints:
                        bound.arguments[name] = constraints[name].check(name, value)
                return function(*bound.args, **bound.kwargs)
            for name, value in kwargs.items():
                constraint = constraints.get(name)
                if constraint is not None:
                    kwargs[name] = constraint.check(name, value)
            return function(*args, **kwargs)

        _DECLARED[checked] = MappingProxyType(dict(constraints))
        return cast(F, checked)

    return decorate


def constraints_of(function: Callable[..., Any]) -> Mapping[str, Constraint]:
    """The declared constraints of a :func:`constrained` function (empty if it has none)."""
    return _DECLARED.get(function, MappingProxyType({}))


def check_all(constraints: Mapping[str, Constraint], **values: object) -> dict[str, Any]:
    """Check ``values`` against ``constraints``; return them normalised.

    A name without a constraint is returned unchanged.
    """
    return {
        name: constraints[name].check(name, value) if name in constraints else value
        for name, value in values.items()
    }


def validate(function: Callable[..., Any], **values: object) -> dict[str, Any]:
    """Check ``values`` against ``function``'s declared constraints (a module's constructor)."""
    return check_all(constraints_of(function), **values)
