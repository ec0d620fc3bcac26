"""Running a server: bind, take the stop signals, say where, serve until stopped.

The bundled HTTP server and the FastCGI, SCGI and AJP gateways are one loop
(:class:`stack.server.loop.Server`) with a different config class and
connection class, so they are started the same way. A protocol module
describes itself once with a :class:`Runner` and exports its functions::

    RUNNER = Runner(SCGIConfig, OPTIONS, __name__, connection_class=SCGIConnection,
                    gateway="SCGI")
    make_server, serve, server_factory, _serve_config = RUNNER.functions()

which gives every protocol the same four entry points: ``make_server(app,
**options)`` (bound, not started), ``serve(app, **options)`` (until SIGTERM
or SIGINT), the PasteDeploy ``server_factory`` (options converted by the
protocol's INI table and checked when the file loads, so ``stack check``
finds a bad one) and ``_serve_config``, what that factory's result calls.

Python (the same for ``stack.server`` and every gateway)::

    server = make_server(app, port=0)      # bound, not started
    threading.Thread(target=server.serve_forever).start()
    server.shutdown()

INI: every ``[server:…]`` section that names ``egg:stack#http``, ``#fastcgi``,
``#scgi`` or ``#ajp`` goes through a runner's ``server_factory``::

    [server:main]
    use = egg:stack#http
"""
from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable, Mapping

from stack.errors import ConfigError
from stack.options import Converter, convert_options
from stack.server.loop import Server, install_signal_handlers
from stack.types import WSGIApp


def config_from_ini(cls: type, local_conf: Mapping[str, Any], table: Mapping[str, Converter]) -> Any:
    """``cls(**options)`` from a ``[server:…]`` section's strings, converted by ``table``.

    An unknown name is a :class:`~stack.errors.ConfigError` listing the known
    ones; a value the class refuses is one too (an
    :class:`~stack.errors.OptionError` passes through as it is).
    """
    options = convert_options(local_conf, table)
    try:
        return cls(**options)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Runner:
    """How one protocol is served.

    - ``config_class``: its options (a frozen dataclass with ``from_options``);
    - ``options``: its INI table (name -> converter from :mod:`stack.options`);
    - ``module``: the protocol module's ``__name__``, where :meth:`functions`
      puts the entry points;
    - ``connection_class``: the server's connection class for the protocol
      (None: the bundled HTTP server's);
    - ``gateway``: the protocol's name for the start-up line; empty for the
      HTTP server, which prints ``stack: serving on URL`` on stdout. A gateway
      prints ``stack: NAME gateway on ADDRESS`` on stderr (a CGI's or a
      FastCGI-on-stdin process's stdout belongs to the front server).
    """

    def __init__(self, config_class: type, options: Mapping[str, Converter], module: str, *,
                 connection_class: type | None = None, gateway: str = "") -> None:
        self.config_class = config_class
        self.options = options
        self.module = module
        self.connection_class = connection_class
        self.gateway = gateway
        self._entry: Callable[..., None] = self.serve_config

    # -- the four entry points ---------------------------------------------------------

    def make_server(self, app: WSGIApp, **options: Any) -> Server:
        """Bind a {what} for ``app`` without starting it (``.serve_forever()`` runs it).

        ``options`` are :class:`{config}` fields (``host``, ``port``, ``threads``,
        timeouts in seconds, limits in bytes); an unknown one is a TypeError naming it.
        """
        return self.bind(app, self.config_class.from_options(options))

    def serve(self, app: WSGIApp, *, ready: threading.Event | None = None, **options: Any) -> None:
        """Serve ``app`` as a {what} until SIGTERM/SIGINT (or ``server.shutdown()``).

        ``options`` are :class:`{config}` fields; ``ready`` is set once it listens.
        """
        self.run(self.make_server(app, **options), ready)

    def server_factory(self, global_conf: dict[str, Any], **local_conf: str) -> Callable[[WSGIApp], None]:
        """PasteDeploy ``paste.server_factory`` for a {what}.

        Options are converted and checked when the file is loaded (so
        ``stack check`` catches a typo); the returned callable serves an app.
        """
        config = config_from_ini(self.config_class, local_conf, self.options)
        return functools.partial(self._entry, config=config)

    def serve_config(self, app: WSGIApp, *, config: Any, ready: threading.Event | None = None) -> None:
        """Serve ``app`` as a {what} with a checked ``config`` (what ``server_factory`` returns calls)."""
        self.run(self.bind(app, config), ready)

    # -- the steps ---------------------------------------------------------------------

    def bind(self, app: WSGIApp, config: Any, **server_options: Any) -> Server:
        """A :class:`~stack.server.loop.Server` for the protocol, listening (``sock=``: on that socket)."""
        if self.connection_class is not None:
            server_options["connection_class"] = self.connection_class
        return Server(app, config, **server_options)

    def run(self, server: Server, ready: threading.Event | None = None) -> None:
        """Take SIGTERM/SIGINT, print the start-up line, serve until stopped."""
        install_signal_handlers(server)
        self.announce(server)
        if ready is not None:
            ready.set()
        server.serve_forever()

    def announce(self, server: Server) -> None:
        """The one start-up line: where the server listens."""
        if self.gateway:
            where = server.url.split("://", 1)[-1]  # a gateway's address has no scheme
            print(f"stack: {self.gateway} gateway on {where}", file=sys.stderr, flush=True)
        else:
            print(f"stack: serving on {server.url}", flush=True)

    def functions(self) -> tuple[Callable[..., Any], ...]:
        """``make_server, serve, server_factory, _serve_config`` as functions of ``module``.

        Plain functions with the protocol's name in their docstrings, so
        ``help()`` and ``stack show`` (which names ``_serve_config`` as what a
        ``[server:…]`` section runs) speak of the protocol's module.
        """
        exported = tuple(self._export(method, name) for method, name in (
            (self.make_server, "make_server"), (self.serve, "serve"),
            (self.server_factory, "server_factory"), (self.serve_config, "_serve_config")))
        self._entry = exported[-1]
        return exported

    def _export(self, method: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def function(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        what = f"{self.gateway} gateway" if self.gateway else "bundled HTTP server"
        function.__module__ = self.module
        function.__name__ = function.__qualname__ = name
        function.__doc__ = (method.__doc__ or "").format(what=what, config=self.config_class.__name__)
        return function

    def __repr__(self) -> str:
        return f"<Runner {self.module} ({self.config_class.__name__})>"


__all__ = ["Runner", "config_from_ini"]
