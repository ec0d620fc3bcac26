"""Options: one set of checkers for Python values, and the INI converters on top.

Every option of every middleware, server and gateway is checked by one of
the ``check_*`` functions here, in the class's ``__init__``. They take the
value and the option's name and return the value (normalised) or raise
:class:`~stack.errors.OptionError`, which carries ``.option``::

    self.level = check_int(level, "level", 1, 9)
    self.timeout = check_seconds(timeout, "timeout", lo=0.001)

PasteDeploy hands factories strings. The ``as_*`` converters turn an INI
string into the Python type (``"10MB"`` -> 10485760, ``"500ms"`` -> 0.5) and
then call the same checker, so the two spellings accept exactly the same
values. A factory's table names a converter per option, without bounds: the
bounds live once, in ``__init__``, and an INI value reaches them because the
factory calls the class::

    OPTIONS = {"level": as_int, "min_size": as_size}
    filter_factory = filter_factory_for(Gzip, OPTIONS)   # stack.factories

Units: sizes are bytes, with ``B``, ``K``/``KB``/``KiB`` (1024), ``M``/``MB``/
``MiB`` and ``G``/``GB``/``GiB``; durations are seconds, with ``us``, ``ms``,
``s``, ``m``, ``h`` and ``d``; a bare number is bytes or seconds.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Callable, Iterable, Mapping

from stack.errors import ConfigError, OptionError, suggest

Converter = Callable[[Any, str], Any]

_TRUE = frozenset({"true", "yes", "on", "1", "y", "t", "enable", "enabled"})
_FALSE = frozenset({"false", "no", "off", "0", "n", "f", "disable", "disabled", ""})

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}
_DURATION_UNITS = {
    "": 1.0, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0,
    "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
}
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*\Z")


def _bad(option: str, value: object, expected: str) -> OptionError:
    error = OptionError(option, f"got {value!r}, expected {expected}", value=value)
    error.expected = expected  # type: ignore[attr-defined]
    return error


def _as_written(check: Callable[..., Any], value: Any, written: Any, option: str,
                *args: Any) -> Any:
    """``check(value, option, *args)``, its error quoting the INI text as written."""
    try:
        return check(value, option, *args)
    except OptionError as exc:
        expected = getattr(exc, "expected", None)
        if expected is None or written is value:
            raise
        raise _bad(option, written, expected) from None


def _bounds(minimum: Any, maximum: Any) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    return f">= {minimum}" if minimum is not None else f"<= {maximum}"


def _in_range(number: Any, option: str, value: Any, lo: Any, hi: Any, kind: str) -> Any:
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise _bad(option, value, f"{kind} {_bounds(lo, hi)}")
    return number


# -- checkers: Python values ---------------------------------------------------------

def check_bool(value: Any, name: str) -> bool:
    """``value`` itself when it is ``True`` or ``False``.

    A string such as ``"false"`` (truthy) is refused rather than read as true;
    INI strings go through :func:`as_bool` first.
    """
    if isinstance(value, bool):
        return value
    raise OptionError(name, f"expected True or False, got {value!r}", value=value)


def check_int(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (not a bool), ``lo <= value <= hi`` where given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, "an integer")
    return _in_range(value, name, value, lo, hi, "an integer")


def check_number(value: Any, name: str, lo: float | None = None,
                 hi: float | None = None) -> float:
    """A finite int or float (not a bool), bounded where given; returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, "a number")
    if not math.isfinite(value):
        raise _bad(name, value, "a finite number")
    return float(_in_range(value, name, value, lo, hi, "a number"))


def check_seconds(value: Any, name: str, lo: float | None = 0,
                  hi: float | None = None) -> float:
    """A duration in seconds (int or float), ``>= 0`` unless ``lo`` says otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(name, value, "a duration in seconds")
    return float(_in_range(value, name, value, lo, hi, "a duration"))


def check_size(value: Any, name: str, lo: int | None = 0, hi: int | None = None) -> int:
    """A size in bytes (an int), ``>= 0`` unless ``lo`` says otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, "a size in bytes")
    return _in_range(value, name, value, lo, hi, "a size")


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """One of ``choices`` (compared case-insensitively, returned as listed)."""
    choices = tuple(choices)
    if isinstance(value, str):
        word = value.strip().lower()
        for choice in choices:
            if word == choice.lower():
                return choice
    raise _bad(name, value, "one of " + ", ".join(choices))


def check_str(value: Any, name: str, *, empty: bool = True) -> str:
    """A string (not bytes); ``empty=False`` refuses ``""``."""
    if not isinstance(value, str):
        raise _bad(name, value, "a string")
    if not empty and not value:
        raise _bad(name, value, "a non-empty string")
    return value


def check_strings(value: Any, name: str, *, empty: bool = True) -> tuple[str, ...]:
    """A list or tuple (any iterable but a bare string) of strings, as a tuple.

    A bare string is refused: iterating ``"gzip"`` would give four letters.
    ``empty=False`` refuses an empty list.
    """
    if isinstance(value, (str, bytes)):
        raise _bad(name, value, "a list of strings (not one string)")
    try:
        items = tuple(value)
    except TypeError:
        raise _bad(name, value, "a list of strings") from None
    for item in items:
        if not isinstance(item, str):
            raise _bad(name, value, f"a list of strings ({item!r} is not one)")
    if not empty and not items:
        raise _bad(name, value, "a non-empty list of strings")
    return items


