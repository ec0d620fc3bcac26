"""Proxy: forward requests to a pool of HTTP backends and stream the answers back.

Use it to put a remote service -- or several copies of one -- beside local
apps in the same mount table. Each request goes to one backend (round robin,
least connections, random, or a hash for sticky sessions); bodies stream both
ways; a backend that stops answering is taken out of rotation and idempotent
requests move to another one.

Python::

    from stack.middleware.mount import Mount
    from stack.middleware.proxy import Proxy

    pool = Proxy(["http://10.0.0.5:9001/api", "http://10.0.0.6:9001/api"],
                 balance="least_connections", read_timeout=30, health_check="/healthz")
    site = Mount({"/": home, "/remote": pool})
    ...
    pool.close()  # stops the health-check thread and closes pooled connections

INI::

    [app:pool]
    use = egg:stack#proxy
    backends = http://10.0.0.5:9001/api http://10.0.0.6:9001/api
    balance = hash
    hash_on = cookie:session
    connect_timeout = 2s
    read_timeout = 30s
    health_check = /healthz
    health_interval = 5s

A request for ``SCRIPT_NAME + PATH_INFO?QUERY`` goes to ``BASE +
PATH_INFO?QUERY`` where ``BASE`` is the backend URL's path. ``PATH_INFO`` is
resolved first, the way a browser resolves a URL: ``.`` segments go, a ``..``
segment removes the segment before it and never climbs above ``/``, and empty
segments (``//``) collapse -- so ``/../admin``, ``/x/../../internal`` and
``/%2e%2e/admin`` (which a server decodes to ``..``) all stay under ``BASE``
(``BASE/admin``, ``BASE/internal``), and the backend never sees a dot segment.
Hop-by-hop headers (``Connection``, ``Keep-Alive``, ``Proxy-*``, ``TE``,
``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and any named in
``Connection``) are dropped both ways. Interim ``1xx`` answers
(``100 Continue``, ``103 Early Hints``, ...) are read and dropped -- WSGI has
no way to pass them on -- and the final answer is proxied;
``101 Switching Protocols`` cannot be proxied (502).

Failures: connecting fails (refused, connect timeout) -> the backend counts a
failure (``max_fails`` of them mark it down for ``fail_timeout``) and the
request goes to the next backend -- nothing was sent, so any method may move. A
kept-alive connection the backend closed just as it was reused (the send fails,
or the connection closes before a byte of the answer) is not the backend's
fault: an idempotent request with a body that can be sent again is sent once
more on a new connection to the same backend (not counted as a failure nor
against ``retries``) before the rules below apply. The connection breaks after
the request was sent -> GET, HEAD, OPTIONS, PUT, DELETE and TRACE with a body
that can be sent again (none, or one of at most ``buffer_size`` bytes with a
``Content-Length``) are retried on another backend, at most ``retries`` times;
anything else (a POST whose body went out) gets a 502 and is never sent twice.
Every backend down: 502. No answer within ``read_timeout``: 504. A malformed
answer (bad status line, conflicting or over-long ``Content-Length``,
``Transfer-Encoding`` plus ``Content-Length``, a bad chunk before the headers
went out): 502. Once the answer's headers went out, a broken body raises
:class:`BackendError` so the server aborts the connection and the client sees
the truncation, never a short body passed off as whole.

HTTP client: :mod:`http.client`, with our own pool of kept-alive connections
per backend (a ``deque``: taking one is an atomic ``pop``; giving one back
checks the pool size and appends under the backend's lock, which the load count
takes anyway). urllib3 was measured too (``benchmarks/bench_proxy.py`` prints
both): its ``HTTPConnectionPool`` is built on the same ``http.client``
connection and response classes and adds a ``Retry`` object, a ``Timeout``
object, a queue with a lock, and its own ``HTTPResponse`` wrapper per request
-- work this module does once or not at all -- so the direct client is faster
per request (1.5x to 2.5x the requests/s for a small GET or POST on a
keep-alive connection, across runs on a shared machine) with the same parser
underneath.

Security:

- ``X-Forwarded-For``/``-Proto``/``-Host`` (and ``Forwarded`` with
  ``forwarded = true``) are *appended to* whatever the client sent, so a
  backend must trust only the entries its own proxies added (e.g.
  ``ProxyFix(x_for=1)``), never the first one.
- ``PATH_INFO`` is resolved under the backend's base path (above), so dot
  segments cannot reach outside it.
- ``SCRIPT_NAME`` is percent-encoded (``;``, ``,``, spaces, controls, non-ASCII)
  before it goes into a rewritten ``Location`` or ``Set-Cookie`` ``Path``: a
  client-chosen prefix (a router's ``/{tenant}/...``) cannot add cookie
  attributes.
- A request ``Content-Length`` of more than 18 digits (or not digits) is a 400.
- The ``Proxy`` request header is dropped with the other ``Proxy-*`` headers
  (httpoxy), and header values with CR, LF or NUL are refused both ways.
- Error pages name no backend address; details go to the ``stack.proxy`` log.
- ``preserve_host = true`` hands the client's ``Host`` to the backend, which
  then must not trust it for anything security-relevant.
"""
from __future__ import annotations

