"""The server: listening socket, event loop, worker pool, shutdown.

One thread runs the loop: it accepts, reads request heads from connections
that wait for one, enforces ``header_timeout``/``keepalive_timeout``, caps
open connections, and hands a connection with a complete head to a worker.
Workers run the app (apps block) and give the connection back when it is
idle again. The loop uses ``epoll`` with one-shot registration, so a worker
re-arms a connection with one system call and no wake-up of the loop; other
platforms get :mod:`selectors` and a wake-up pipe.

Graceful stop (:meth:`Server.shutdown`, SIGTERM, SIGINT): stop accepting,
close idle connections, let in-flight requests finish for up to
``shutdown_timeout``, then close what is left.
"""
from __future__ import annotations

import logging
import os
import queue
import select
import socket
import threading
import time
from typing import Any

from stack.errors import ListenError
from stack.server.config import ServerConfig
from stack.server.connection import Connection, timeval
from stack.server.parser import ParseError
from stack.server.task import ErrorsStream, FileWrapper
from stack.types import WSGIApp

log = logging.getLogger("stack.server")

_SWEEP_INTERVAL = 0.25
_HAS_EPOLL = hasattr(select, "epoll")
_ONESHOT = (select.EPOLLIN | select.EPOLLONESHOT | select.EPOLLRDHUP) if _HAS_EPOLL else 0


def bind(config: ServerConfig) -> socket.socket:
    """The listening socket for ``config`` (TCP over IPv4/IPv6, or unix)."""
    if config.unix_socket:
        if os.path.exists(config.unix_socket):
            os.unlink(config.unix_socket)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(config.unix_socket)
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {config.unix_socket}: {exc.strerror or exc}") from exc
    else:
        host = config.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, config.port))
        except OSError as exc:
            sock.close()
            raise ListenError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    sock.listen(config.backlog)
    sock.setblocking(False)
    return sock