def check_path(value: Any, name: str, *, kind: str | None = None,
               must_exist: bool = True) -> str:
    """A filesystem path, made absolute; ``kind`` ``"dir"`` or ``"file"`` checks what it is."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise _bad(name, value, "a path")
    path = os.path.abspath(os.path.expanduser(value))
    if must_exist or kind:
        if not os.path.exists(path):
            raise OptionError(name, f"{value!r} does not exist", value=value)
        if kind == "dir" and not os.path.isdir(path):
            raise OptionError(name, f"{value!r} is not a directory", value=value)
        if kind == "file" and not os.path.isfile(path):
            raise OptionError(name, f"{value!r} is not a file", value=value)
    return path


def check_callable(value: Any, name: str) -> Any:
    """Something callable (an app, a hook)."""
    if not callable(value):
        raise _bad(name, value, "a callable")
    return value


# -- converters: INI strings -> the checkers -------------------------------------------

def as_bool(value: Any, option: str = "value") -> bool:
    """``true/yes/on/1`` or ``false/no/off/0`` (any case); anything else is an error."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _bad(option, value, "a boolean (true/false, yes/no, on/off, 1/0)")
    if isinstance(value, bool):
        return value
    raise _bad(option, value, "a boolean (true/false, yes/no, on/off, 1/0)")


def as_int(value: Any, option: str = "value", *, minimum: int | None = None,
           maximum: int | None = None) -> int:
    """A whole number (``1_000`` allowed), then :func:`check_int`."""
    if isinstance(value, str):
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            raise _bad(option, value, "an integer") from None
    else:
        number = value
    return _as_written(check_int, number, value, option, minimum, maximum)


def as_float(value: Any, option: str = "value", *, minimum: float | None = None,
             maximum: float | None = None) -> float:
    """A number, then :func:`check_number`."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _bad(option, value, "a number") from None
    else:
        number = value
    return _as_written(check_number, number, value, option, minimum, maximum)


def _number_with_unit(value: str, units: Mapping[str, float]) -> float | None:
    match = _NUMBER_UNIT.match(value)
    if not match or match.group(2).lower() not in units:
        return None
    return float(match.group(1)) * units[match.group(2).lower()]


def as_size(value: Any, option: str = "value", *, minimum: int | None = 0,
            maximum: int | None = None) -> int:
    """A size in bytes: ``512``, ``64KB``, ``1.5MB``, ``2GiB`` (K = 1024), then :func:`check_size`."""
    if isinstance(value, str):
        amount = _number_with_unit(value, _SIZE_UNITS)
        if amount is None:
            raise _bad(option, value, "a size such as 512, 64KB, 10MB or 1GB")
        return _as_written(check_size, int(amount), value, option, minimum, maximum)
    return check_size(value, option, minimum, maximum)


def as_duration(value: Any, option: str = "value", *, minimum: float | None = 0,
                maximum: float | None = None) -> float:
    """A duration: ``2.5``, ``500ms``, ``30s``, ``2m``, ``1h``, then :func:`check_seconds`."""
    if isinstance(value, str):
        amount = _number_with_unit(value, _DURATION_UNITS)
        if amount is None:
            raise _bad(option, value, "a duration such as 2.5, 500ms, 30s, 2m or 1h")
        return _as_written(check_seconds, amount, value, option, minimum, maximum)
    return check_seconds(value, option, minimum, maximum)


def as_list(value: Any, option: str = "value") -> list[str]:
    """Words separated by whitespace and/or commas; empty gives ``[]``."""
    if isinstance(value, str):
        return [word for word in re.split(r"[\s,]+", value) if word]
    return list(check_strings(value, option))


def as_lines(value: Any, option: str = "value") -> list[str]:
    """One item per non-empty line (for values that hold spaces, such as routes)."""
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return list(check_strings(value, option))


def as_choice(value: Any, option: str = "value", *, choices: Iterable[str] = ()) -> str:
    """One of ``choices`` (compared case-insensitively, returned as listed)."""
    return check_choice(value, option, choices)


def as_str(value: Any, option: str = "value") -> str:
    """Any text, stripped of surrounding whitespace."""
    return check_str(value.strip() if isinstance(value, str) else value, option)


def convert_options(conf: Mapping[str, Any], table: Mapping[str, Converter]) -> dict[str, Any]:
    """Convert every option in ``conf`` with its converter from ``table``.

    An option missing from ``table`` is a :class:`~stack.errors.ConfigError`
    that names it and lists the options that exist (with a "did you mean"
    when one is close).
    """
    converted = {}
    for option, value in conf.items():
        converter = table.get(option)
        if converter is None:
            raise ConfigError(f"unknown option {option!r}; {suggest(option, table)}",
                              option=option, value=value)
        converted[option] = converter(value, option)
    return converted


__all__ = [
    "Converter", "ConfigError", "OptionError",
    "check_bool", "check_int", "check_number", "check_seconds", "check_size", "check_choice",
    "check_str", "check_strings", "check_path", "check_callable",
    "as_bool", "as_int", "as_float", "as_size", "as_duration", "as_list", "as_lines",
    "as_choice", "as_str", "convert_options",
]
