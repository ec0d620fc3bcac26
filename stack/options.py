"""Strict converters from INI strings to typed option values.

PasteDeploy hands factories every option as a string. Each converter here
takes ``(value, option)`` and returns the typed value, or raises
:class:`~stack.errors.ConfigError` naming the option, the value given and
what was expected. A value that already has the right type (a Python caller,
a ``global_conf`` override) passes through unchanged.

A factory converts its whole ``local_conf`` in one call::

    OPTIONS = {"level": partial(as_int, minimum=1, maximum=9), "min_size": as_size}

    def filter_factory(global_conf, **local_conf):
        options = convert_options(local_conf, OPTIONS)
        return lambda app: Gzip(app, **options)

Units: sizes are bytes, with ``B``, ``K``/``KB``/``KiB`` (1024), ``M``/``MB``/
``MiB`` and ``G``/``GB``/``GiB``; durations are seconds, with ``us``, ``ms``,
``s``, ``m``, ``h`` and ``d``; a bare number is bytes or seconds.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

from stack.errors import ConfigError, suggest

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


def _bad(option: str, value: object, expected: str) -> ConfigError:
    return ConfigError(
        f"option {option!r}: got {value!r}, expected {expected}",
        option=option, value=value,
    )


def as_bool(value: Any, option: str = "value") -> bool:
    """``true/yes/on/1`` or ``false/no/off/0`` (any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _bad(option, value, "a boolean (true/false, yes/no, on/off, 1/0)")


def check_bool(value: Any, option: str) -> bool:
    """``value`` itself when it is ``True`` or ``False``; else a ``ValueError`` naming ``option``.

    For the Python side of a middleware: its ``__init__`` takes real bools
    only, so a string such as ``"false"`` (which is truthy) is refused rather
    than read as true. INI strings go through :func:`as_bool` first.
    """
    if isinstance(value, bool):
        return value
    raise ValueError(f"option {option!r}: expected True or False, got {value!r}")


def _check_range(number: Any, option: str, value: Any, minimum: Any, maximum: Any, kind: str) -> Any:
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if minimum is not None and maximum is not None:
            bounds = f"between {minimum} and {maximum}"
        elif minimum is not None:
            bounds = f">= {minimum}"
        else:
            bounds = f"<= {maximum}"
        raise _bad(option, value, f"{kind} {bounds}")
    return number


def as_int(value: Any, option: str = "value", *, minimum: int | None = None,
           maximum: int | None = None) -> int:
    """A whole number, optionally bounded (inclusive)."""
    if isinstance(value, bool):
        raise _bad(option, value, "an integer")
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value).strip().replace("_", ""))
        except ValueError:
            raise _bad(option, value, "an integer") from None
    return _check_range(number, option, value, minimum, maximum, "an integer")


def as_float(value: Any, option: str = "value", *, minimum: float | None = None,
             maximum: float | None = None) -> float:
    """A number, optionally bounded (inclusive)."""
    if isinstance(value, bool):
        raise _bad(option, value, "a number")
    try:
        number = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except ValueError:
        raise _bad(option, value, "a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _bad(option, value, "a finite number")
    return _check_range(number, option, value, minimum, maximum, "a number")


def _number_with_unit(value: Any, units: Mapping[str, float]) -> float | None:
    match = _NUMBER_UNIT.match(str(value))
    if not match or match.group(2).lower() not in units:
        return None
    return float(match.group(1)) * units[match.group(2).lower()]


def as_size(value: Any, option: str = "value", *, minimum: int | None = 0,
            maximum: int | None = None) -> int:
    """A size in bytes: ``512``, ``64KB``, ``1.5MB``, ``2GiB`` (K = 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        amount = _number_with_unit(value, _SIZE_UNITS)
        if amount is None:
            raise _bad(option, value, "a size such as 512, 64KB, 10MB or 1GB")
        number = int(amount)
    return _check_range(number, option, value, minimum, maximum, "a size")


def as_duration(value: Any, option: str = "value", *, minimum: float | None = 0,
                maximum: float | None = None) -> float:
    """A duration in seconds: ``2.5``, ``500ms``, ``30s``, ``2m``, ``1h``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        amount = _number_with_unit(value, _DURATION_UNITS)
        if amount is None:
            raise _bad(option, value, "a duration such as 2.5, 500ms, 30s, 2m or 1h")
        number = amount
    return _check_range(number, option, value, minimum, maximum, "a duration")


def as_list(value: Any, option: str = "value") -> list[str]:
    """Words separated by whitespace and/or commas; empty gives ``[]``."""
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    if not isinstance(value, str):
        raise _bad(option, value, "a list of words separated by spaces or commas")
    return [word for word in re.split(r"[\s,]+", value) if word]


def as_choice(value: Any, option: str = "value", *, choices: Iterable[str] = ()) -> str:
    """One of ``choices`` (compared case-insensitively, returned as listed)."""
    choices = tuple(choices)
    word = str(value).strip()
    for choice in choices:
        if word.lower() == choice.lower():
            return choice
    raise _bad(option, value, "one of " + ", ".join(choices))


def as_str(value: Any, option: str = "value") -> str:
    """Any text, stripped of surrounding whitespace."""
    return str(value).strip()


def convert_options(conf: Mapping[str, Any], table: Mapping[str, Converter]) -> dict[str, Any]:
    """Convert every option in ``conf`` with its converter from ``table``.

    An option missing from ``table`` is a :class:`ConfigError` that names it
    and lists the options that exist (with a "did you mean" when one is close).
    """
    converted = {}
    for option, value in conf.items():
        converter = table.get(option)
        if converter is None:
            raise ConfigError(
                f"unknown option {option!r}; {suggest(option, table)}",
                option=option, value=value,
            )
        converted[option] = converter(value, option)
    return converted


__all__ = [
    "Converter", "as_bool", "check_bool", "as_int", "as_float", "as_size", "as_duration",
    "as_list", "as_choice", "as_str", "convert_options",
]
