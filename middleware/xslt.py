"""XSLT: turn an app's XML responses into HTML (or XML, or text) with a stylesheet.

Use it when an app emits content as XML (a feed, a catalogue, a report) and
the presentation should live apart: one theme stylesheet serves several
apps, and the apps stay free of HTML. The whole XML document is buffered (up
to ``max_bytes``), parsed with a hardened parser, transformed with a
compiled, cached stylesheet and sent with a correct ``Content-Type`` and
``Content-Length``; any failure gives a clean error page, never half a page.

Python::

    from stack.middleware.xslt import XSLT
    app = XSLT(catalogue, stylesheet="themes/site.xsl",
               params={"path": "path", "q": "query:q", "site": "'My shop'"})

INI (relative paths are relative to the deployment file)::

    [filter:theme]
    use = egg:stack#xslt
    stylesheet = themes/site.xsl
    params =
        path = path
        q = query:q
        site = 'My shop'

Which responses: ``content_types`` (default XML: ``application/xml``,
``text/xml``, ``*+xml``), a status in ``statuses`` (default 200), not
compressed, and not already transformed by an inner ``XSLT``. A HEAD
response keeps its (empty) body; its headers are rewritten as far as they
are known without a body.

Which stylesheet: the document's own ``<?xml-stylesheet type="text/xsl"
href="..."?>`` when ``honor_pi`` is on, else ``stylesheet``. An ``href`` is
looked up as a path below each of ``allowed_dirs`` (``file:`` URLs must point
inside one), then, with ``subrequest_stylesheets``, fetched from the wrapped
app by an internal GET (same app only: no scheme, no host, below
``SCRIPT_NAME``). Anything else is refused with a log line, then answered
500 (``on_refused = error``) or passed through untransformed.

Security: XML and XSL are parsed without resolving entities, loading DTDs,
network access or huge trees (XXE, billion laughs and external DTDs fail
safely). Stylesheets run under an access control that forbids writing
files, creating directories and any network I/O; ``document()`` and
``xsl:import`` read only files inside ``allowed_dirs`` and the configured
stylesheet's directory.

Validators: ``Last-Modified`` is dropped; when the app sent an ``ETag``, the
output gets a new one derived from its bytes (and ``If-None-Match`` on it is
answered 304).

Caching: each stylesheet is compiled once per version and thread (lxml's
compiled stylesheets and parsers are never shared between threads); a file's
mtime, size and inode are checked at most once per ``check_interval`` (a
subrequest is repeated as often, and recompiled only if its bytes changed).
Replace stylesheet files atomically (write, then rename): a file read half
written fails to compile, and answers 500 until the next check sees it whole.
Changes to files a stylesheet imports are not watched, and ``xsl:output`` is
read from the main stylesheet only.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from functools import partial
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit

from lxml import etree

from stack.errors import ConfigError, StackError, WriteLimitError
from stack.options import (as_bool, as_choice, as_duration, as_int, as_list, as_size, as_str,
                           check_bool, convert_options)
from stack.types import Environ, Headers, StartResponse, WSGIApp
from stack.wsgi import AppResponse, ClosingIterator, add_vary, call_app, remove_header, set_header

XSL_NS = "http://www.w3.org/1999/XSL/Transform"
DEFAULT_CONTENT_TYPES = ("application/xml", "text/xml", "*+xml")
MAX_BYTES = 10 * 1024 * 1024
#: Stylesheets found through ``<?xml-stylesheet?>`` kept compiled (oldest dropped first).
SHEET_CACHE_SIZE = 64
#: XML parser settings for documents and stylesheets (see the security notes above).
PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                      dtd_validation=False, attribute_defaults=False)
ACCESS = etree.XSLTAccessControl(read_file=True, write_file=False, create_dir=False,
                                 read_network=False, write_network=False)
#: environ keys: the per-request "already transformed" mark, and the subrequest flag.
MARK_KEY = "stack.xslt.transformed"
SUBREQUEST_KEY = "stack.xslt.subrequest"

_PI_TYPES = frozenset({"text/xsl", "application/xslt+xml", "text/xml", "application/xml"})
_MEDIA = {"html": "text/html", "xhtml": "text/html", "text": "text/plain", "xml": "application/xml"}
_VALIDATORS = ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Content-MD5",
               "Accept-Ranges")
_PARAM_NAME = re.compile(r"[A-Za-z_][\w.-]*\Z")
_MEDIA_TYPE = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+\Z")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NO_SUBREQUEST = ("CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_RANGE", "HTTP_ACCEPT_ENCODING", MARK_KEY)


class RefusedError(StackError, PermissionError):
    """A stylesheet or a ``document()`` read that the allowed places do not cover."""


class _SheetError(Exception):
    """A stylesheet that cannot be loaded or compiled (the message has libxslt's log)."""


# -- places -------------------------------------------------------------------

def _inside(path: str, roots: Iterable[str]) -> bool:
    """True if ``path`` (symlinks resolved) is one of ``roots`` or below one."""
    if "\x00" in path:
        return False
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _local_path(url: str) -> str | None:
    """The filesystem path a ``file:`` URL or plain path names; None for other URLs."""
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return unquote(parts.path)
    if not parts.scheme and not parts.netloc:
        return url
    return None


class _Guard(etree.Resolver):
    """Lets ``document()``/``xsl:import``/``xsl:include`` read files below ``roots`` only."""

    def __init__(self, roots: Iterable[str]) -> None:
        super().__init__()
        self.roots = tuple(roots)

    def resolve(self, url: str | None, pubid: str | None, context: Any) -> Any:
        path = _local_path(url or "")
        if path is not None and _inside(path, self.roots):
            return self.resolve_filename(path, context)
        raise RefusedError(f"read of {url!r} refused: not inside allowed_dirs")


# -- compiled stylesheets -------------------------------------------------------

class _Version:
    """One compiled version of a stylesheet's source, with what its output is."""

    __slots__ = ("source", "base_url", "content_type", "html_type", "xml_type")

    def __init__(self, source: bytes, base_url: str | None, root: Any) -> None:
        method = media = encoding = None
        for output in root.iterchildren(f"{{{XSL_NS}}}output"):
            method = output.get("method", method)
            media = output.get("media-type", media)
            encoding = output.get("encoding", encoding)
        charset = encoding or "UTF-8"
        if not _MEDIA_TYPE.match(media or "a/b") or not re.fullmatch(r"[\w.:-]+", charset):
            raise _SheetError(f"xsl:output media-type {media!r} or encoding {charset!r} is invalid")
        self.source, self.base_url = source, base_url
        self.html_type = f"{media or 'text/html'}; charset={charset}"
        self.xml_type = f"{media or 'application/xml'}; charset={charset}"
        self.content_type = None  # decided by the result's root element
        if method is not None or media is not None:
            self.content_type = f"{media or _MEDIA.get(method or '', 'application/xml')}; " \
                                f"charset={charset}"

    @classmethod
    def build(cls, source: bytes, base_url: str | None, parser: Any) -> tuple[_Version, Any]:
        """Parse and compile ``source``: the version and a compiled ``XSLT``."""
        root, compiled = _compile(source, base_url, parser)
        return cls(source, base_url, root), compiled

    def output_type(self, result: Any) -> str:
        """The ``Content-Type`` of ``result``: from ``xsl:output``, else html/xml by its root."""
        if self.content_type is not None:
            return self.content_type
        root = result.getroot()
        html = root is not None and isinstance(root.tag, str) and root.tag.lower() == "html"
        return self.html_type if html else self.xml_type


def _compile(source: bytes, base_url: str | None, parser: Any) -> tuple[Any, Any]:
    """Parse and compile a stylesheet; raise :class:`_SheetError` with the error log."""
    try:
        root = etree.fromstring(source, parser, base_url=base_url)
        return root, etree.XSLT(root, access_control=ACCESS)
    except (etree.XMLSyntaxError, etree.XSLTParseError) as exc:
        raise _SheetError(f"{exc}: {_log_text(exc.error_log)}") from None
    except (RefusedError, ValueError, OSError) as exc:  # OSError: a missing xsl:import
        raise _SheetError(str(exc)) from None


Fetch = Callable[[Any, Environ], "tuple[Any, bytes | None]"]


class _Sheet:
    """One stylesheet source (a file, or a path of the app) and its current version.

    ``fetch(stamp, environ)`` returns ``(new_stamp, source)``, with ``source``
    None when the stamp says nothing changed. It runs at most once per
    ``check_interval``, under the lock, so one thread reloads while the others
    keep the version they have.
    """

    def __init__(self, key: str, fetch: Fetch, base_url: str | None) -> None:
        self.key, self.fetch, self.base_url = key, fetch, base_url
        self.version: _Version | None = None
        self.error: str | None = None
        self.stamp: Any = None
        self.checked = float("-inf")
        self.lock = threading.Lock()


class _Store:
    """Stylesheets by key, and each thread's parser and compiled copies.

    lxml's ``XSLT`` objects and parsers are not shared between threads here:
    each thread compiles its own copy of a version from its source, once.
    """

    def __init__(self, roots: Iterable[str], interval: float) -> None:
        self.guard, self.interval = _Guard(roots), interval
        self.sheets: dict[str, _Sheet] = {}
        self.lock = threading.Lock()
        self.local = threading.local()

    def parser(self) -> Any:
        """This thread's hardened parser."""
        parser = getattr(self.local, "parser", None)
        if parser is None:
            parser = self.local.parser = etree.XMLParser(**PARSER_OPTIONS)
            parser.resolvers.add(self.guard)
            self.local.compiled = {}
        return parser

    def sheet(self, key: str, make: Callable[[], _Sheet]) -> _Sheet:
        sheet = self.sheets.get(key)
        if sheet is None:
            with self.lock:
                sheet = self.sheets.get(key)
                if sheet is None:
                    while len(self.sheets) >= SHEET_CACHE_SIZE:
                        del self.sheets[next(iter(self.sheets))]
                    sheet = self.sheets[key] = make()
        return sheet

    def compiled(self, sheet: _Sheet, environ: Environ) -> tuple[_Version, Any]:
        """The sheet's current version and this thread's compiled copy of it."""
        if time.monotonic() - sheet.checked >= self.interval:
            self._refresh(sheet, environ)
        version = sheet.version
        if version is None:
            raise _SheetError(sheet.error or f"stylesheet {sheet.key!r} is not loaded")
        parser = self.parser()
        mine = self.local.compiled.get(sheet.key)
        if mine is None or mine[0] is not version:
            if len(self.local.compiled) > SHEET_CACHE_SIZE:
                self.local.compiled.clear()
            compiled = _compile(version.source, version.base_url, parser)[1]
            mine = self.local.compiled[sheet.key] = (version, compiled)
        return version, mine[1]

    def _refresh(self, sheet: _Sheet, environ: Environ) -> None:
        with sheet.lock:
            if time.monotonic() - sheet.checked < self.interval:
                return  # another thread just did it
            try:
                stamp, source = sheet.fetch(sheet.stamp, environ)
            except _SheetError as exc:  # unreadable: read again at the next check
                sheet.stamp, sheet.version, sheet.error = None, None, str(exc)
            else:
                if source is not None:
                    sheet.stamp = stamp  # a source that does not compile is not retried
                    try:
                        version, compiled = _Version.build(source, sheet.base_url, self.parser())
                    except _SheetError as exc:
                        sheet.version, sheet.error = None, str(exc)
                    else:
                        self.local.compiled[sheet.key] = (version, compiled)
                        sheet.version, sheet.error = version, None
            sheet.checked = time.monotonic()


def _file_fetch(path: str, stamp: Any, environ: Environ) -> tuple[Any, bytes | None]:
    """A stylesheet file's ``(mtime, size, inode)`` and, if that changed, its bytes."""
    try:
        info = os.stat(path)
        new = (info.st_mtime_ns, info.st_size, info.st_ino)
        if new == stamp:
            return stamp, None
        with open(path, "rb") as file:
            return new, file.read()
    except OSError as exc:
        raise _SheetError(f"cannot read stylesheet {path!r}: {exc.strerror}") from None


# -- parameters -----------------------------------------------------------------

def parse_param(name: str, source: str) -> tuple[str, str]:
    """``("q", "query:q")`` -> ``("query", "q")``; kinds: query, environ, header, path, literal.

    >>> parse_param("site", "'My shop'")
    ('literal', 'My shop')
    """
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        raise ValueError(f"option 'params': {name!r} is not an XSLT parameter name")
    if not isinstance(source, str):
        raise ValueError(f"option 'params': {name} = {source!r}: expected a str such as "
                         "'query:ARG' or \"'literal'\"")
    text = source.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return "literal", text[1:-1]
    if text == "path":
        return "path", ""
    kind, _, arg = text.partition(":")
    if kind in ("query", "environ", "header") and arg:
        if kind == "header":
            arg = arg.upper().replace("-", "_")
            arg = arg if arg in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + arg
        return kind, arg
    raise ValueError(f"option 'params': {name} = {source!r}: expected query:ARG, environ:KEY, "
                     "header:NAME, path or a quoted 'literal'")


def _text(value: str) -> str:
    """A WSGI (latin-1) string as the UTF-8 text it usually carries."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeError, AttributeError):
        return str(value)


def _param_value(kind: str, arg: str, environ: Environ, query: dict[str, list[str]] | None) -> str | None:
    if kind == "path":
        return _text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    if kind == "query":
        values = (query or {}).get(arg)
        return values[0] if values else None
    value = environ.get(arg)
    return None if value is None else _text(value) if isinstance(value, str) else str(value)


# -- the middleware ---------------------------------------------------------------

Rendered = tuple[str, Headers, Iterable[bytes]]


class XSLT:
    """Apply an XSL stylesheet to the XML responses of ``app``.

    - ``stylesheet`` (INI ``stylesheet``): path of the XSL file; its directory
      may be read by ``document()`` and ``xsl:import``.
    - ``honor_pi`` (``honor_pi``): use the document's ``<?xml-stylesheet?>``.
    - ``allowed_dirs`` (``allowed_dirs``): where ``<?xml-stylesheet?>`` hrefs
      and ``document()`` may read files. Everything below them is readable by
      any stylesheet: keep secrets out.
    - ``subrequest_stylesheets`` (``subrequest_stylesheets``): fetch an href
      not found in ``allowed_dirs`` from ``app`` itself (GET, same app only).
    - ``on_refused`` (``on_refused``): ``"error"`` (500) or ``"passthrough"``.
    - ``content_types`` (``content_types``): media types to transform;
      ``*+xml`` and ``text/*`` forms match suffixes and prefixes.
    - ``statuses`` (``statuses``): status codes to transform (default 200).
    - ``params`` (``params``, one ``NAME = SOURCE`` a line): XSLT parameters.
    - ``check_interval`` (``check_interval``): seconds between stylesheet
      change checks (mtime, or a subrequest); 0 checks on every request.
    - ``max_bytes`` (``max_bytes``): largest XML body buffered.
    - ``on_too_large`` (``on_too_large``): ``"error"`` (502) or ``"passthrough"``.
    - ``logger`` (``logger``): logger name for refusals and errors.
    """

    def __init__(self, app: WSGIApp, *, stylesheet: str | None = None, honor_pi: bool = False,
                 allowed_dirs: Iterable[str] = (), subrequest_stylesheets: bool = False,
                 on_refused: str = "error", content_types: Iterable[str] = DEFAULT_CONTENT_TYPES,
                 statuses: Iterable[int] = (200,), params: Mapping[str, str] | None = None,
                 check_interval: float = 2.0, max_bytes: int = MAX_BYTES,
                 on_too_large: str = "error", logger: str = "stack.xslt") -> None:
        self.app = app
        self.honor_pi = check_bool(honor_pi, "honor_pi")
        self.subrequest_stylesheets = check_bool(subrequest_stylesheets, "subrequest_stylesheets")
        self.on_refused = _choice("on_refused", on_refused)
        self.on_too_large = _choice("on_too_large", on_too_large)
        self.allowed_dirs = [_directory(path) for path in _strings("allowed_dirs", allowed_dirs)]
        self.content_types = [_media_pattern(t) for t in _strings("content_types", content_types)]
        if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Iterable):
            raise ValueError(f"option 'statuses': expected a list of status codes (ints 100-599), "
                             f"got {statuses!r}")
        self.statuses = frozenset(_status(code) for code in statuses)
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(f"option 'params': expected a mapping of NAME to SOURCE, got {params!r}")
        self.params = dict(params or {})
        self._params = [(name, *parse_param(name, source)) for name, source in self.params.items()]
        self._literals = {name: etree.XSLT.strparam(_NOT_XML.sub("\ufffd", arg))
                          for name, kind, arg in self._params if kind == "literal"}
        self._vary = [arg[5:].replace("_", "-").title() if arg.startswith("HTTP_") else
                      arg.replace("_", "-").title() for _, kind, arg in self._params if kind == "header"]
        if isinstance(check_interval, bool) or not isinstance(check_interval, (int, float)) \
                or not check_interval >= 0:
            raise ValueError(f"option 'check_interval': expected seconds >= 0, got {check_interval!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"option 'max_bytes': expected a positive int, got {max_bytes!r}")
        if not isinstance(logger, str) or not logger:
            raise ValueError(f"option 'logger': expected a logger name, got {logger!r}")
        if stylesheet is not None and not isinstance(stylesheet, (str, os.PathLike)):
            raise ValueError(f"option 'stylesheet': expected a path, got {stylesheet!r}")
        self.check_interval, self.max_bytes, self.logger = float(check_interval), max_bytes, logger
        self._log = logging.getLogger(logger)
        self._exact = {t for t in self.content_types if "*" not in t}
        self._suffixes = tuple(t[1:] for t in self.content_types if t.startswith("*"))
        self._prefixes = tuple(t[:-1] for t in self.content_types if t.endswith("/*"))
        self.stylesheet = os.path.abspath(stylesheet) if stylesheet else None
        roots = self.allowed_dirs + ([os.path.dirname(os.path.realpath(self.stylesheet))]
                                     if self.stylesheet else [])
        self._store = _Store(roots, self.check_interval)
        self._main = self._load_main()
        if self._main is None and not self.honor_pi:
            raise ValueError("option 'stylesheet': give a path, or set 'honor_pi' to use the "
                             "documents' <?xml-stylesheet?>")
        if self.honor_pi and not (self.allowed_dirs or self.subrequest_stylesheets):
            raise ValueError("option 'honor_pi': needs 'allowed_dirs' or 'subrequest_stylesheets', "
                             "otherwise every <?xml-stylesheet?> href is refused")

    def _load_main(self) -> _Sheet | None:
        if self.stylesheet is None:
            return None
        sheet = _Sheet("file:" + self.stylesheet, partial(_file_fetch, self.stylesheet),
                       self.stylesheet)
        try:
            self._store.compiled(sheet, {})
        except _SheetError as exc:
            raise ValueError(f"option 'stylesheet': {exc}") from None
        return sheet

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(SUBREQUEST_KEY):  # a stylesheet fetched by an XSLT: never transformed
            return self.app(environ, start_response)
        mark = environ.get(MARK_KEY)
        if mark is None:  # shared by every XSLT in the chain, even through environ copies
            mark = environ[MARK_KEY] = []
        try:
            # write() data is held until the app returns: bound it by max_bytes.
            response = call_app(self.app, environ, max_written=self.max_bytes)
        except WriteLimitError:
            self._log.error("xslt: %s wrote more than max_bytes=%d through write(), answered 502",
                            _where(environ), self.max_bytes)
            status, headers, body = _page("502 Bad Gateway",
                                          "The application's XML document is too large.")
            start_response(status, headers)
            return body
        if mark or not self._applies(response):
            response.start(start_response)
            return ClosingIterator(response)
        try:
            if environ.get("REQUEST_METHOD") == "HEAD":
                status, headers, body = self._head(response)
            else:
                status, headers, body = self._render(environ, response, mark)
        except BaseException:
            response.close()
            raise
        response.start(start_response, status, headers)
        return ClosingIterator(body, response.close)

    def _applies(self, response: AppResponse) -> bool:
        if response.status_code() not in self.statuses:
            return False
        ctype = response.content_type()
        if ctype not in self._exact and not ctype.endswith(self._suffixes or ("\0",)) \
                and not ctype.startswith(self._prefixes or ("\0",)):
            return False
        return response.header("Content-Encoding", "identity").strip().lower() == "identity"

    # -- the request path -----------------------------------------------------------

    def _render(self, environ: Environ, response: AppResponse, mark: list[bool]) -> Rendered:
        where = _where(environ)
        length = response.header("Content-Length", "")
        chunks, rest = _buffer(response, self.max_bytes, length)
        if rest is not None:
            return self._too_large(where, response, chunks, rest)
        source = b"".join(chunks)
        etree.clear_error_log()  # the log is per thread: drop an earlier request's entries
        try:
            doc = etree.fromstring(source, self._store.parser())
        except etree.XMLSyntaxError as exc:
            self._log.error("xslt: malformed XML from the app for %s, answered 502: %s",
                            where, _log_text(exc.error_log) or exc)
            return _page("502 Bad Gateway", "The application sent a malformed XML document.")
        try:
            found = self._pick(environ, doc)
        except RefusedError as exc:
            answer = "passed through" if self.on_refused == "passthrough" else "answered 500"
            self._log.error("xslt: refused stylesheet for %s, %s: %s", where, answer, exc)
            if self.on_refused == "passthrough":
                return str(response.status), list(response.headers), [source]
            return _page("500 Internal Server Error", "The page could not be rendered.")
        except _SheetError as exc:
            self._log.error("xslt: stylesheet failed for %s, answered 500: %s", where, exc)
            return _page("500 Internal Server Error", "The page could not be rendered.")
        if found is None:  # honor_pi, no <?xml-stylesheet?>, no configured stylesheet
            return str(response.status), list(response.headers), [source]
        version, xslt = found
        try:
            result = xslt(doc, **self._values(environ))
            output = bytes(result)
        except (etree.Error, RefusedError, LookupError, ValueError, OSError) as exc:
            self._log.error("xslt: transform failed for %s, answered 500: %s: %s", where, exc,
                            _log_text(xslt.error_log))
            return _page("500 Internal Server Error", "The page could not be rendered.")
        mark.append(True)
        return self._finish(environ, response, version.output_type(result), output)

    def _too_large(self, where: str, response: AppResponse, chunks: list[bytes],
                   rest: Iterator[bytes]) -> Rendered:
        if self.on_too_large == "passthrough":
            self._log.warning("xslt: XML body for %s is larger than max_bytes=%d, passed through "
                              "untransformed", where, self.max_bytes)
            return str(response.status), list(response.headers), chain(chunks, rest)
        self._log.error("xslt: XML body for %s is larger than max_bytes=%d, answered 502",
                        where, self.max_bytes)
        return _page("502 Bad Gateway", "The application's XML document is too large.")

    def _finish(self, environ: Environ, response: AppResponse, ctype: str,
                output: bytes) -> Rendered:
        headers = remove_header(response.headers, *_VALIDATORS)
        headers.append(("Content-Type", ctype))
        if self._vary:
            headers = add_vary(headers, *self._vary)
        if response.header("ETag") is None:
            headers.append(("Content-Length", str(len(output))))
            return str(response.status), headers, [output]
        etag = '"x-' + hashlib.blake2b(output + ctype.encode(), digest_size=12).hexdigest() + '"'
        headers.append(("ETag", etag))
        if _etag_matches(environ.get("HTTP_IF_NONE_MATCH"), etag):
            return "304 Not Modified", remove_header(headers, "Content-Type"), []
        headers.append(("Content-Length", str(len(output))))
        return str(response.status), headers, [output]

    def _head(self, response: AppResponse) -> Rendered:
        """HEAD: the body stays as it is; validators go, a known Content-Type is set."""
        headers = remove_header(response.headers, "Content-Length", "ETag", "Last-Modified",
                                "Content-MD5", "Accept-Ranges")
        if self._main is not None and not self.honor_pi:
            try:
                ctype = self._store.compiled(self._main, {})[0].content_type
            except _SheetError:
                ctype = None
            if ctype is not None:
                headers = set_header(headers, "Content-Type", ctype)
        if self._vary:
            headers = add_vary(headers, *self._vary)
        return str(response.status), headers, response

    def _values(self, environ: Environ) -> dict[str, Any]:
        """The XSLT parameters for this request, each quoted with ``XSLT.strparam``."""
        values: dict[str, Any] = dict(self._literals)
        query = None
        for name, kind, arg in self._params:
            if kind == "literal":
                continue
            if kind == "query" and query is None:
                query = parse_qs(_text(environ.get("QUERY_STRING", "")), keep_blank_values=True)
            value = _param_value(kind, arg, environ, query)
            if value is not None:
                values[name] = etree.XSLT.strparam(_NOT_XML.sub("\ufffd", value))
        return values

    # -- choosing the stylesheet --------------------------------------------------------

    def _pick(self, environ: Environ, doc: Any) -> tuple[_Version, Any] | None:
        if self.honor_pi:
            href = _stylesheet_href(doc)
            if href is not None:
                return self._store.compiled(self._pi_sheet(environ, href), environ)
        if self._main is None:
            return None
        return self._store.compiled(self._main, environ)

    def _pi_sheet(self, environ: Environ, href: str) -> _Sheet:
        parts = urlsplit(href)
        if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
            raise RefusedError(f"stylesheet {href!r} is not local (no network reads)")
        path = unquote(parts.path)
        candidates = [path] if parts.scheme else [os.path.join(root, path.lstrip("/"))
                                                   for root in self.allowed_dirs]
        for candidate in candidates:
            if _inside(candidate, self.allowed_dirs) and os.path.isfile(candidate):
                real = os.path.realpath(candidate)
                return self._store.sheet("file:" + real, lambda: _Sheet(
                    "file:" + real, partial(_file_fetch, real), real))
        if not self.subrequest_stylesheets or parts.scheme:
            raise RefusedError(f"stylesheet {href!r} is not inside allowed_dirs "
                               f"{self.allowed_dirs!r}")
        path_info, query = _same_app_target(environ, href)
        key = f"app:{environ.get('SCRIPT_NAME', '')}{path_info}?{query}"
        return self._store.sheet(key, lambda: _Sheet(
            key, partial(self._fetch, path_info, query), None))

    def _fetch(self, path_info: str, query: str, stamp: Any, environ: Environ) -> tuple[Any, bytes | None]:
        """GET ``path_info`` from the wrapped app, marked so no XSLT transforms it."""
        sub = {key: value for key, value in environ.items()
               if key not in _NO_SUBREQUEST and not key.startswith(("HTTP_IF_", "webob."))}
        sub.update({"REQUEST_METHOD": "GET", "PATH_INFO": path_info, "QUERY_STRING": query,
                    "wsgi.input": io.BytesIO(b""), SUBREQUEST_KEY: True})
        where = _CONTROL.sub('?', f"subrequest GET {sub.get('SCRIPT_NAME', '')}{path_info}")
        try:
            response = call_app(self.app, sub)
        except Exception as exc:
            raise _SheetError(f"{where} raised {exc!r}") from None
        try:
            if response.status_code() != 200:
                raise _SheetError(f"{where} answered {response.status!r}")
            chunks, rest = _buffer(response, self.max_bytes, response.header("Content-Length", ""))
            if rest is not None:
                raise _SheetError(f"{where}: stylesheet larger than max_bytes={self.max_bytes}")
        except _SheetError:
            raise
        except Exception as exc:
            raise _SheetError(f"{where} raised {exc!r}") from None
        finally:
            response.close()
        source = b"".join(chunks)
        new = hashlib.blake2b(source, digest_size=16).digest()
        return new, (None if new == stamp else source)


# -- helpers ------------------------------------------------------------------------

def _buffer(response: AppResponse, limit: int, length: str | None) -> tuple[list[bytes], Iterator[bytes] | None]:
    """Read the body up to ``limit`` bytes: ``(chunks, None)``, or ``(read, rest)`` when larger."""
    iterator = iter(response)
    if length and length.strip().isdigit() and int(length) > limit:
        return [], iterator
    chunks, size = [], 0
    for chunk in iterator:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return chunks, iterator
    return chunks, None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _where(environ: Environ) -> str:
    """``METHOD /path`` for a log line, control characters escaped (no forged lines)."""
    text = f"{environ.get('REQUEST_METHOD')} {environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _page(status: str, text: str) -> Rendered:
    body = f"{status}\n\n{text}\n".encode()
    return status, [("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))), ("Cache-Control", "no-store")], [body]


def _log_text(error_log: Any, limit: int = 10) -> str:
    """libxml2/libxslt error log entries as ``file:line:col: message; ...``."""
    entries = [f"{e.filename}:{e.line}:{e.column}: {e.message}" for e in list(error_log)[:limit]]
    return "; ".join(entries)


def _stylesheet_href(doc: Any) -> str | None:
    """The href of the document's first XSLT ``<?xml-stylesheet?>`` before its root."""
    for node in reversed(list(doc.itersiblings(preceding=True))):
        if node.tag is etree.PI and node.target == "xml-stylesheet":
            kind = (node.get("type") or "").strip().lower()
            if kind in _PI_TYPES and (node.get("alternate") or "no") != "yes":
                return node.get("href") or ""
    return None


def _same_app_target(environ: Environ, href: str) -> tuple[str, str]:
    """``(PATH_INFO, QUERY_STRING)`` of ``href`` resolved against this request, inside the app."""
    script = environ.get("SCRIPT_NAME", "")
    base = quote((script + environ.get("PATH_INFO", "")).encode("latin-1"), safe="/")
    parts = urlsplit(urljoin("http://app" + (base or "/"), href))
    path = unquote(parts.path, encoding="latin-1")
    if not path.startswith(script + "/") or {".", ".."} & set(path.split("/")):
        raise RefusedError(f"stylesheet {href!r} is outside this app ({script or '/'!r})")
    return path[len(script):], parts.query


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag in tags


def _choice(option: str, value: str) -> str:
    if value not in ("error", "passthrough"):
        raise ValueError(f"option {option!r}: expected 'error' or 'passthrough', got {value!r}")
    return value


def _strings(option: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"option {option!r}: expected a list of strings, got {values!r}")
    return list(values)


def _directory(path: str) -> str:
    if not os.path.isdir(path):
        raise ValueError(f"option 'allowed_dirs': {path!r} is not a directory")
    return os.path.realpath(path)


def _media_pattern(value: str) -> str:
    pattern = value.strip().lower()
    if not (pattern.startswith("*+") or _MEDIA_TYPE.match(pattern.replace("/*", "/x"))):
        raise ValueError(f"option 'content_types': {value!r} is not a media type "
                         "('application/xml', '*+xml' or 'text/*')")
    return pattern


def _status(code: Any) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise ValueError(f"option 'statuses': expected status codes (ints 100-599), got {code!r}")
    return code


# -- PasteDeploy ---------------------------------------------------------------------

def as_params(value: Any, option: str = "params") -> dict[str, str]:
    """INI ``params``: one ``NAME = SOURCE`` a line (``#`` comments) -> a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    params: dict[str, str] = {}
    for line in str(value).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, source = line.partition("=")
        if not sep or not name.strip() or name.strip() in params:
            raise ConfigError(f"option {option!r}: line {line!r}: expected one 'NAME = SOURCE' "
                              "a line, each NAME once", option=option, value=value)
        params[name.strip()] = source.strip()
    return params


def as_statuses(value: Any, option: str = "statuses") -> list[int]:
    """INI ``statuses``: ``200 404`` -> ``[200, 404]``."""
    return [as_int(word, option, minimum=100, maximum=599) for word in as_list(value, option)]


_ON = partial(as_choice, choices=("error", "passthrough"))
OPTIONS = {
    "stylesheet": as_str, "honor_pi": as_bool, "allowed_dirs": as_list,
    "subrequest_stylesheets": as_bool, "on_refused": _ON, "content_types": as_list,
    "statuses": as_statuses, "params": as_params, "check_interval": as_duration,
    "max_bytes": as_size, "on_too_large": _ON, "logger": as_str,
}


def filter_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], XSLT]:
    """``[filter:NAME] use = egg:stack#xslt``: the options of :class:`XSLT`.

    ``stylesheet`` and ``allowed_dirs`` are relative to the deployment file.
    """
    options = convert_options(local_conf, OPTIONS)
    here = global_conf.get("here") or os.getcwd()
    if options.get("stylesheet"):
        options["stylesheet"] = os.path.join(here, options["stylesheet"])
    if "allowed_dirs" in options:
        options["allowed_dirs"] = [os.path.join(here, path) for path in options["allowed_dirs"]]
    try:
        XSLT(_no_app, **options)  # reject a bad value (or stylesheet) when the file is loaded
    except ConfigError:
        raise
    except ValueError as exc:
        named = re.search(r"option '(\w+)'", str(exc))
        raise ConfigError(str(exc), option=named.group(1) if named else None) from None
    return partial(XSLT, **options)


def _no_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("placeholder app")


__all__ = ["XSLT", "RefusedError", "parse_param", "as_params", "as_statuses", "filter_factory",
           "DEFAULT_CONTENT_TYPES", "MAX_BYTES", "PARSER_OPTIONS", "ACCESS"]