import http.client
import logging
import random
import re
import select
import ssl
import threading
import time
from collections import deque
from hashlib import blake2b
from http import HTTPStatus
from itertools import count
from functools import partial
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import quote, urlsplit

from stack.errors import ConfigError, HeaderError, StackError
from stack.options import (as_bool, as_choice, as_duration, as_int, as_list, as_size, as_str,
                           check_bool, convert_options)
from stack.types import Environ, Headers, StartResponse
from stack.wsgi import check_header, check_status

log = logging.getLogger("stack.proxy")

BALANCE = ("round_robin", "least_connections", "random", "hash")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with Content-Length: 0 when empty
_SAFE_PATH = "/:@!$&'()*+,;=~-._"
_SAFE_PREFIX = "/:@!$&'()*+=~-._"  # SCRIPT_NAME in Location / cookie Path: no ";" or ","
_SAFE_QUERY = "".join(chr(c) for c in range(33, 127) if chr(c) not in '#"<>\\^`{|}')
_FOLD = re.compile(r"\r?\n[ \t]*")
_DIGITS = re.compile(r"[0-9]{1,18}\Z")  # a Content-Length: at most 18 digits (< 2**63)
_MAX_INTERIM = 32  # interim 1xx answers skipped before the answer counts as malformed
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_REQUEST_NAMES: dict[str, str | None] = {}  # HTTP_FOO_BAR -> Foo-Bar, or None if hop-by-hop


class BackendError(StackError, ConnectionError):
    """A backend's answer broke off after its headers were passed on."""


