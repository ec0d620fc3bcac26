"""Static: serve the files of one directory, safely and with HTTP's caching rules.

Use it for a site's assets (CSS, scripts, images, downloads) beside the
apps, or at the end of a :mod:`~stack.middleware.cascade` to fill in whatever the
apps do not answer. Paths never escape the directory; ``ETag``/
``Last-Modified`` give 304s; ``Range`` gives 206 (one range, or
``multipart/byteranges`` for several) and 416; the server's
``wsgi.file_wrapper`` sends whole files (sendfile where it can).

Python::

    from stack.middleware.static import Static
    assets = Static("/srv/site/static", cache_control="public, max-age=3600")

INI (a relative ``directory`` is taken from the INI file's folder, as is
``%(here)s/static``)::

    [app:assets]
    use = egg:stack#static
    directory = %(here)s/static
    index = index.html
    cache_control = public, max-age=3600
    allow_symlinks_out = false

How a request maps to a file:

- Only ``GET`` and ``HEAD`` (else 405 with ``Allow: GET, HEAD``). ``PATH_INFO``
  is used as the server decoded it and is never decoded again, so ``%2e%2e``
  or ``%2f`` reach us as ``..`` and ``/`` and are judged as such, and a
  literal ``%`` stays a ``%``.
- A NUL byte is a 400. Empty and ``.`` segments are skipped; a ``..``
  segment, a segment holding a backslash (on every platform) or a drive
  (Windows), and hidden names (``.git``, ``.env``; see ``allow_hidden``) are
  404s. The file's real path (symlinks resolved) must lie inside the real
  directory unless ``allow_symlinks_out`` is on. Sockets, FIFOs and devices
  are 404s (a FIFO is never opened for reading).
- A directory with an ``index`` file: without a trailing slash it is a 301 to
  the same URL plus ``/`` (under the request's ``SCRIPT_NAME``, query kept);
  with it, the index is served. No directory listings.

Types come from :mod:`mimetypes`; ``text/*`` gets ``; charset=utf-8``. A
compressed file (``x.tar.gz``) is served as what it is (``application/gzip``),
never with ``Content-Encoding`` (clients would unpack it on the fly).
"""
from __future__ import annotations

import errno
import mimetypes
import os
import re
import secrets
import stat
from functools import partial
from typing import IO, Any, Iterable, Iterator
from urllib.parse import quote

from webob.datetime_utils import parse_date, serialize_date
from webob.etag import ETagMatcher

from stack.errors import ConfigError
from stack.options import as_bool, as_int, as_size, as_str, check_bool, convert_options
from stack.types import Environ, Headers, StartResponse
from stack.wsgi import check_header

BLOCK_SIZE = 64 * 1024
_ALLOW = ("Allow", "GET, HEAD")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)\Z")
_HUGE = 10 ** 18  # stands in for longer digit strings (int() refuses very long ones)
_ARCHIVE_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2",
                  "xz": "application/x-xz", "br": "application/x-brotli",
                  "compress": "application/x-compress"}
_SAFE_PATH = "/!$&'()*+,;=:@~"
_SAFE_QUERY = _SAFE_PATH + "?%"


class _Refuse(Exception):
    """Unwinds a request to a plain error response."""

    def __init__(self, status: str, headers: Headers | None = None) -> None:
        super().__init__(status)
        self.status, self.headers = status, headers or []


# -- pure helpers ---------------------------------------------------------------

def split_path(path_info: str, *, allow_hidden: bool = False) -> list[str] | None:
    """The safe segments of ``PATH_INFO`` (file-system names), or None to refuse.

    >>> split_path("/css//./site.css")
    ['css', 'site.css']
    >>> split_path("/a/../etc/passwd"), split_path("/a\\\\b"), split_path("/.git/config")
    (None, None, None)
    """
    try:
        text = os.fsdecode(path_info.encode("latin-1"))
    except (UnicodeError, ValueError):
        return None
    segments = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if (segment == ".." or "\\" in segment or "\x00" in segment
                or (os.altsep and os.altsep in segment) or os.path.splitdrive(segment)[0]
                or (os.name == "nt" and ":" in segment)
                or (segment.startswith(".") and not allow_hidden)):
            return None
        segments.append(segment)
    return segments


