"""gunicorn's corpus of raw requests, fed to the running server over a socket.

``../shared/conformance/gunicorn-requests/`` (beside the repository) holds
gunicorn's ``tests/requests/{valid,invalid}`` data: a ``.http`` file with the
raw bytes (escaped, see ``NOTICE.md``) and a ``.py`` file with the expected
parse. The ``.py`` files import gunicorn names, so they are never executed
or imported: :func:`read_expectation` evaluates them with a small ``ast``
walker that knows literals, ``uri(...)``, ``Config()``/``cfg.set(...)``,
names bound earlier in the file, and ``str``/``bytes``
``.decode/.encode/.replace``.

Each file goes to a live server whose app echoes its environ as JSON:

- valid: every request in the file reaches the app with the expected method,
  path (percent-decoded, latin-1), query, headers and body;
- invalid: a 4xx (5xx only for 501/505) or a close, never a 2xx, never an
  error logged by the server; and the server answers a normal request after.

The server runs with gunicorn's limits translated (:data:`LIMITS`:
``limit_request_line`` -> ``max_request_line`` and so on, gunicorn's defaults
where a file sets none). A file whose only fault is a missing ``Host`` is run
again with one added (the ``+host`` tests), so the rest of it is checked too.

Where we are deliberately stricter than gunicorn, or do not offer one of its
compatibility options, :data:`DIFFERENCES` says what we do instead and why;
everything else must match gunicorn's expectation.
"""
from __future__ import annotations

import ast
import json
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote_to_bytes
from wsgiref.validate import validator

import pytest
from support import REQUIRE_EXTERNAL, ROOT

from stack.server import make_server

CORPUS = Path(ROOT).parent / "shared" / "conformance" / "gunicorn-requests"
TIMEOUT = 5.0  # the longest wait for any one socket operation


# -- reading the corpus ------------------------------------------------------------

_ESCAPE = re.compile(rb"\\(?:x([0-9A-Fa-f]{2})|([rnt0]))")
_SIMPLE = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0"}


def read_http(path: Path) -> bytes:
    """The raw request bytes of a ``.http`` file (real newlines are layout only)."""
    text = path.read_bytes().replace(b"\n", b"")

    def unescape(match: re.Match[bytes]) -> bytes:
        if match.group(1) is not None:
            return bytes([int(match.group(1), 16)])
        return _SIMPLE[match.group(2)]

    return _ESCAPE.sub(unescape, text)


class ErrorName(str):
    """A gunicorn exception class named by an invalid file's expectation."""


class Uri(str):
    """The ``uri("...")`` of an expectation: the raw request target."""


class _Config(dict):
    """What ``Config()`` becomes: the settings a file asks for."""


class ExpectationError(ValueError):
    """The ``.py`` file uses something the restricted evaluator does not know."""


_METHODS = {"decode", "encode", "replace"}


