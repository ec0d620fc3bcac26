"""Cascade: try several apps in turn; the first answer that is not a 404 wins.

Use it to layer apps over one URL space: static files first, then the
application, then a legacy app for whatever is left. Each app is called in
order; a response whose status is in ``catch`` (default 404 and 405) is
closed unread and the next app is tried. The last app's answer is returned
whatever its status.

Python::

    from stack.middleware.cascade import Cascade
    site = Cascade([Static("/srv/static"), app, legacy], catch=(404, 405))

INI::

    [composite:main]
    use = egg:stack#cascade
    apps = static app legacy
    catch = 404 405
    spool_size = 256KB

A request body can be read by every app tried. It is read from the server
once, only as far as the apps read it, and only when there is one (a
``Content-Length`` above 0, or a chunked body the server terminates): what an
app reads is recorded in a spool -- memory up to ``spool_size`` bytes, a
temporary file beyond -- and the next app reads the recording first, then the
rest from the server. The app that wins (and the last app) read on without
recording. Every app but the last gets a shallow copy of the environ, so what
a skipped app leaves there (parsed forms, moved ``SCRIPT_NAME``) does not
reach the next one.
"""
from __future__ import annotations

import tempfile
from typing import IO, Any, Iterable, Iterator, Sequence

from stack.errors import ConfigError
from stack.options import as_int, as_list, as_size, convert_options
from stack.types import Environ, StartResponse, WSGIApp
from stack.wsgi import ClosingIterator, call_app

SPOOL_SIZE = 256 * 1024
_BLOCK = 64 * 1024


class Cascade:
    """Try ``apps`` in order; return the first response whose status is not in ``catch``.

    - ``apps`` (INI ``apps = a b c``, names of app sections): at least one.
    - ``catch`` (INI ``catch = 404 405``): the status codes that mean "try the
      next app".
    - ``spool_size`` (INI ``spool_size = 256KB``): request-body bytes kept in
      memory for replay; beyond that the recording goes to a temporary file.
    """

    def __init__(self, apps: Sequence[WSGIApp], *, catch: Iterable[int] = (404, 405),
                 spool_size: int = SPOOL_SIZE) -> None:
        if isinstance(apps, (str, bytes)) or not isinstance(apps, Iterable):
            raise ValueError(f"option 'apps': expected a sequence of WSGI apps, got {apps!r}")
        self.apps = list(apps)
        if not self.apps:
            raise ValueError("option 'apps': name at least one WSGI app")
        for app in self.apps:
            if not callable(app):
                raise ValueError(f"option 'apps': each app must be a WSGI app (a callable), "
                                 f"got {app!r}")
        if isinstance(catch, (str, bytes)) or not isinstance(catch, Iterable):
            raise ValueError(f"option 'catch': expected a collection of status codes, got {catch!r}")
        codes = list(catch)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(f"option 'catch': status codes must be ints from 100 to 599, "
                                 f"got {code!r}")
        if isinstance(spool_size, bool) or not isinstance(spool_size, int) or spool_size < 0:
            raise ValueError(f"option 'spool_size': expected an int >= 0 (bytes), "
                             f"got {spool_size!r}")
        self.catch = tuple(sorted(set(codes)))
        self.spool_size = spool_size
        self._catch = frozenset(codes)

    def children(self) -> Iterator[tuple[str, WSGIApp]]:
        """``("#1", app), ("#2", app), ...`` in the order they are tried."""
        for number, app in enumerate(self.apps, 1):
            yield f"#{number}", app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        *tried, last = self.apps
        spool = _Spool.for_request(environ, self.spool_size) if tried else None
        try:
            for app in tried:
                env = dict(environ)
                if spool is not None:
                    env["wsgi.input"] = _Replay(spool)
                response = call_app(app, env)
                if response.status_code() in self._catch:
                    response.close()
                    continue
                if spool is not None:
                    spool.recording = False
                try:
                    response.start(start_response)
                except BaseException:  # the server refused the headers: close the app's body
                    response.close()
                    raise
                if spool is None:
                    return ClosingIterator(response)
                return ClosingIterator(response, spool.close)
            if spool is None:
                return last(environ, start_response)
            spool.recording = False
            environ["wsgi.input"] = _Replay(spool)
            return ClosingIterator(last(environ, start_response), spool.close)
        except BaseException:
            if spool is not None:
                spool.close()
            raise