def parse_range(header: str, size: int, max_ranges: int = 16) -> list[tuple[int, int]] | None:
    """``Range`` against a ``size``-byte file: inclusive ``(first, last)`` pairs.

    Overlapping and adjacent ranges are merged (RFC 9110 allows it, and it
    defuses many-overlapping-ranges attacks). ``[]`` means nothing is
    satisfiable (416); None means ignore the header and send everything
    (another unit, bad syntax, more than ``max_ranges`` ranges).

    Written by hand: WebOb's ``Range.parse`` reads only the first range of a
    list and silently drops the rest.

    >>> parse_range("bytes=0-99, 50-199, -100", 1000)
    [(0, 199), (900, 999)]
    >>> parse_range("bytes=2000-", 1000), parse_range("bytes=5-1", 1000)
    ([], None)
    """
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part.strip(" \t") for part in specs.split(",")]
    parts = [part for part in parts if part]
    if not parts or len(parts) > max_ranges:
        return None
    ranges = []
    for part in parts:
        match = _RANGE_SPEC.match(part)
        if match is None or match.group() == "-":
            return None
        first, last = (_number(text) for text in match.groups())
        if first is None:  # suffix: the last `last` bytes
            if last:
                ranges.append((max(0, size - last), size - 1))
            continue
        if last is not None and last < first:
            return None
        if first < size:
            ranges.append((first, size - 1 if last is None else min(last, size - 1)))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def _number(text: str) -> int | None:
    if not text:
        return None
    return _HUGE if len(text) > 18 else int(text)


def content_type(name: str) -> str:
    """The ``Content-Type`` for file ``name``: ``text/*`` gets ``charset=utf-8``.

    >>> content_type("a.css"), content_type("a.tar.gz"), content_type("README")
    ('text/css; charset=utf-8', 'application/gzip', 'application/octet-stream')
    """
    # The leading "/" keeps a name like "data:text/html,x" from being read as a URL.
    guessed, encoding = mimetypes.guess_type("/" + name, strict=False)
    if encoding:
        return _ARCHIVE_TYPES.get(encoding, "application/octet-stream")
    if guessed is None:
        return "application/octet-stream"
    return guessed + "; charset=utf-8" if guessed.startswith("text/") else guessed


def _date(value: str | None) -> float | None:
    """An HTTP-date as a timestamp; None if absent or unreadable (never raises)."""
    if not value:
        return None
    try:
        parsed = parse_date(value)
        return None if parsed is None else parsed.timestamp()
    except (ValueError, OverflowError, OSError):  # e.g. year 99999
        return None


# -- the response bodies ----------------------------------------------------------

class FileIter:
    """Stream pieces of an open file in blocks; close the file exactly once.

    ``pieces`` are ``(head, start, length)``: ``head`` bytes are sent, then
    ``length`` bytes of the file from ``start``. The file is closed when the
    last piece is sent, or by :meth:`close`, whichever comes first. A file
    that shrinks while being sent raises ``OSError`` (the response would be
    short of its ``Content-Length``).
    """

    __slots__ = ("_file", "_pieces", "_left", "_block_size")

    def __init__(self, file: IO[bytes], pieces: Iterable[tuple[bytes, int, int]],
                 block_size: int = BLOCK_SIZE) -> None:
        self._file: IO[bytes] | None = file
        self._pieces = iter(pieces)
        self._left = 0
        self._block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while self._file is not None:
            if self._left > 0:
                data = self._file.read(min(self._block_size, self._left))
                if not data:
                    name = getattr(self._file, "name", "?")
                    self.close()
                    raise OSError(f"file {name!r} shrank while it was being sent")
                self._left -= len(data)
                return data
            piece = next(self._pieces, None)
            if piece is None:
                self.close()
                break
            head, start, self._left = piece
            if self._left:
                self._file.seek(start)
            if head:
                return head
        raise StopIteration

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


