"""The exceptions stack raises: one root, narrow subclasses.

Each subclass also inherits the builtin a caller would naturally catch
(``ConfigError`` is a ``ValueError``), so code written without stack in
mind still handles it.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class StackError(Exception):
    """Root of every error stack raises on purpose."""


class ConfigError(StackError, ValueError):
    """A deployment file or an option is wrong.

    ``option``, ``value``, ``section``, ``filename`` and ``line`` say where,
    as far as they are known; the loader fills in the place (file, section,
    line) for errors a factory raised knowing only the option. ``str()`` is
    the whole message, place first.
    """

    def __init__(
        self,
        message: str,
        *,
        option: str | None = None,
        value: object = None,
        section: str | None = None,
        filename: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.option = option
        self.value = value
        self.section = section
        self.filename = filename
        self.line = line

    @property
    def located(self) -> bool:
        """True once the error names the file it came from."""
        return self.filename is not None

    def locate(self, filename: str, section: str | None, line: int | None = None) -> None:
        """Record where in a deployment file the error belongs (first call wins)."""
        if self.located:
            return
        self.filename, self.section, self.line = filename, section, line

    def __str__(self) -> str:
        where = []
        if self.filename:
            where.append(self.filename + (f":{self.line}" if self.line else ""))
        if self.section:
            where.append(f"[{self.section}]")
        message = self.message
        if self.option and self.section:
            where.append(f"option {self.option!r}")
            prefix = f"option {self.option!r}: "
            if message.startswith(prefix):  # said once is enough
                message = message[len(prefix):]
        return (" ".join(where) + ": " if where else "") + message


class OptionError(ConfigError):
    """One option has a bad value, from Python keyword arguments or an INI file.

    ``.option`` names it, so the loader can point at the option's line
    without reading the message. The message starts ``option 'NAME': ``.
    """

    def __init__(self, option: str, message: str, *, value: object = None) -> None:
        super().__init__(f"option {option!r}: {message}", option=option, value=value)


class HeaderError(StackError, ValueError):
    """A header name or value that must not go on the wire (CR/LF, bad token)."""


class ConfigWarning(UserWarning):
    """Something in a deployment file that works, but probably not as meant."""


class StartResponseError(StackError, RuntimeError):
    """An app broke the ``start_response`` protocol (called twice, never, ...)."""


class ListenError(StackError, OSError):
    """A server could not listen where it was told to (port in use, no permission)."""


class WriteLimitError(StackError, RuntimeError):
    """An app wrote more through ``write()`` than a middleware may hold."""




def suggest(name: str, known: Iterable[str]) -> str:
    """A "did you mean" clause plus the list of known names, for error messages.

    >>> suggest("gzpi", ["gzip", "xslt"])
    "did you mean 'gzip'? known: gzip, xslt"
    """
    known = sorted(set(known))
    if not known:
        return "none are defined"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return hint + "known: " + ", ".join(known)


__all__ = ["StackError", "ConfigError", "OptionError", "ConfigWarning", "HeaderError", "StartResponseError", "WriteLimitError", "ListenError", "suggest"]