class _Spool:
    """The request body, read from the server once and recorded for replay."""

    def __init__(self, source: Any, length: int | None, spool_size: int) -> None:
        self._source = source
        self._left = length  # bytes the server still owes; None: read to EOF
        self._spool_size = spool_size
        self._file: IO[bytes] | None = None
        self.size = 0  # bytes recorded
        self.recording = True

    @classmethod
    def for_request(cls, environ: Environ, spool_size: int) -> _Spool | None:
        """A spool if the request has a body, else None."""
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                number = int(length)
            except ValueError:
                return None
            return cls(environ["wsgi.input"], number, spool_size) if number > 0 else None
        if (environ.get("wsgi.input_terminated")
                and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
            return cls(environ["wsgi.input"], None, spool_size)
        return None

    def fetch(self, size: int, line: bool = False) -> bytes:
        """Up to ``size`` bytes (a line if ``line``) from the server; -1 for all."""
        if self._left is not None:
            if self._left <= 0:
                return b""
            size = self._left if size < 0 else min(size, self._left)
        if line:
            data = self._source.readline(size) if size >= 0 else self._source.readline()
        elif size >= 0:
            data = self._source.read(size)
        else:  # to EOF, in blocks: wsgi.input's read() need not work without a size
            data = b"".join(iter(lambda: self._source.read(_BLOCK), b""))
        if self._left is not None:
            self._left = self._left - len(data) if data else 0
        if self.recording and data:
            if self._file is None:
                self._file = (tempfile.SpooledTemporaryFile(max_size=self._spool_size)
                              if self._spool_size else tempfile.TemporaryFile())
            self._file.seek(0, 2)
            self._file.write(data)
            self.size += len(data)
        return data

    def replay(self, position: int, size: int, line: bool = False) -> bytes:
        """Recorded bytes from ``position``: at most ``size`` (up to a newline if ``line``)."""
        if self._file is None:  # closed: the cascade is done with this request
            return b""
        self._file.seek(position)
        return self._file.readline(size) if line else self._file.read(size)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


class _Replay:
    """``wsgi.input`` for one app: the recording first, then the server's rest."""

    def __init__(self, spool: _Spool) -> None:
        self._spool = spool
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        return self._get(-1 if size is None else size, line=False)

    def readline(self, size: int | None = -1) -> bytes:
        return self._get(-1 if size is None else size, line=True)

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

    def _get(self, size: int, line: bool) -> bytes:
        spool = self._spool
        recorded = b""
        if self._position < spool.size:
            available = spool.size - self._position
            recorded = spool.replay(self._position, available if size < 0 else min(size, available),
                                    line)
            self._position += len(recorded)
            if size >= 0:
                size -= len(recorded)
            if size == 0 or (line and recorded.endswith(b"\n")) or self._position < spool.size:
                return recorded
        fresh = spool.fetch(size, line)
        self._position += len(fresh)
        return recorded + fresh


# -- PasteDeploy -------------------------------------------------------------------

def _codes(value: Any, option: str) -> list[int]:
    return [as_int(word, option, minimum=100, maximum=599) for word in as_list(value, option)]


OPTIONS = {"apps": as_list, "catch": _codes, "spool_size": as_size}


def composite_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> Cascade:
    """``[composite:NAME] use = egg:stack#cascade``: ``apps``, ``catch``, ``spool_size``."""
    options = convert_options(local_conf, OPTIONS)
    names = options.pop("apps", [])
    if not names:
        raise ConfigError("option 'apps' is required: the app sections to try, in order",
                          option="apps")
    apps = [loader.get_app(name, global_conf=global_conf) for name in names]
    return Cascade(apps, **options)


__all__ = ["Cascade", "SPOOL_SIZE", "composite_factory"]