# -- the app -------------------------------------------------------------------------

class Static:
    """A WSGI app serving the files under ``directory`` (GET and HEAD).

    - ``directory``: the root; must exist. Symlinks in its own path are
      resolved once, here.
    - ``index`` (INI ``index = index.html``; empty for none): the file served
      for a directory URL ending in ``/``. None: directories are 404s.
    - ``cache_control`` (INI ``cache_control = public, max-age=600``): sent
      with every file response and 304.
    - ``allow_symlinks_out`` (INI ``allow_symlinks_out = true``): serve
      symlinks that point outside ``directory``. Off by default: a symlink
      planted in the tree must not publish ``/etc``.
    - ``allow_hidden`` (INI ``allow_hidden = true``): serve names starting
      with ``.`` (``.well-known``). Off by default: ``.git``, ``.env`` and
      ``.htpasswd`` are 404s.
    - ``max_ranges`` (INI ``max_ranges = 16``): a ``Range`` with more ranges
      is ignored (a 200 with the whole file).
    - ``block_size`` (INI ``block_size = 64KB``): bytes read per chunk.

    The root should not be writable by anyone untrusted: a symlink swapped in
    between the check and the open could still be followed.
    """

    def __init__(self, directory: str | os.PathLike[str], *, index: str | None = "index.html",
                 cache_control: str | None = None, allow_symlinks_out: bool = False,
                 allow_hidden: bool = False, max_ranges: int = 16,
                 block_size: int = BLOCK_SIZE) -> None:
        try:
            root = os.path.realpath(os.fspath(directory))
        except (TypeError, ValueError):  # not a path; a NUL byte
            raise ValueError(f"option 'directory': expected a path, got {directory!r}") from None
        if not os.path.isdir(root):
            raise ValueError(f"option 'directory': {os.fspath(directory)!r} is not an existing "
                             "directory")
        if index is not None and (not isinstance(index, str) or not index
                                  or split_path("/" + index, allow_hidden=True) != [index]):
            raise ValueError(f"option 'index': expected a plain file name or None, got {index!r}")
        if cache_control is not None:
            if not isinstance(cache_control, str) or not cache_control.strip():
                raise ValueError(f"option 'cache_control': expected a non-empty str or None, "
                                 f"got {cache_control!r}")
            try:
                check_header("Cache-Control", cache_control)
            except ValueError as exc:
                raise ValueError(f"option 'cache_control': {exc}") from None
        check_bool(allow_symlinks_out, "allow_symlinks_out")
        check_bool(allow_hidden, "allow_hidden")
        for name, value in (("max_ranges", max_ranges), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"option {name!r}: expected an int >= 1, got {value!r}")
        self.directory = root
        self.index = index
        self.cache_control = cache_control
        self.allow_symlinks_out = allow_symlinks_out
        self.allow_hidden = allow_hidden
        self.max_ranges = max_ranges
        self.block_size = block_size
        self._extra: Headers = [("Cache-Control", cache_control)] if cache_control else []

    def __repr__(self) -> str:
        return f"Static({self.directory!r})"

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method not in ("GET", "HEAD"):
                raise _Refuse("405 Method Not Allowed", [_ALLOW])
            return self._serve(environ, start_response, method)
        except _Refuse as refusal:
            return _plain(start_response, method, refusal.status, refusal.headers)

    def _serve(self, environ: Environ, start_response: StartResponse, method: str) -> Iterable[bytes]:
        path_info = environ.get("PATH_INFO", "")
        if "\x00" in path_info:
            raise _Refuse("400 Bad Request")
        segments = split_path(path_info, allow_hidden=self.allow_hidden)
        if segments is None:
            raise _Refuse("404 Not Found")
        path = self._resolve(os.path.join(self.directory, *segments))
        file, info = _open(path)
        if file is None:  # a directory
            if self.index is None:
                raise _Refuse("404 Not Found")
            if not path_info.endswith("/"):
                if not os.path.isfile(os.path.join(path, self.index)):
                    raise _Refuse("404 Not Found")
                raise _Refuse("301 Moved Permanently", [("Location", _slash_url(environ, segments))])
            name = self.index
            file, info = _open(self._resolve(os.path.join(path, self.index)))
            if file is None:
                raise _Refuse("404 Not Found")
        elif path_info.endswith("/"):
            file.close()
            raise _Refuse("404 Not Found")
        else:
            name = segments[-1]
        try:
            return self._respond(environ, start_response, method, file, info, content_type(name))
        except BaseException:
            file.close()
            raise

    def _resolve(self, path: str) -> str:
        """``path`` with symlinks resolved; a 404 if that leaves the root (unless allowed)."""
        if self.allow_symlinks_out:
            return path
        real = os.path.realpath(path)
        if real != self.directory and not real.startswith(os.path.join(self.directory, "")):
            raise _Refuse("404 Not Found")
        return real

    def _respond(self, environ: Environ, start_response: StartResponse, method: str,
                 file: IO[bytes], info: os.stat_result, ctype: str) -> Iterable[bytes]:
        size = info.st_size
        etag = f'"{info.st_mtime_ns:x}-{size:x}"'
        mtime = int(info.st_mtime)
        validators = [("ETag", etag), ("Last-Modified", serialize_date(mtime)), *self._extra]
        status = _precondition(environ, etag[1:-1], mtime)
        if status is not None:
            if status.startswith("304"):
                file.close()
                start_response(status, validators)
                return []
            raise _Refuse(status)  # the caller closes the file
        ranges = None
        if method == "GET" and size and "HTTP_RANGE" in environ and _if_range(environ, etag, mtime):
            ranges = parse_range(environ["HTTP_RANGE"], size, self.max_ranges)
        headers = [("Content-Type", ctype), ("Accept-Ranges", "bytes"), *validators,
                   ("X-Content-Type-Options", "nosniff")]
        if ranges == []:
            raise _Refuse("416 Range Not Satisfiable", [("Content-Range", f"bytes */{size}")])
        if ranges is None:
            start_response("200 OK", [*headers, ("Content-Length", str(size))])
            if method == "HEAD":
                file.close()
                return []
            wrapper = environ.get("wsgi.file_wrapper")
            if wrapper is not None:
                return wrapper(file, self.block_size)
            return FileIter(file, [(b"", 0, size)], self.block_size)
        if len(ranges) == 1:
            (first, last), = ranges
            pieces = [(b"", first, last - first + 1)]
            headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        else:
            pieces, ctype = _multipart(ranges, size, ctype)
            headers[0] = ("Content-Type", ctype)
        length = sum(len(head) + count for head, _start, count in pieces)
        start_response("206 Partial Content", [*headers, ("Content-Length", str(length))])
        return FileIter(file, pieces, self.block_size)