def read_expectation(path: Path) -> tuple[Any, dict[str, Any]]:
    """(``request`` value, gunicorn config settings) of a ``.py`` expectation file.

    Evaluated with :mod:`ast` only: nothing in the file runs.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: dict[str, Any] = {}
    config = _Config()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = ErrorName(alias.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = _evaluate(node.value, names, config)
        elif isinstance(node, ast.Expr):
            _evaluate(node.value, names, config)
        else:
            raise ExpectationError(f"{path.name}: unsupported statement {ast.dump(node)[:80]}")
    if "request" not in names:
        raise ExpectationError(f"{path.name}: no 'request' in the file")
    return names["request"], dict(config)


def _evaluate(node: ast.AST, names: dict[str, Any], config: _Config) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(item, names, config) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        if None in node.keys:
            raise ExpectationError("'**' in a dict is not supported")
        return {_evaluate(k, names, config): _evaluate(v, names, config)  # type: ignore[arg-type]
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ExpectationError(f"unknown name {node.id!r}")
        return names[node.id]
    if isinstance(node, ast.Call):
        return _call(node, names, config)
    raise ExpectationError(f"unsupported expression {ast.dump(node)[:80]}")


def _call(node: ast.Call, names: dict[str, Any], config: _Config) -> Any:
    args = [_evaluate(arg, names, config) for arg in node.args]
    if node.keywords:
        raise ExpectationError("keyword arguments are not supported")
    func = node.func
    if isinstance(func, ast.Name):
        if func.id == "uri" and len(args) == 1 and isinstance(args[0], str):
            return Uri(args[0])
        if func.id == "Config" and not args:
            return config
        raise ExpectationError(f"unsupported call {func.id}()")
    if isinstance(func, ast.Attribute):
        owner = _evaluate(func.value, names, config)
        if owner is config and func.attr == "set" and len(args) == 2:
            config[args[0]] = args[1]
            return None
        if isinstance(owner, (str, bytes)) and func.attr in _METHODS \
                and all(isinstance(arg, (str, bytes)) for arg in args):
            return getattr(owner, func.attr)(*args)
    raise ExpectationError(f"unsupported call {ast.dump(func)[:80]}")


def corpus_files(kind: str) -> list[str]:
    folder = CORPUS / kind
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.http"))


def expected_requests(kind: str, name: str) -> tuple[Any, dict[str, Any]]:
    request, config = read_expectation(CORPUS / kind / f"{name}.py")
    return (request if isinstance(request, list) else [request]), config


# -- where we deliberately differ from gunicorn -------------------------------------

NO_HOST = ("an HTTP/1.1 request without Host gets 400 (RFC 9112 §3.2: a server MUST); "
           "the '+host' variant checks the rest of the file")
PROXY = "we do not speak the PROXY protocol (a proxy_protocol option gunicorn has): 400"
FOLD = "obs-fold is refused (RFC 9112 §5.2); permit_obsolete_folding is not offered"
CODINGS = ("transfer codings other than chunked are not decoded: 501 (RFC 9112 §6.1); "
           "gunicorn passes gzip/identity through undecoded")
UNDERSCORE = ("header_map=refuse is not offered: names with '_' are dropped (issue 3), "
              "which is gunicorn's default")
FRAGMENT = "'#' is not allowed in a request target (RFC 9112 §3.2 origin-form): 400"

#: name -> (outcome, reason). Outcomes: "ok" (requests reach the app as gunicorn
#: expects), "reject" (4xx/close), "close" (no answer, the connection closes),
#: or the status of the last response (earlier requests of the file must still
#: match; a 200 there is not compared further: the reason says what differs).
#: "NAME+host" is the file with a ``Host`` field added after each HTTP/1.1
#: request line.
DIFFERENCES: dict[str, tuple[str | int, str]] = {
    **{f"valid/{name}": (400, NO_HOST) for name in (
        "004", "005", "006", "007", "009", "010", "011", "012", "013", "014", "018", "021",
        "022", "023", "025", "025_line", "029", "030", "031", "031compat", "031compat2", "100")},
    "valid/005+host": (400, FRAGMENT),
    "valid/009+host": (400, FRAGMENT + "; Content-Length with Transfer-Encoding is refused too"),
    "valid/012+host": (400, "a Content-Type trailer is refused (RFC 9110 §6.5.1: content "
                            "format fields cannot be trailers); gunicorn accepts it"),
    "valid/025+host": (501, CODINGS),
    "valid/025_line+host": (501, CODINGS),
    "valid/029+host": (501, CODINGS),
    "valid/030+host": (501, CODINGS),
    "valid/031compat+host": (200, "casefold_http_method is not offered: methods are "
                                  "case-sensitive (RFC 9110 §9.1), the app sees '-blargh'"),
    "valid/028": (400, "whitespace before the colon is refused (RFC 9112 §5.1: MUST); "
                       "strip_header_spaces is not offered"),
    "valid/040_compat": ("ok", "header_map=dangerous is not offered: names with '_' are "
                               "always dropped, so the app sees only Content-Length"),
    "valid/099": ("close", "the file's body is 8,599 bytes, its Content-Length 17,914: the "
                           "body ends with the connection, which is a client gone away, not "
                           "a request (gunicorn's harness reads to EOF and compares that)"),
    "valid/compat_obs_fold": (400, FOLD),
    "valid/compat_obs_fold_huge": (400, FOLD),
    "valid/pp_01": (400, PROXY),
    "valid/pp_02": (400, PROXY),
    "valid/pp_04": (400, PROXY),
    "valid/pp_05": (400, PROXY),
    "valid/rfc9112_smuggle_gzip_chunked_01": (501, CODINGS),
    "valid/rfc9112_smuggle_te_identity_chunked_01": (501, CODINGS),
    "invalid/040": (200, UNDERSCORE + " (valid/040 is the same request)"),
    "invalid/chunked_07+host": (200, UNDERSCORE + ": Transfer_Encoding never reaches the "
                                     "framing, the body is read as chunked"),
    "invalid/003c+host": (200, "'-bl' is a token, so a valid method (RFC 9110 §9.1); gunicorn "
                               "refuses methods outside its uppercase convention"),
    "invalid/019+host": (200, "X-Forwarded-* are not interpreted by the server (ProxyFix-style "
                              "middleware does that), so they cannot conflict"),
}

#: gunicorn's limits (its defaults when a file sets none; 0 means the default).
LIMITS = {
    "limit_request_line": ("max_request_line", 4094),
    "limit_request_fields": ("max_header_count", 100),
    "limit_request_field_size": ("max_request_header_size", 8190),
}
#: The status we answer for each gunicorn error; anything else must be 400.
STATUSES = {
    "LimitRequestLine": {414},
    "LimitRequestHeaders": {431},
    "InvalidHTTPVersion": {400, 505},
}


def server_options(config: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """Our options for gunicorn's settings (limits; the rest is in DIFFERENCES)."""
    return tuple((ours, config.get(theirs) or default) for theirs, (ours, default) in LIMITS.items())


