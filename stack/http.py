"""HTTP helpers that several parts of stack need, written once.

- :data:`HOP_BY_HOP`: the connection-level fields (RFC 9110 7.6.1, PEP 3333)
  that an app must not send and a proxy must not forward.
- :func:`remove_dot_segments`: ``.``/``..`` resolved, ``//`` collapsed, never
  above the root (mounts and the proxy use it so a path cannot climb out).
- :func:`qlist`: an ``Accept``-style header as ``{name: q}``, one rule for
  malformed q-values everywhere (the entry is ignored, as RFC 9110 12.4.2
  leaves a recipient free to do).
- :func:`plain_response` / :func:`plain_page`: a short ``text/plain`` answer
  (``404 Not Found\\n\\nwhy\\n``) with the right length and no sniffing.
- :class:`LineReader`: ``readlines()`` and iteration for a ``wsgi.input``
  that implements ``readline()``.
"""
from __future__ import annotations

import re
from http import HTTPStatus
from typing import Iterable, Iterator, Sequence

from stack.types import Headers, StartResponse

#: Connection-level header fields: the server owns them, a proxy drops them.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailers", "transfer-encoding", "upgrade",
})

_QVALUE = re.compile(r"(0(\.\d{0,3})?|1(\.0{0,3})?)\Z")


def reason_phrase(code: int) -> str:
    """The standard reason phrase for ``code`` (``"Unknown"`` when there is none)."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def remove_dot_segments(path: str) -> str:
    """``path`` with ``.`` and ``..`` resolved (never above ``/``) and ``//`` collapsed.

    >>> remove_dot_segments("/public//../admin/./x/")
    '/admin/x/'
    >>> remove_dot_segments("/a/..")
    '/'

    A path that does not start with ``/`` is returned unchanged.
    """
    if not path.startswith("/") or ("/." not in path and "//" not in path):
        return path  # nothing to resolve: the common case
    kept: list[str] = []
    segments = path.split("/")
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    slash = "/" if kept and segments[-1] in ("", ".", "..") else ""
    return "/" + "/".join(kept) + slash


def qvalue(params: str) -> float | None:
    """The ``q`` of one list element's parameters (1.0 when absent, None when malformed)."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.match(value) else None
    return 1.0


def qlist(header: str) -> dict[str, float]:
    """An ``Accept``/``Accept-Encoding`` value as ``{lower-cased name: q}``.

    An element with a malformed ``q`` is ignored; a name given twice keeps
    its highest q.

    >>> qlist("gzip;q=0.5, br, identity;q=x")
    {'gzip': 0.5, 'br': 1.0}
    """
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        q = qvalue(params)
        if name and q is not None:
            weights[name] = max(q, weights.get(name, 0.0))
    return weights


def plain_page(status: str, message: str = "", headers: Sequence[tuple[str, str]] = ()
               ) -> tuple[str, Headers, bytes]:
    """``(status, headers, body)`` of a short text answer: the status line, then ``message``."""
    text = f"{status}\n\n{message}\n" if message else f"{status}\n"
    body = text.encode("utf-8", "replace")
    return status, [("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("X-Content-Type-Options", "nosniff"), *headers], body


def plain_response(start_response: StartResponse, status: str, message: str = "", *,
                   headers: Sequence[tuple[str, str]] = (), head: bool = False) -> list[bytes]:
    """Answer with :func:`plain_page`; ``head=True`` sends the headers only."""
    status, all_headers, body = plain_page(status, message, headers)
    start_response(status, all_headers)
    return [] if head else [body]


class LineReader:
    """``readlines()`` and line iteration for a ``wsgi.input`` that has ``readline()``."""

    def readline(self, size: int | None = -1) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def header_list(value: str | Iterable[str]) -> list[str]:
    """A comma-separated field value as its trimmed, non-empty elements."""
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


__all__ = ["HOP_BY_HOP", "reason_phrase", "remove_dot_segments", "qvalue", "qlist",
           "plain_page", "plain_response", "LineReader", "header_list"]
