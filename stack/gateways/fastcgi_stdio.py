"""FastCGI on the process's own stdin: for web servers that start the app (IIS, mod_fcgid).

``python -m stack.gateways.fastcgi SITE.ini [--app NAME] [--server NAME] [key=value ...]``

Some front servers start the FastCGI process themselves instead of
connecting to one that listens. The FastCGI specification hands the
process its connection on file descriptor 0 (``FCGI_LISTENSOCK_FILENO``):

- **a listening socket** (Apache ``mod_fcgid``, ``spawn-fcgi``, lighttpd's
  ``bin-path``): served by the bundled server's loop and worker pool, as
  ``egg:stack#fastcgi`` serves its own socket;
- **anything else** is one connection (IIS's FastCGI module hands a named
  pipe as stdin): its records are read from fd 0 and the answers written
  back on fd 0 when it is open for writing (IIS's duplex pipe, a connected
  socket), else on fd 1 (a pair of ordinary pipes). Requests are served one
  after another on the main thread (``FCGI_MPXS_CONNS=0``);
  ``FCGI_KEEP_CONN`` is honoured (a request without it ends the process, as
  closing the connection would); the process ends at end of input.

The app comes from the deployment file (``--app``, default ``main``;
``key=value`` override ``[DEFAULT]`` variables, as on pserve's command
line). When the file's ``[server:NAME]`` (default ``main``) is an
``egg:stack#fastcgi`` section, its size limits and ``script_name`` apply
(on a listening socket also ``threads`` and the timeouts; a pipe is read
blocking, under the front server's own timeouts); its ``host``/``port`` do
not. Logging is set up from the file's ``[loggers]`` (stderr
otherwise); nothing but FastCGI records goes to stdout (``print()`` in an
app goes to stderr). A file that does not load is one line on stderr and
exit status 1.

IIS sends the whole URL path as ``PATH_INFO`` (and again as
``SCRIPT_NAME``); as wfastcgi does, the request path is taken from
``PATH_INFO`` and the IIS application's virtual path (``APPL_MD_PATH``)
becomes ``SCRIPT_NAME``. The Windows named-pipe transport is written to the
FastCGI specification and to what IIS's own Python host (wfastcgi) does;
the tests run it on Unix pipes and sockets.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import re
import socket
import sys
from functools import partial
from typing import Any, Sequence

from stack.gateways.base import GATEWAY_OPTIONS, PEER_GONE, ClientDisconnected
from stack.gateways.fastcgi_connection import FastCGIConfig, FastCGIConnection, Request
from stack.server.body import READ_SIZE
from stack.server.loop import Server
from stack.server.parser import ParseError
from stack.server.runner import Runner
from stack.server.task import FileWrapper
from stack.types import WSGIApp

log = logging.getLogger("stack.gateways")

_IIS_APP_PATH = re.compile(r"/LM/W\d+SVC/\d+/ROOT(/.*)?$", re.IGNORECASE)


# -- fd 0 as one connection ----------------------------------------------------------

@dataclasses.dataclass
class _Host:
    """What a connection asks of its server, for the one connection on stdin."""

    app: WSGIApp
    config: FastCGIConfig
    stopping: bool = False


class StdioConnection(FastCGIConnection):
    """The FastCGI connection on fd 0 (records in) and ``out_fd`` (records out).

    The record handling, ``STDIN`` reading, response writer and ``Exchange``
    are :class:`~stack.gateways.FastCGIConnection`'s; this class
    only swaps the socket for two file descriptors.
    """

    protocol = "fastcgi-stdio"

    def __init__(self, app: WSGIApp, config: FastCGIConfig, in_fd: int = 0,
                 out_fd: int = 1) -> None:
        # Not Connection.__init__: there is no socket to configure.
        self.server = _Host(app, config)  # type: ignore[assignment]
        self.config = config
        self.in_fd, self.out_fd = in_fd, out_fd
        self.fd = in_fd
        self.buffer = b""
        self.deadline = 0.0
        self.busy = self.closed = self.idle = False
        self.base_environ = {
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": config.ident or "stack",
            "wsgi.version": (1, 0), "wsgi.url_scheme": config.url_scheme,
            "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }
        self._begun: tuple[int, int] | None = None
        self._params: list[bytes] = []
        self._params_size = 0

    # -- I/O on the descriptors ------------------------------------------------------

    def read_more(self) -> bytes:
        """The next bytes from fd 0 (b"" at end of input)."""
        try:
            return os.read(self.in_fd, READ_SIZE * 4)
        except OSError as exc:
            raise ClientDisconnected(f"reading stdin: {exc}") from None

    def _recv_more(self) -> bytes:
        return self.read_more()

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.out_fd, view)
            except OSError as exc:
                if self.out_fd == self.in_fd and len(view) == len(data) and \
                        exc.errno in (errno.EBADF, errno.EACCES, errno.EPERM, errno.EINVAL):
                    self.out_fd = self._fallback_out()  # fd 0 is read-only after all
                    continue
                if isinstance(exc, PEER_GONE):
                    raise
                raise ConnectionResetError(f"writing FastCGI records: {exc}") from None
            view = view[written:]

    def _fallback_out(self) -> int:
        log.debug("fastcgi-stdio: fd 0 is not writable; answering on fd 1")
        return _private_stdout()

    def sendmsg(self, buffers: Any) -> None:
        self.sendall(b"".join(buffers))

    def reply(self, data: bytes) -> None:
        self.sendall(data)

    def reject(self, error: ParseError) -> None:
        log.warning("fastcgi: refused a request on stdin: %s (%s)", error, error.status)
        data = self.refuse(error)
        if data:
            try:
                self.sendall(data)
            except (OSError, *PEER_GONE):
                pass
        self.close()

    def close(self) -> None:
        self.closed = True

    # -- the request loop ---------------------------------------------------------------

    def handle(self, request: Request) -> bool:
        iis_paths(request.params)
        return super().handle(request)

    def run(self) -> int:
        """Serve requests until end of input; the process's exit status."""
        while True:
            try:
                request = self.take_request()
                if request is None:
                    data = self.read_more()
                    if data:
                        self.buffer += data
                        continue
                    if self.buffer or self._begun is not None:
                        log.warning("fastcgi: stdin ended in the middle of a %s",
                                    "request" if self._begun is not None else "record")
                        return 1
                    return 0
            except ParseError as exc:
                self.reject(exc)
                return 1
            except PEER_GONE as exc:
                log.info("fastcgi: the front server went away: %s", exc)
                return 1
            self.busy = True
            try:
                keep = self.handle(request)
            except Exception:  # a bug here must not pass silently
                log.exception("fastcgi: error while serving a request on stdin")
                return 1
            self.busy = False
            if not keep:
                # Without FCGI_KEEP_CONN (or after a refused body or an aborted
                # response) the connection closes: on stdin, the process ends.
                return 0