def add_host(data: bytes, requests: list[dict[str, Any]] | None = None) -> bytes:
    """``data`` with ``Host: stack.test`` after each HTTP/1.1 request line.

    With ``requests`` (a valid file) the lines are found from the expectations,
    which get the field too; otherwise the first line is the request line.
    """
    field = b"Host: stack.test\r\n"
    if requests is None:
        end = data.find(b"\n") + 1
        return data[:end] + field + data[end:]
    lowered, pos, out = data.lower(), 0, []
    for request in requests:
        line = f"{request['method']} {request['uri']} HTTP/".lower().encode("latin-1")
        start = lowered.find(line, pos)
        assert start != -1, f"request line {line!r} not found"
        end = data.find(b"\n", start) + 1
        out.append(data[pos:end])
        if request["version"] == (1, 1):
            out.append(field)
            request["headers"] = [*request["headers"], ("HOST", "stack.test")]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def needs_host(data: bytes) -> bool:
    first_line = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    return first_line.rstrip(b"\r").endswith(b"HTTP/1.1") and not re.search(
        rb"\nhost[ \t]*:", data, re.I)


# -- the app, the server, the wire ---------------------------------------------------

_VALIDATED_METHODS = {"GET", "HEAD", "POST", "OPTIONS", "PATCH", "PUT", "DELETE", "TRACE"}


def environ_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """JSON of what the app saw: method, path, query, protocol, fields, whole body."""
    chunks = []
    while True:
        chunk = environ["wsgi.input"].read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    data = {
        "method": environ["REQUEST_METHOD"],
        "path_info": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "protocol": environ["SERVER_PROTOCOL"],
        "fields": {key: value for key, value in environ.items()
                   if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")},
        "body": b"".join(chunks).decode("latin-1"),
    }
    payload = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(payload)))])
    return [payload]


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """:func:`environ_echo`, under ``wsgiref.validate`` where it applies.

    The validator warns about methods outside its short list (``CONNECT``,
    ``-BLARGH``) and refuses the ``*`` of ``OPTIONS *`` as ``PATH_INFO``;
    those requests reach the echo directly.
    """
    if environ["REQUEST_METHOD"] in _VALIDATED_METHODS and environ["PATH_INFO"] != "*":
        return validator(environ_echo)(environ, start_response)
    return environ_echo(environ, start_response)


def require_corpus() -> None:
    """Skip without the corpus (a plain clone); fail if STACK_REQUIRE_EXTERNAL=1."""
    if not CORPUS.is_dir():
        message = f"the conformance corpus is not at {CORPUS} (a plain clone)"
        if REQUIRE_EXTERNAL:
            pytest.fail(message + " and STACK_REQUIRE_EXTERNAL=1")
        pytest.skip(message)