def _open(path: str) -> tuple[IO[bytes] | None, os.stat_result]:
    """``(file, stat)`` for a regular file, ``(None, stat)`` for a directory.

    Opening non-blocking first means a FIFO planted in the tree cannot hang
    the worker; anything but a file or a directory is a 404.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.EACCES) and os.path.isdir(path):  # Windows
            return None, os.stat(path)
        raise _Refuse("403 Forbidden" if exc.errno == errno.EACCES else "404 Not Found") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            os.close(fd)
            return None, info
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise _Refuse("404 Not Found")
        return open(fd, "rb"), info
    except _Refuse:
        raise
    except BaseException:
        os.close(fd)
        raise


def _precondition(environ: Environ, etag: str, mtime: int) -> str | None:
    """The status RFC 9110's preconditions give (412, 304), or None to go on."""
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match is not None:
        if etag not in ETagMatcher.parse(if_match, strong=True):
            return "412 Precondition Failed"
    else:
        since = _date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if since is not None and mtime > since:
            return "412 Precondition Failed"
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        # Weak comparison: W/"x" matches "x" here.
        if etag in ETagMatcher.parse(if_none_match, strong=False):
            return "304 Not Modified"
        return None
    since = _date(environ.get("HTTP_IF_MODIFIED_SINCE"))
    if since is not None and mtime <= since:
        return "304 Not Modified"
    return None