def iis_paths(params: dict[str, str]) -> None:
    """IIS's path variables in the CGI split the app expects (as wfastcgi does).

    IIS passes the whole URL path as ``PATH_INFO`` (and as ``SCRIPT_NAME``);
    the IIS application's virtual path, from ``APPL_MD_PATH``, is the mount
    point. Other front servers' params are left alone.

    >>> p = {"SERVER_SOFTWARE": "Microsoft-IIS/10.0", "SCRIPT_NAME": "/app/x",
    ...      "PATH_INFO": "/app/x", "APPL_MD_PATH": "/LM/W3SVC/1/ROOT/app"}
    >>> iis_paths(p); p["SCRIPT_NAME"], p["PATH_INFO"]
    ('/app', '/x')
    """
    if not params.get("SERVER_SOFTWARE", "").startswith("Microsoft-IIS/"):
        return
    path = params.get("PATH_INFO", "")
    if not path.startswith(params.get("SCRIPT_NAME", "")):
        return  # allowPathInfo mappings: IIS already split the path
    match = _IIS_APP_PATH.match(params.get("APPL_MD_PATH", ""))
    prefix = (match.group(1) or "").rstrip("/") if match else ""
    if prefix and (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
        params["SCRIPT_NAME"], params["PATH_INFO"] = path[:len(prefix)], path[len(prefix):]
    else:
        params["SCRIPT_NAME"] = ""


def serve_stdio(app: WSGIApp, config: FastCGIConfig | None = None, *,
                in_fd: int = 0, out_fd: int | None = None) -> int:
    """Serve the FastCGI connection on ``in_fd``; returns the exit status.

    ``out_fd`` None: ``in_fd`` itself if it is open for writing, else a
    private copy of fd 1. Either way fd 1 and ``sys.stdout`` then point at
    stderr, so nothing but records reaches the front server.
    """
    if out_fd is None:
        out_fd = _choose_out(in_fd)
    _binary(in_fd, out_fd)
    return StdioConnection(app, config or FastCGIConfig(), in_fd, out_fd).run()


_stdout_copy: int | None = None
_stdout_taken = False


def _private_stdout() -> int:
    """A copy of fd 1 for the records (OSError if there is no fd 1)."""
    _take_stdout()
    if _stdout_copy is None:
        raise OSError(errno.EBADF, "stdin is read-only and there is no stdout to answer on")
    return _stdout_copy


def _take_stdout() -> None:
    """Keep a copy of fd 1, then point fd 1 and ``sys.stdout`` at stderr (once)."""
    global _stdout_copy, _stdout_taken
    if _stdout_taken:
        return
    _stdout_taken = True
    try:
        _stdout_copy = os.dup(1)
    except OSError:  # no stdout handle (possible under IIS)
        _stdout_copy = None
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr either: stray output goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    sys.stdout = sys.stderr


def _choose_out(in_fd: int) -> int:
    """Where the records go: ``in_fd`` when it is writable, else fd 1's copy."""
    _take_stdout()
    return in_fd if _writable(in_fd) else _private_stdout()


def _writable(fd: int) -> bool:
    """Is ``fd`` open for writing (a socket, a duplex pipe)? Unknown counts as yes."""
    try:
        import fcntl
    except ImportError:  # Windows: IIS's pipe is duplex; a failed write falls back to fd 1
        return True
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except OSError:
        return False


def _binary(*fds: int) -> None:
    try:
        import msvcrt
    except ImportError:
        return
    for fd in fds:
        try:
            msvcrt.setmode(fd, os.O_BINARY)
        except OSError:
            pass


# -- fd 0 as a listening socket --------------------------------------------------------

def listening_socket(fd: int = 0) -> socket.socket | None:
    """``fd`` as a socket if it is a listening stream socket, else None (fd untouched)."""
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None  # not a socket (or Windows, where fd 0 is not a SOCKET)
    try:
        listening = probe.type == socket.SOCK_STREAM and \
            probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0
    except OSError:
        listening = False
    if not listening:
        probe.close()
        return None
    return probe


class InheritedServer(Server):
    """The bundled server's loop and pool on a listening socket it was handed."""

    def __init__(self, app: WSGIApp, config: FastCGIConfig, sock: socket.socket) -> None:
        super().__init__(app, config, connection_class=FastCGIConnection, sock=sock)

    @property
    def url(self) -> str:
        return "inherited socket " + super().url.split("://", 1)[-1]


#: Signals, the start-up line and the loop, as for ``egg:stack#fastcgi``.
_INHERITED = Runner(FastCGIConfig, GATEWAY_OPTIONS, __name__, connection_class=FastCGIConnection,
                    gateway="FastCGI")


# -- the command line ---------------------------------------------------------------------

def _config(path: str, server_name: str, overrides: dict[str, str]) -> FastCGIConfig:
    """The ``[server:…]`` section's options when it is ``egg:stack#fastcgi``, else defaults."""
    from stack import deploy

    if f"server:{server_name}" not in deploy.sections(path):
        return FastCGIConfig()
    runner = deploy.load_server(path, server_name, **overrides)
    config = runner.keywords.get("config") if isinstance(runner, partial) else None
    if isinstance(config, FastCGIConfig):
        return config
    log.debug("fastcgi: [server:%s] is not egg:stack#fastcgi; default options", server_name)
    return FastCGIConfig()


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stack.gateways.fastcgi",
        description="Serve a deployment file over FastCGI on stdin (IIS, mod_fcgid, spawn-fcgi).")
    parser.add_argument("config", help="the deployment file")
    parser.add_argument("--app", default=None, help="the [app:…]/[composite:…] to serve (main)")
    parser.add_argument("--server", default="main",
                        help="the [server:…] whose FastCGI options apply, if it is one (main)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="[DEFAULT] variables, as on pserve's command line")
    args = parser.parse_args(argv)
    for item in args.overrides:
        if "=" not in item:
            parser.error(f"expected key=value, got {item!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m stack.gateways.fastcgi`` entry point; returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    listener = listening_socket(0)
    out_fd: int | None = None
    if listener is None:
        # Before anything can print: stdout is the front server's from here on.
        out_fd = _choose_out(0)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    from stack import deploy

    try:
        if not deploy.setup_logging(args.config, **overrides):
            logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
        config = _config(args.config, args.server, overrides)
        app = deploy.load(args.config, args.app, **overrides)
    except Exception as exc:  # whatever the file or an app factory raised: one line
        log.debug("loading %s failed", args.config, exc_info=True)
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"stack: cannot load {args.config!r}: {message}", file=sys.stderr, flush=True)
        if listener is not None:
            listener.close()
        return 1
    if listener is None:
        log.info("fastcgi: serving the connection on stdin (pid %d)", os.getpid())
        try:
            return serve_stdio(app, config, in_fd=0, out_fd=out_fd)
        except KeyboardInterrupt:
            return 0
    _INHERITED.run(InheritedServer(app, config, listener))
    return 0


__all__ = ["StdioConnection", "InheritedServer", "serve_stdio", "listening_socket", "iis_paths", "main"]