class _Fail(Exception):
    """A request failed before any response went out: ``status`` and a message."""

    def __init__(self, status: int, message: str, retry: bool = False,
                 stale: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.retry, self.stale = status, message, retry, stale


class _NoAnswer(http.client.RemoteDisconnected):
    """The connection closed (or was reset) before a single byte of the answer."""


class _Response(http.client.HTTPResponse):
    """:class:`http.client.HTTPResponse` that skips every interim 1xx answer but 101.

    (``begin()`` itself skips only ``100``.) It also raises :class:`_NoAnswer`
    when the connection ends before the first byte of the answer, so a stale
    kept-alive connection can be told from one that broke mid-answer.
    """

    _statuses = 0

    def _read_status(self) -> tuple[str, int, str]:
        self._statuses += 1
        if self._statuses == 1:
            try:
                first = self.fp.peek(1)
            except ConnectionError:
                first = b""
            if not first:
                raise _NoAnswer("the connection closed before any answer")
        while True:
            if self._statuses > _MAX_INTERIM:
                raise http.client.HTTPException(f"more than {_MAX_INTERIM} interim answers")
            version, status, reason = super()._read_status()
            if not 102 <= status < 200:
                return version, status, reason  # 100 is skipped by begin(); 101 is refused later
            http.client.parse_headers(self.fp)  # an interim answer's headers: dropped
            self._statuses += 1


class Backend:
    """One backend: where it is, its idle connections, load and health."""

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed '[' of an IPv6 address
            raise ValueError(f"option 'backends': {url!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"option 'backends': {url!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"option 'backends': {url!r} must not carry a query, fragment or user")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"option 'backends': {url!r} has a bad port") from None
        self.url, self.scheme, self.host, self.port = url, parts.scheme, parts.hostname, port
        self.netloc = parts.netloc
        self.base = parts.path.rstrip("/")
        self.key = url.encode()
        self.idle: deque[http.client.HTTPConnection] = deque()
        self.lock = threading.Lock()
        self.active = 0
        self.fails = 0
        self.down_until = 0.0

    def __repr__(self) -> str:
        return f"Backend({self.url!r})"

    def connect(self, connect_timeout: float, read_timeout: float) -> http.client.HTTPConnection:
        """A new connected connection (raises OSError if connecting fails)."""
        if self.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=connect_timeout,
                context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)
        conn.response_class = _Response
        try:
            conn.connect()
            conn.sock.settimeout(read_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self.lock:  # so a connection given back concurrently is not left behind
            idle = list(self.idle)
            self.idle.clear()
        for conn in idle:
            conn.close()


class Proxy:
    """A WSGI app forwarding every request to one of ``backends``.

    - ``backends`` (INI: whitespace list): base URLs, ``http://host:port/path``.
    - ``balance``: ``round_robin`` (default), ``least_connections``, ``random``,
      ``hash`` (the same key always reaches the same live backend).
    - ``hash_on``: the key for ``hash``: ``client_addr`` (default),
      ``header:NAME`` or ``cookie:NAME``; without one, round robin. Clients
      choose headers and cookies: stickiness, not security.
    - ``preserve_host``: pass the client's ``Host`` on (default: the backend's).
    - ``x_forwarded``: append ``X-Forwarded-For/-Proto/-Host`` (default true).
    - ``forwarded``: append an RFC 7239 ``Forwarded`` header (default false).
    - ``rewrite_location`` / ``rewrite_cookie_path``: map ``Location`` URLs and
      ``Set-Cookie`` paths under the backend's base back under ``SCRIPT_NAME``.
    - ``connect_timeout`` (5s), ``read_timeout`` (60s): seconds.
    - ``max_fails`` (1; 0 never marks down), ``fail_timeout`` (10s): passive health.
    - ``retries`` (2): retries of idempotent requests after a broken exchange.
    - ``pool_size`` (10): idle keep-alive connections kept per backend.
    - ``health_check`` (path, off by default), ``health_interval`` (5s): a
      thread GETs the path under each backend's base; a non-2xx/3xx answer or
      none marks it down until a check passes. The thread starts with the
      first request (or :meth:`start`); :meth:`close` stops it.
    - ``buffer_size`` (64KiB): bytes moved at a time; request bodies up to this
      size are buffered (so replayable) and answers up to it read in one piece.
    """

    def __init__(self, backends: str | Sequence[str], *, balance: str = "round_robin",
                 hash_on: str = "client_addr", preserve_host: bool = False,
                 x_forwarded: bool = True, forwarded: bool = False,
                 rewrite_location: bool = True, rewrite_cookie_path: bool = True,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0,
                 max_fails: int = 1, fail_timeout: float = 10.0, retries: int = 2,
                 pool_size: int = 10, health_check: str | None = None,
                 health_interval: float = 5.0, buffer_size: int = 65536) -> None:
        urls = [backends] if isinstance(backends, str) else list(backends)
        if not urls or not all(isinstance(url, str) for url in urls):
            raise ValueError(f"option 'backends': expected one or more URLs, got {backends!r}")
        self.backends = [Backend(url) for url in urls]
        if balance not in BALANCE:
            raise ValueError(f"option 'balance': got {balance!r}, expected one of {', '.join(BALANCE)}")
        self.balance, self.hash_on = balance, hash_on
        self._hash_key = _hash_key_reader(hash_on)
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout),
                            ("fail_timeout", fail_timeout), ("health_interval", health_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"option {name!r}: got {value!r}, expected a number of seconds > 0")
        for name, value, low in (("max_fails", max_fails, 0), ("retries", retries, 0),
                                 ("pool_size", pool_size, 0), ("buffer_size", buffer_size, 1024)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"option {name!r}: got {value!r}, expected an integer >= {low}")
        if health_check is not None and (not isinstance(health_check, str)
                                         or not health_check.startswith("/")):
            raise ValueError(f"option 'health_check': got {health_check!r}, expected a path like '/healthz'")
        self.preserve_host = check_bool(preserve_host, "preserve_host")
        self.x_forwarded = check_bool(x_forwarded, "x_forwarded")
        self.forwarded = check_bool(forwarded, "forwarded")
        self.rewrite_location = check_bool(rewrite_location, "rewrite_location")
        self.rewrite_cookie_path = check_bool(rewrite_cookie_path, "rewrite_cookie_path")
        self.connect_timeout, self.read_timeout = float(connect_timeout), float(read_timeout)
        self.max_fails, self.fail_timeout, self.retries = max_fails, float(fail_timeout), retries
        self.pool_size, self.buffer_size = pool_size, buffer_size
        self.health_check, self.health_interval = health_check, float(health_interval)
        self._counter = count()
        self._replaced = frozenset(
            (["HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"]
             if x_forwarded else []) + (["HTTP_FORWARDED"] if forwarded else []))
        self._closed = False
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._check_pending = bool(health_check)  # started by start() or the first request

    # -- lifecycle ------------------------------------------------------------

    def children(self) -> Iterator[tuple[str, Backend]]:
        """``(url, backend)`` pairs, so ``stack show`` lists the pool."""
        return ((backend.url, backend) for backend in self.backends)

    def start(self) -> None:
        """Start the health-check thread now (the first request starts it otherwise).

        Building a Proxy starts nothing, so ``stack check`` and ``stack show``
        probe no backend.
        """
        with self._lock:
            if not self._check_pending or self._closed:
                return
            self._check_pending = False
            self._checker = threading.Thread(target=self._check_loop, name="stack.proxy health",
                                             daemon=True)
            self._checker.start()

    def close(self) -> None:
        """Stop the health-check thread and close idle connections (idempotent)."""
        with self._lock:
            self._closed = True
            self._check_pending = False
        self._stop.set()
        if self._checker is not None:
            self._checker.join(timeout=max(5.0, self.connect_timeout + self.read_timeout))
            self._checker = None
        for backend in self.backends:
            backend.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request path -----------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._check_pending:
            self.start()
        try:
            head = self._request_headers(environ)
            body = _RequestBody(environ, self.buffer_size)
            return self._forward(environ, start_response, head, body)
        except _Fail as fail:
            return _error(start_response, fail.status, fail.message)

    def _forward(self, environ: Environ, start_response: StartResponse, head: Headers,
                 body: _RequestBody) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path, query = _target(environ)
        tried: list[Backend] = []
        retries = self.retries if method in IDEMPOTENT else 0
        again: Backend | None = None  # the same backend once more, on a new connection
        while True:
            fresh = again is not None
            if again is not None:
                backend, again = again, None
            else:
                picked = self._pick(environ, tried)
                if picked is None:
                    if tried:
                        raise _Fail(502, "no backend could take the request: "
                                         "every one tried failed")
                    raise _Fail(502, "no backend is available: every backend is marked down")
                backend = picked
                tried.append(backend)
            with backend.lock:
                backend.active += 1
            target = (backend.base + path or "/") + query
            try:
                conn, response = self._exchange(backend, method, target, head, body, environ,
                                                fresh)
            except _Fail as fail:
                self._release(backend, None)
                if fail.status == 0:
                    continue  # could not connect: nothing was sent, any method may move
                if fail.stale and method in IDEMPOTENT and body.replayable:
                    # A pooled connection the backend had closed: not the backend's
                    # fault. A fresh connection is never stale, so this happens at
                    # most once per backend.
                    again = backend
                    continue
                if fail.retry and retries and body.replayable:
                    retries -= 1
                    continue
                raise
            except BaseException:
                self._release(backend, None)
                raise
            return self._respond(environ, start_response, backend, conn, response)

    def _exchange(self, backend: Backend, method: str, target: str, head: Headers,
                  body: _RequestBody, environ: Environ,
                  fresh: bool = False) -> tuple[Any, http.client.HTTPResponse]:
        """Send the request to ``backend`` and read the answer's head.

        Raises ``_Fail``: status 0 (retry anywhere) if connecting failed, else
        the status for the client, with ``retry`` if the request may move and
        ``stale`` if a reused connection failed before any byte of an answer.
        ``fresh``: do not take a pooled connection.
        """
        conn, reused = self._connection(backend, fresh)
        sending = True
        try:
            host = environ.get("HTTP_HOST") if self.preserve_host else None
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host or backend.netloc)
            for name, value in head:
                conn.putheader(name, value)
            body.send(conn)
            sending = False
            response = conn.getresponse()
        except _Fail:
            conn.close()
            raise
        except TimeoutError:
            conn.close()
            log.warning("proxy: %s did not answer %s %s within %ss", backend.url, method,
                        target, self.read_timeout)
            raise _Fail(504, f"the backend did not answer within {self.read_timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            broken = isinstance(exc, (OSError, http.client.RemoteDisconnected,
                                      http.client.IncompleteRead))
            stale = reused and (isinstance(exc, _NoAnswer)
                                or sending and isinstance(exc, ConnectionError))
            if not reused:
                self._failed(backend)
            log.warning("proxy: %s %s to %s failed%s: %r", method, target, backend.url,
                        " on a reused connection" if stale else "", exc)
            if broken:
                raise _Fail(502, "the backend closed the connection before answering",
                            retry=True, stale=stale) from None
            raise _Fail(502, "the backend sent a malformed answer") from None
        except BaseException:
            conn.close()
            raise
        if backend.fails:
            with backend.lock:
                backend.fails = 0
        return conn, response

    def _connection(self, backend: Backend,
                    fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """An idle pooled connection the backend has not closed, or a new one."""
        idle = backend.idle
        while idle and not fresh:
            try:
                conn = idle.pop()
            except IndexError:
                break
            if _usable(conn):
                return conn, True
            conn.close()
        try:
            return backend.connect(self.connect_timeout, self.read_timeout), False
        except OSError as exc:
            log.warning("proxy: cannot connect to %s: %r", backend.url, exc)
            self._failed(backend)
            raise _Fail(0, "the backend could not be reached", retry=True) from None

    def _respond(self, environ: Environ, start_response: StartResponse, backend: Backend,
                 conn: Any, response: http.client.HTTPResponse) -> Iterable[bytes]:
        try:
            status, headers = self._response_head(environ, backend, response)
            length = response.length
            if length is not None and length <= self.buffer_size:
                data = response.read()  # raises IncompleteRead if cut short
                self._release(backend, conn, response)
                start_response(status, headers)
                return [data] if data else []
        except (OSError, http.client.HTTPException, HeaderError) as exc:
            response.close()
            conn.close()
            self._release(backend, None)
            log.warning("proxy: bad answer from %s: %r", backend.url, exc)
            if isinstance(exc, TimeoutError):
                return _error(start_response, 504, "the backend did not finish its answer in time")
            return _error(start_response, 502, "the backend sent a malformed answer")
        try:
            start_response(status, headers)
        except BaseException:  # an outer layer refused the answer: give the backend back
            response.close()
            conn.close()
            self._release(backend, None)
            raise
        return _ResponseBody(self, backend, conn, response)

    def _response_head(self, environ: Environ, backend: Backend,
                       response: http.client.HTTPResponse) -> tuple[str, Headers]:
        code, reason = response.status, (response.reason or "").strip()
        if code < 200:
            raise HeaderError(f"status {code} (a protocol switch) cannot be proxied")
        status = f"{code} {reason or _phrase(code)}"
        try:
            check_status(status)
        except HeaderError:
            status = f"{code} {_phrase(code)}"
        raw = response.msg.items()
        drop = set(HOP_BY_HOP)
        lengths, chunked = [], False
        for name, value in raw:
            lname = name.lower()
            if lname == "connection":
                drop.update(token.strip().lower() for token in value.split(","))
            elif lname == "content-length":
                lengths.append(value.strip())
            elif lname == "transfer-encoding":
                if value.strip().lower() != "chunked" or chunked:
                    raise HeaderError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
        if len(set(lengths)) > 1 or (lengths and (chunked or not _DIGITS.match(lengths[0]))):
            raise HeaderError(f"bad framing: Content-Length {lengths!r}, chunked={chunked}")
        headers: Headers = []
        script_name = _quote_prefix(environ.get("SCRIPT_NAME", ""))
        for name, value in raw:
            lname = name.lower()
            if lname in drop or lname.startswith("proxy-"):
                continue
            if "\r" in value or "\n" in value:
                value = _FOLD.sub(" ", value).strip()
            if not _TOKEN.match(name):
                log.warning("proxy: dropped a bad header name %r from %s", name, backend.url)
                continue
            if lname == "location" and self.rewrite_location:
                value = _rewrite_location(value, environ, backend, script_name)
            elif lname == "set-cookie" and self.rewrite_cookie_path:
                value = _rewrite_cookie(value, backend.base, script_name)
            check_header(name, value)
            headers.append((name, value))
        return status, headers

    def _release(self, backend: Backend, conn: Any, response: Any = None) -> None:
        """The exchange is over: keep ``conn`` for reuse if it is clean, else close it."""
        keep = (conn is not None and response is not None and response.isclosed()
                and not response.will_close)
        with backend.lock:  # the size check and the append together
            backend.active -= 1
            if keep and not self._closed and len(backend.idle) < self.pool_size:
                backend.idle.append(conn)
                return
        if conn is not None:
            conn.close()

    # -- choosing a backend ---------------------------------------------------

    def _pick(self, environ: Environ, tried: list[Backend]) -> Backend | None:
        now = time.monotonic()
        backends = self.backends
        if self.balance == "round_robin" or len(backends) == 1:
            start, size = next(self._counter), len(backends)
            for offset in range(size):
                backend = backends[(start + offset) % size]
                if backend.down_until <= now and backend not in tried:
                    return backend
            return None
        live = [b for b in backends if b.down_until <= now and b not in tried]
        if not live:
            return None
        if self.balance == "least_connections":
            start = next(self._counter) % len(live)
            return min(live[start:] + live[:start], key=_active)
        if self.balance == "random":
            return random.choice(live)
        key = self._hash_key(environ)
        if key is None:
            return live[next(self._counter) % len(live)]
        # Rendezvous hashing: a key keeps its backend while that one is up,
        # and only the keys of a backend that goes down move elsewhere.
        return max(live, key=lambda b: blake2b(key + b.key, digest_size=8).digest())

    def _failed(self, backend: Backend) -> None:
        with backend.lock:
            backend.fails += 1
            if not self.max_fails or backend.fails < self.max_fails:
                return
            backend.fails = 0
            backend.down_until = time.monotonic() + self.fail_timeout
        log.warning("proxy: %s marked down for %ss", backend.url, self.fail_timeout)

    # -- active health checks -------------------------------------------------

    def _check_loop(self) -> None:
        while True:
            for backend in self.backends:
                if self._stop.is_set():
                    return
                healthy = self._check(backend)
                with backend.lock:
                    if healthy:
                        backend.fails, backend.down_until = 0, 0.0
                    elif backend.down_until != float("inf"):
                        backend.down_until = float("inf")
                        log.warning("proxy: %s failed its health check: marked down", backend.url)
            if self._stop.wait(self.health_interval):
                return

    def _check(self, backend: Backend) -> bool:
        try:
            conn = backend.connect(self.connect_timeout, self.read_timeout)
        except OSError:
            return False
        try:
            conn.request("GET", backend.base + self.health_check,
                         headers={"Host": backend.netloc, "Connection": "close"})
            with conn.getresponse() as response:
                response.read()
                return 200 <= response.status < 400
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    # -- request headers ------------------------------------------------------

    def _request_headers(self, environ: Environ) -> Headers:
        """The headers to send on (without ``Host``, ``Content-Length`` and framing)."""
        drop: set[str] | None = None
        connection = environ.get("HTTP_CONNECTION")
        if connection:
            drop = {token.strip().lower() for token in connection.split(",")}
        headers: Headers = []
        for key, value in environ.items():
            if key[:5] != "HTTP_":
                continue
            name = _REQUEST_NAMES.get(key, "")
            if name == "":
                name = _request_name(key)
            if name is None or key in self._replaced or (drop and name.lower() in drop):
                continue
            headers.append((name, value))
        content_type = environ.get("CONTENT_TYPE")
        if content_type:
            headers.append(("Content-Type", content_type))
        if self.x_forwarded:
            headers.extend(_x_forwarded(environ))
        if self.forwarded:
            headers.append(("Forwarded", _append(environ.get("HTTP_FORWARDED"), _forwarded(environ))))
        try:
            for name, value in headers:
                check_header(name, value)
        except HeaderError as exc:
            raise _Fail(400, f"a request header cannot be forwarded: {exc}") from None
        return headers


class _RequestBody:
    """The request body: none, buffered (replayable) or streamed (sent once)."""

    __slots__ = ("data", "stream", "length", "chunked", "size", "replayable", "prefix")

    def __init__(self, environ: Environ, size: int) -> None:
        self.data: bytes | None = None
        self.stream = environ["wsgi.input"]
        self.chunked = False
        self.size = size
        self.prefix = b""
        raw = environ.get("CONTENT_LENGTH") or ""
        method = environ["REQUEST_METHOD"]
        if raw:
            if not _DIGITS.match(raw.strip()):
                shown = raw if len(raw) <= 40 else raw[:40] + "..."
                raise _Fail(400, f"bad Content-Length {shown!r}: expected at most 18 digits")
            self.length = int(raw)
        elif environ.get("wsgi.input_terminated"):
            self.length, self.chunked = -1, True
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise _Fail(411, "a chunked request body needs a server that sets wsgi.input_terminated")
        else:
            self.length = 0 if method in _BODY_METHODS else -1
        if 0 <= self.length <= size:
            self.data = self._read_all(self.length) if self.length else b""
        elif self.chunked:  # a body of unknown length: small ones get a Content-Length
            self._read_prefix(method)
        self.replayable = self.data is not None or self.length == -1 and not self.chunked

    def _read_prefix(self, method: str) -> None:
        parts, got = [], 0
        while got <= self.size:
            chunk = self._read(self.size + 1 - got)
            if not chunk:
                self.chunked = False
                if got or method in _BODY_METHODS:
                    self.data, self.length = b"".join(parts), got
                return
            parts.append(chunk)
            got += len(chunk)
        self.prefix = b"".join(parts)

    def _read_all(self, length: int) -> bytes:
        parts, left = [], length
        while left:
            chunk = self._read(min(left, self.size))
            if not chunk:
                raise _Fail(400, "the request body ended before its Content-Length")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _read(self, size: int) -> bytes:
        try:
            return self.stream.read(size)
        except OSError as exc:  # the client went away: not the backend's fault
            raise _Fail(400, f"the request body could not be read: {exc}") from None

    def send(self, conn: http.client.HTTPConnection) -> None:
        """Finish the head and send the body (reading ``wsgi.input`` as it goes)."""
        if self.data is not None:
            conn.putheader("Content-Length", str(len(self.data)))
            conn.endheaders(self.data or None)
            return
        if self.length == -1 and not self.chunked:
            conn.endheaders()
            return
        self.replayable = False
        read, size = self._read, self.size
        if self.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            conn.send(b"%X\r\n%s\r\n" % (len(self.prefix), self.prefix))
            while chunk := read(size):
                conn.send(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
            return
        conn.putheader("Content-Length", str(self.length))
        conn.endheaders()
        left = self.length
        while left:
            chunk = read(min(left, size))
            if not chunk:
                raise _Fail(400, "the request body ended before its Content-Length")
            conn.send(chunk)
            left -= len(chunk)


class _ResponseBody:
    """Streams one backend answer; on close, returns the connection to the pool."""

    def __init__(self, proxy: Proxy, backend: Backend, conn: Any,
                 response: http.client.HTTPResponse) -> None:
        self.proxy, self.backend, self.conn, self.response = proxy, backend, conn, response
        self.done = self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        response, size = self.response, self.proxy.buffer_size
        read = response.read if response.length is not None else response.read1
        try:
            while True:
                data = read(size)
                if not data:
                    break
                yield data
        except (OSError, http.client.HTTPException) as exc:
            raise BackendError(f"the answer from {self.backend.url} broke off: {exc!r}") from None
        if response.length:
            raise BackendError(f"the answer from {self.backend.url} ended "
                               f"{response.length} bytes short of its Content-Length")
        self.done = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.done:
            self.response.close()
            self.proxy._release(self.backend, self.conn, self.response)
        else:
            self.response.close()
            self.conn.close()
            self.proxy._release(self.backend, None)


# -- helpers ------------------------------------------------------------------

def _active(backend: Backend) -> int:
    return backend.active


def _usable(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is usable if the backend has not closed it (nothing to read)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _request_name(key: str) -> str | None:
    name = "-".join(part.capitalize() for part in key[5:].split("_"))
    lname = name.lower()
    result = None if lname in HOP_BY_HOP or lname.startswith("proxy") or lname in (
        "host", "expect", "content-length", "content-type") else name
    if len(_REQUEST_NAMES) < 512:
        _REQUEST_NAMES[key] = result
    return result


def _target(environ: Environ) -> tuple[str, str]:
    """``PATH_INFO`` resolved and quoted again, and ``"?query"`` (or ``""``)."""
    path = environ.get("PATH_INFO", "")
    if path:
        path = quote(_resolve(path).encode("latin-1"), _SAFE_PATH)
    query = environ.get("QUERY_STRING", "")
    if query:
        query = "?" + quote(query.encode("latin-1"), _SAFE_QUERY)
    return path, query


def _resolve(path: str) -> str:
    """``path`` with ``.`` and ``..`` segments resolved (never above ``/``) and ``//`` collapsed.

    ``/a/./b`` -> ``/a/b``, ``/a/../../b`` -> ``/b``, ``/a//b/`` -> ``/a/b/``,
    ``/a/..`` -> ``/``; the result always starts with ``/``.
    """
    if path[0] == "/" and "/." not in path and "//" not in path:
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


def _quote_prefix(script_name: str) -> str:
    """``SCRIPT_NAME`` percent-encoded for a ``Location`` or a cookie ``Path``.

    It is decoded, client-chosen text (a router's ``/{tenant}/...``): ``;``,
    ``,``, spaces, controls and non-ASCII are encoded, so it cannot end the
    ``Path`` attribute and start another one.
    """
    if not script_name:
        return script_name
    return quote(script_name.encode("latin-1", "replace"), _SAFE_PREFIX)


def _append(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def _front_host(environ: Environ) -> str:
    host = environ.get("HTTP_HOST")
    if host:
        return host
    port = environ.get("SERVER_PORT", "")
    default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    return environ.get("SERVER_NAME", "") + ("" if port in ("", default) else f":{port}")


def _x_forwarded(environ: Environ) -> Headers:
    headers = []
    addr = environ.get("REMOTE_ADDR")
    if addr:
        headers.append(("X-Forwarded-For", _append(environ.get("HTTP_X_FORWARDED_FOR"), addr)))
    headers.append(("X-Forwarded-Proto", _append(environ.get("HTTP_X_FORWARDED_PROTO"),
                                                 environ.get("wsgi.url_scheme", "http"))))
    headers.append(("X-Forwarded-Host", _append(environ.get("HTTP_X_FORWARDED_HOST"),
                                                _front_host(environ))))
    return headers


def _forwarded(environ: Environ) -> str:
    """One RFC 7239 element: ``for=...;proto=...;host=...``."""
    addr = environ.get("REMOTE_ADDR") or "unknown"
    if ":" in addr:
        addr = f"[{addr}]"
    parts = [("for", addr), ("proto", environ.get("wsgi.url_scheme", "http")),
             ("host", _front_host(environ))]
    return ";".join(f"{k}={v}" if _TOKEN.match(v) else f'{k}="{_quoted(v)}"' for k, v in parts)


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _rebase(path: str, base: str, script_name: str) -> str | None:
    """``path`` under ``base`` moved under ``script_name``, or None if not under it."""
    if base and not (path == base or path.startswith(base + "/")):
        return None
    return (script_name + path[len(base):]) or "/"


def _rewrite_location(value: str, environ: Environ, backend: Backend, script_name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.netloc.lower() not in (backend.netloc.lower(), _front_host(environ).lower()):
            return value
    elif not parts.path.startswith("/"):
        return value  # relative to the current URL: already right
    path = _rebase(parts.path, backend.base, script_name)
    if path is None:
        return value
    rest = ("?" + parts.query if parts.query else "") + ("#" + parts.fragment if parts.fragment else "")
    if parts.scheme or parts.netloc:
        return f"{environ.get('wsgi.url_scheme', 'http')}://{_front_host(environ)}{path}{rest}"
    return path + rest


def _rewrite_cookie(value: str, base: str, script_name: str) -> str:
    parts = value.split(";")
    for index, part in enumerate(parts[1:], 1):
        name, eq, path = part.partition("=")
        if eq and name.strip().lower() == "path":
            new = _rebase(path.strip(), base, script_name)
            if new is not None:
                if script_name and new == script_name + "/":
                    new = script_name  # the backend's root: the whole mount
                parts[index] = f" Path={new}"
    return ";".join(parts)


def _hash_key_reader(hash_on: str) -> Any:
    """A function ``environ -> bytes | None`` for a ``hash_on`` spec."""
    kind, _, name = str(hash_on).partition(":")
    if kind == "client_addr" and not name:
        return lambda environ: (environ.get("REMOTE_ADDR") or "").encode() or None
    if kind == "header" and _TOKEN.match(name):
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        return lambda environ: environ.get(key, "").encode("latin-1") or None
    if kind == "cookie" and name:
        return partial(_cookie, name)
    raise ValueError(f"option 'hash_on': got {hash_on!r}, expected client_addr, "
                     "header:NAME or cookie:NAME")


def _cookie(name: str, environ: Environ) -> bytes | None:
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        key, eq, value = part.partition("=")
        if eq and key.strip() == name:
            return value.strip().encode("latin-1") or None
    return None


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _error(start_response: StartResponse, status: int, message: str) -> list[bytes]:
    phrase = _phrase(status)
    body = f"{status} {phrase}\n\n{message}\n".encode()
    start_response(f"{status} {phrase}", [("Content-Type", "text/plain; charset=utf-8"),
                                          ("Content-Length", str(len(body)))])
    return [body]


# -- PasteDeploy ---------------------------------------------------------------

OPTIONS = {
    "backends": as_list,
    "balance": partial(as_choice, choices=BALANCE),
    "hash_on": as_str,
    "preserve_host": as_bool,
    "x_forwarded": as_bool,
    "forwarded": as_bool,
    "rewrite_location": as_bool,
    "rewrite_cookie_path": as_bool,
    "connect_timeout": as_duration,
    "read_timeout": as_duration,
    "max_fails": partial(as_int, minimum=0),
    "fail_timeout": as_duration,
    "retries": partial(as_int, minimum=0),
    "pool_size": partial(as_int, minimum=0),
    "health_check": as_str,
    "health_interval": as_duration,
    "buffer_size": partial(as_size, minimum=1024),
}


def app_factory(global_conf: dict[str, Any], **local_conf: Any) -> Proxy:
    """``[app:x] use = egg:stack#proxy``: convert the INI options, build a :class:`Proxy`."""
    options = convert_options(local_conf, OPTIONS)
    if not options.get("backends"):
        raise ConfigError("option 'backends' is required: one or more base URLs, "
                          "e.g. backends = http://127.0.0.1:9001 http://127.0.0.1:9002",
                          option="backends")
    return Proxy(options.pop("backends"), **options)


__all__ = ["Proxy", "Backend", "BackendError", "BALANCE", "HOP_BY_HOP", "app_factory"]