class Server:
    """The bundled HTTP/1.1 server for one WSGI app.

    >>> server = Server(app, ServerConfig(port=0))
    >>> threading.Thread(target=server.serve_forever).start()
    >>> server.url
    'http://127.0.0.1:43117'
    >>> server.shutdown()
    """

    def __init__(self, app: WSGIApp, config: ServerConfig | None = None, *,
                 connection_class: type[Connection] = Connection,
                 sock: socket.socket | None = None) -> None:
        """``sock``: a listening socket to serve instead of binding one (handed
        over by a process manager, e.g. FastCGI's socket on fd 0)."""
        self.app = app
        self.config = config or ServerConfig()
        self.connection_class = connection_class
        if sock is None:
            self.socket = bind(self.config)
        else:
            sock.setblocking(False)
            self.socket = sock
        self.stopping = False
        self._stopped = threading.Event()
        self._conns: dict[int, Connection] = {}
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._accepting = True
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._base_environ = self._make_base_environ()
        # Per-connection socket settings, computed once.
        self.is_tcp = self.socket.family in (socket.AF_INET, socket.AF_INET6)
        self.socket_timeouts = (timeval(self.config.body_timeout), timeval(self.config.send_timeout))
        self._poller: Any = select.epoll() if _HAS_EPOLL else None
        self._selector: Any = None
        self._returned: queue.SimpleQueue[Connection] = queue.SimpleQueue()

    # -- addresses and environ ----------------------------------------------------

    @property
    def server_address(self) -> Any:
        return self.socket.getsockname()

    @property
    def url(self) -> str:
        if self.socket.family == socket.AF_UNIX:
            return f"unix:{self.server_address or '(unnamed)'}"
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{self.config.url_scheme}://{host}:{port}"

    def _make_base_environ(self) -> dict[str, Any]:
        if self.socket.family == socket.AF_UNIX:
            name, port = "localhost", "80"
        else:
            name, port = self.server_address[0], str(self.server_address[1])
        return {
            "SERVER_NAME": name, "SERVER_PORT": port, "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": self.config.ident or "stack",
            "wsgi.version": (1, 0), "wsgi.url_scheme": self.config.url_scheme,
            "wsgi.errors": ErrorsStream(), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": FileWrapper,
        }

    def environ_for(self, addr: Any) -> dict[str, Any]:
        environ = dict(self._base_environ)
        if isinstance(addr, tuple):
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
        else:
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = "unix", ""
        return environ

    # -- the loop -----------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run until :meth:`shutdown`; returns after a graceful stop."""
        for number in range(self.config.threads):
            worker = threading.Thread(target=self._work, name=f"stack-worker-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._register(self.socket.fileno())
        self._register(self._wake_r.fileno(), oneshot=False)
        log.info("stack server listening on %s (%d threads)", self.url, self.config.threads)
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        try:
            while not self.stopping:
                for fd in self._poll(_SWEEP_INTERVAL):
                    self._event(fd)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_INTERVAL
                if not self._accepting and len(self._conns) < self.config.connection_limit:
                    self._accepting = True
                    self._rearm(self.socket.fileno())
        finally:
            self._drain()

    def _register(self, fd: int, oneshot: bool = True) -> None:
        if self._poller is not None:
            events = _ONESHOT if oneshot else select.EPOLLIN
            if fd == self.socket.fileno():
                events = select.EPOLLIN | select.EPOLLONESHOT
            self._poller.register(fd, events)
        else:
            import selectors

            if self._selector is None:
                self._selector = selectors.DefaultSelector()
            self._selector.register(fd, selectors.EVENT_READ)

    def _rearm(self, fd: int) -> None:
        if self._poller is not None:
            events = select.EPOLLIN | select.EPOLLONESHOT
            self._poller.modify(fd, events if fd == self.socket.fileno() else _ONESHOT)

    def _poll(self, timeout: float) -> list[int]:
        if self._poller is not None:
            try:
                return [fd for fd, _ in self._poller.poll(timeout)]
            except InterruptedError:
                return []
        ready = [key.fd for key, _ in self._selector.select(timeout)]
        while True:  # connections handed back by workers (no one-shot mode here)
            try:
                conn = self._returned.get_nowait()
            except queue.Empty:
                break
            if not conn.closed:
                self._selector.register(conn.fd, 1)
        return ready

    def _event(self, fd: int) -> None:
        if fd == self.socket.fileno():
            self._accept()
        elif fd == self._wake_r.fileno():
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        else:
            conn = self._conns.get(fd)
            if conn is not None and not conn.busy:
                self._read(conn)

    def _accept(self) -> None:
        limit = self.config.connection_limit
        for _ in range(64):
            if len(self._conns) >= limit:
                self._accepting = False  # the rest wait in the backlog
                log.warning("connection limit %d reached; new connections wait", limit)
                return
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. EMFILE: wait for a connection to close
                log.error("accept failed: %s", exc)
                break
            conn = self.connection_class(self, sock, addr)
            conn.deadline = time.monotonic() + self.config.header_timeout
            self._conns[conn.fd] = conn
            self._register(conn.fd)
        self._rearm(self.socket.fileno())

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._watch(conn)
            return
        except OSError:
            data = b""
        if not data:
            conn.close()
            return
        conn.buffer += data
        try:
            request = conn.take_request()
        except ParseError as exc:
            conn.reject(exc)
            return
        except Exception:  # a bug with one connection must not stop the loop
            log.exception("error reading a request; closing that connection")
            conn.close()
            return
        if request is None:
            if conn.idle and conn.request_started():  # header_timeout runs from here, once
                conn.idle = False
                conn.deadline = time.monotonic() + self.config.header_timeout
            self._watch(conn)
            return
        conn.busy = True
        if self._selector is not None:
            self._selector.unregister(conn.fd)
        self._jobs.put((conn, request))

    def _watch(self, conn: Connection) -> None:
        if self._poller is not None:
            self._poller.modify(conn.fd, _ONESHOT)

    def _sweep(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if not conn.busy and now > conn.deadline:
                log.debug("closing a connection idle past its timeout")
                conn.close()

    # -- called from workers --------------------------------------------------------

    def wait_for_request(self, conn: Connection) -> None:
        """A worker is done with ``conn``: the loop waits for its next request."""
        conn.deadline = time.monotonic() + self.config.keepalive_timeout
        conn.idle = True
        conn.busy = False
        if self._poller is not None:
            try:
                self._poller.modify(conn.fd, _ONESHOT)
            except (OSError, ValueError):
                conn.close()
        else:
            self._returned.put(conn)
            self._wake_w.send(b"x")

    def forget(self, conn: Connection) -> None:
        """Drop ``conn`` from the tables (before its socket closes)."""
        if self._conns.pop(conn.fd, None) is not None:
            try:
                if self._poller is not None:
                    self._poller.unregister(conn.fd)
                elif self._selector is not None and not conn.busy:
                    self._selector.unregister(conn.fd)
            except (OSError, KeyError, ValueError):
                pass

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            conn.serve(request)

    # -- stopping ---------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop gracefully (callable from any thread or a signal handler)."""
        self.stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; True if it did."""
        return self._stopped.wait(timeout)

    def _drain(self) -> None:
        try:
            if self._poller is not None:
                self._poller.unregister(self.socket.fileno())
        except (OSError, ValueError):
            pass
        self.socket.close()
        if self.config.unix_socket and os.path.exists(self.config.unix_socket):
            os.unlink(self.config.unix_socket)
        deadline = time.monotonic() + self.config.shutdown_timeout
        while True:
            for conn in list(self._conns.values()):
                if not conn.busy:
                    conn.close()
            if not self._conns or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        for conn in list(self._conns.values()):
            log.warning("closing a connection still busy after shutdown_timeout")
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + 2.0  # one grace period for all, not one each
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._poller is not None:
            self._poller.close()
        self._wake_r.close()
        self._wake_w.close()
        self._stopped.set()
        log.info("stack server stopped")

    def server_close(self) -> None:
        """Release the listening socket of a server that never ran (wsgiref's name)."""
        self.close()

    def close(self) -> None:
        """Release the listening socket of a server that never ran."""
        if not self._stopped.is_set():
            self.socket.close()
            self._wake_r.close()
            self._wake_w.close()
            if self._poller is not None:
                self._poller.close()
            self._stopped.set()


def install_signal_handlers(server: Server) -> None:
    """SIGTERM and SIGINT stop ``server`` gracefully (main thread only)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: Any) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