@pytest.fixture(scope="module")
def servers() -> Iterator[Any]:
    """``address = servers(options)``: one live server per set of options."""
    require_corpus()
    started: dict[tuple, Any] = {}

    def get(options: tuple[tuple[str, int], ...]) -> tuple[str, int]:
        if options not in started:
            server = make_server(app, host="127.0.0.1", port=0, threads=4, **dict(options))
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            started[options] = (server, thread)
        return started[options][0].server_address[:2]

    yield get
    for server, thread in started.values():
        server.shutdown()
        thread.join(timeout=10)
        server.close()
        assert not thread.is_alive(), "the server did not stop"


def exchange(address: tuple[str, int], data: bytes) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """Send ``data``, half-close, read to the end: (responses, unparsed rest)."""
    received = []
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before it has read everything
        deadline = time.monotonic() + 2 * TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received.append(chunk)
        else:
            pytest.fail(f"the server neither answered nor closed within {2 * TIMEOUT}s")
    return parse_responses(b"".join(received))


def parse_responses(data: bytes) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """Split a byte stream into (status, lowercase headers, body) responses."""
    responses = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end == -1:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        data = data[end + 4:]
        if 100 <= status < 200:
            continue
        if "content-length" in headers:
            size = int(headers["content-length"])
            body, data = data[:size], data[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body, data = _dechunk(data)
        else:
            body, data = data, b""
        responses.append((status, headers, body))
    return responses, data


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = []
    while True:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")
            return b"".join(body), data
        body.append(data[:size])
        data = data[size + 2:]


def expected_environ(request: dict[str, Any]) -> dict[str, Any]:
    """What :func:`environ_echo` reports for one of gunicorn's expected requests."""
    target = str(request["uri"])
    if request["method"] == "CONNECT" or target == "*":
        path, query = ("" if target != "*" else "*"), ""
    else:
        target = re.sub(r"^[a-zA-Z]+://[^/?#]*", "", target) or "/"
        target = target.split("#", 1)[0]
        path, _, query = target.partition("?")
        path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    fields: dict[str, str] = {}
    for name, value in request["headers"]:
        if "_" in name:
            continue  # dropped: it would collide with '-' in the environ
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    body = request["body"]
    return {
        "method": request["method"], "path_info": path, "query": query,
        "protocol": "HTTP/%d.%d" % request["version"], "fields": fields,
        "body": body.decode("latin-1") if isinstance(body, bytes) else body,
    }


# -- the tests -----------------------------------------------------------------------


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if the server logged an error (an app crash, a broken worker)."""
    caplog.set_level(logging.INFO, logger="stack.server")
    yield
    errors = [record for record in caplog.records
              if record.name.startswith("stack.server") and record.levelno >= logging.ERROR]
    assert not errors, "the server logged: " + "; ".join(r.getMessage() for r in errors)


def check_still_serving(address: tuple[str, int]) -> None:
    # Small enough for the tightest limits a file sets (10 bytes of fields).
    responses, _ = exchange(address, b"GET /after?ok=1 HTTP/1.1\r\nHost: s\r\n\r\n")
    assert [status for status, _, _ in responses] == [200], "the server stopped answering"
    assert json.loads(responses[0][2])["path_info"] == "/after"


def check_valid(address: tuple[str, int], data: bytes, requests: list[dict[str, Any]],
                outcome: str | int, reason: str) -> None:
    responses, rest = exchange(address, data)
    assert rest == b"", f"an incomplete response: {rest[:200]!r}"
    statuses = [status for status, _, _ in responses]
    if outcome == "ok":
        assert statuses == [200] * len(requests), f"statuses {statuses}"
    elif outcome == "close":
        assert statuses == [], f"expected no answer ({reason}), got {statuses}"
    else:
        assert statuses and statuses[-1] == outcome, f"expected {outcome} ({reason}), got {statuses}"
        assert all(status == 200 for status in statuses[:-1]), statuses
        requests = requests[:len(statuses) - 1]
    for request, (_, _, body) in zip(requests, responses):
        assert json.loads(body) == expected_environ(request)


def check_invalid(address: tuple[str, int], data: bytes, error: str,
                  outcome: str | int, reason: str) -> None:
    responses, rest = exchange(address, data)
    assert rest == b"", f"an incomplete response: {rest[:200]!r}"
    statuses = [status for status, _, _ in responses]
    if outcome != "reject":
        assert statuses[:1] == [outcome], f"expected {outcome} ({reason}), got {statuses}"
        return
    if not statuses:
        return  # closed without an answer: the request never completed
    assert len(statuses) == 1, f"more than one answer to a bad request: {statuses}"
    assert statuses[0] in STATUSES.get(error, {400}), f"{error} answered {statuses[0]}"
    assert responses[0][1].get("connection") == "close"


VALID = corpus_files("valid")
INVALID = corpus_files("invalid")
VALID_NO_HOST = [name for name in VALID if DIFFERENCES.get(f"valid/{name}", ("", ""))[1] == NO_HOST]
INVALID_NO_HOST = [name for name in INVALID if needs_host(read_http(CORPUS / "invalid" / f"{name}.http"))]


@pytest.mark.usefixtures("server_errors")
@pytest.mark.parametrize("name", VALID or ["(no corpus)"], ids=str)
def test_valid_request(servers: Any, name: str) -> None:
    requests, config = expected_requests("valid", name)
    address = servers(server_options(config))
    outcome, reason = DIFFERENCES.get(f"valid/{name}", ("ok", ""))
    check_valid(address, read_http(CORPUS / "valid" / f"{name}.http"), requests, outcome, reason)
    check_still_serving(address)


@pytest.mark.usefixtures("server_errors")
@pytest.mark.parametrize("name", VALID_NO_HOST or ["(no corpus)"], ids=str)
def test_valid_request_given_a_host(servers: Any, name: str) -> None:
    requests, config = expected_requests("valid", name)
    address = servers(server_options(config))
    data = add_host(read_http(CORPUS / "valid" / f"{name}.http"), requests)
    outcome, reason = DIFFERENCES.get(f"valid/{name}+host", ("ok", ""))
    check_valid(address, data, requests, outcome, reason)
    check_still_serving(address)


@pytest.mark.usefixtures("server_errors")
@pytest.mark.parametrize("name", INVALID or ["(no corpus)"], ids=str)
def test_invalid_request(servers: Any, name: str) -> None:
    error, config = read_expectation(CORPUS / "invalid" / f"{name}.py")
    address = servers(server_options(config))
    outcome, reason = DIFFERENCES.get(f"invalid/{name}", ("reject", ""))
    check_invalid(address, read_http(CORPUS / "invalid" / f"{name}.http"), error, outcome, reason)
    check_still_serving(address)


@pytest.mark.usefixtures("server_errors")
@pytest.mark.parametrize("name", INVALID_NO_HOST or ["(no corpus)"], ids=str)
def test_invalid_request_given_a_host(servers: Any, name: str) -> None:
    """Refused for its own fault, not only for the missing ``Host``."""
    error, config = read_expectation(CORPUS / "invalid" / f"{name}.py")
    address = servers(server_options(config))
    data = add_host(read_http(CORPUS / "invalid" / f"{name}.http"))
    outcome, reason = DIFFERENCES.get(f"invalid/{name}+host", ("reject", ""))
    check_invalid(address, data, error, outcome, reason)
    check_still_serving(address)


def test_every_difference_names_a_corpus_file() -> None:
    require_corpus()
    for key in DIFFERENCES:
        kind, _, name = key.partition("/")
        name = name.removesuffix("+host")
        assert (CORPUS / kind / f"{name}.http").is_file(), key


def test_the_evaluator_refuses_code(tmp_path: Path) -> None:
    """Anything beyond data in an expectation file is an error, never run."""
    for source in ("import os\nrequest = 1", "request = open('x')", "request = (lambda: 1)()",
                   "request = __import__('os').system('true')", "request = [x for x in 'ab']", "request = {**{}}"):
        path = tmp_path / "evil.py"
        path.write_text(source)
        with pytest.raises(ExpectationError):
            read_expectation(path)