def _if_range(environ: Environ, etag: str, mtime: int) -> bool:
    """Whether ``If-Range`` (if any) lets the ``Range`` apply.

    By hand: it needs a strong, exact ETag or an exact date (RFC 9110
    13.1.5); WebOb's ``IfRangeDate`` accepts any date at or after the
    modification time.
    """
    value = environ.get("HTTP_IF_RANGE")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    return _date(value) == mtime


def _multipart(ranges: list[tuple[int, int]], size: int,
               ctype: str) -> tuple[list[tuple[bytes, int, int]], str]:
    """Pieces for a ``multipart/byteranges`` body, and its ``Content-Type``."""
    boundary = secrets.token_hex(16)
    pieces = []
    for index, (first, last) in enumerate(ranges):
        lead = "\r\n" if index else ""
        head = (f"{lead}--{boundary}\r\n"
                f"Content-Type: {ctype}\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n")
        pieces.append((head.encode("latin-1"), first, last - first + 1))
    pieces.append((f"\r\n--{boundary}--\r\n".encode("latin-1"), 0, 0))
    return pieces, f"multipart/byteranges; boundary={boundary}"


def _slash_url(environ: Environ, segments: list[str]) -> str:
    """The directory's URL with a trailing slash, under ``SCRIPT_NAME``, query kept."""
    try:
        script = environ.get("SCRIPT_NAME", "").encode("latin-1")
    except UnicodeEncodeError:
        script = b""
    path = script.rstrip(b"/") + b"".join(b"/" + os.fsencode(segment) for segment in segments)
    # One leading slash: a "//host/" Location would send the client off the site.
    path = b"/" + path.lstrip(b"/")
    url = quote(path if path.endswith(b"/") else path + b"/", safe=_SAFE_PATH)
    query = environ.get("QUERY_STRING", "")
    if query:
        url += "?" + quote(query.encode("latin-1", "replace"), safe=_SAFE_QUERY)
    return url


def _plain(start_response: StartResponse, method: str, status: str,
           headers: Headers) -> list[bytes]:
    body = f"{status}\n".encode("latin-1")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))), *headers])
    return [] if method == "HEAD" else [body]


# -- PasteDeploy -----------------------------------------------------------------------

def _optional(value: Any, option: str) -> str | None:
    text = as_str(value, option)
    return None if text.lower() in ("", "none") else text


OPTIONS = {
    "directory": as_str,
    "index": _optional,
    "cache_control": _optional,
    "allow_symlinks_out": as_bool,
    "allow_hidden": as_bool,
    "max_ranges": partial(as_int, minimum=1),
    "block_size": partial(as_size, minimum=1),
}


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Static:
    """``[app:NAME] use = egg:stack#static``; ``directory`` is required.

    A relative ``directory`` is taken from the folder of the INI file
    (PasteDeploy's ``here``).
    """
    options = convert_options(local_conf, OPTIONS)
    directory = options.pop("directory", None)
    if not directory:
        raise ConfigError("option 'directory' is required: the folder to serve",
                          option="directory")
    here = global_conf.get("here")
    if here and not os.path.isabs(directory):
        directory = os.path.join(here, directory)
    return Static(directory, **options)


__all__ = ["Static", "FileIter", "split_path", "parse_range", "content_type", "app_factory"]
