"""The server's options: one table for keyword arguments, INI and the CLI.

Each option has a converter from :mod:`stack.options` and a default; the
Python API takes typed values (seconds, bytes), INI strings go through the
converters (``500ms``, ``64KB``), and an unknown name is an error listing the
known ones.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Mapping

from stack.errors import ConfigError, suggest
from stack.options import as_choice, as_duration, as_int, as_size, as_str, convert_options


@dataclass(frozen=True)
class ServerConfig:
    """Every option of the bundled server, with its default.

    - ``host``/``port``: where to listen (``port = 0`` picks a free port and
      logs it; an IPv6 address like ``::1`` listens on IPv6).
    - ``unix_socket``: listen on this unix socket path instead.
    - ``threads``: worker threads running the app.
    - ``connection_limit``: open connections at most; beyond, new ones wait
      in the listen ``backlog``.
    - ``header_timeout``: a request head must arrive within this (slowloris).
    - ``keepalive_timeout``: an idle persistent connection is closed after it.
    - ``body_timeout`` / ``send_timeout``: the longest wait for one read of
      the request body / one write of the response.
    - ``shutdown_timeout``: on SIGTERM/SIGINT, in-flight requests get this long.
    - ``max_request_line`` (414), ``max_request_header_size`` and
      ``max_header_count`` (431), ``max_request_body_size`` (413).
    - ``url_scheme``: ``wsgi.url_scheme`` (``https`` behind a TLS terminator).
    - ``ident``: the ``Server`` header (empty to leave it out).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    unix_socket: str = ""
    threads: int = 8
    connection_limit: int = 1000
    backlog: int = 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    max_request_line: int = 8192
    max_request_header_size: int = 65536
    max_header_count: int = 100
    max_request_body_size: int = 1024**3
    url_scheme: str = "http"
    ident: str = "stack"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "str" and type(value) is not str:
                raise ValueError(f"{item.name}: expected a str, got {value!r}")
            if item.type == "int" and (type(value) is not int or value < 0):
                raise ValueError(f"{item.name}: expected a non-negative int, got {value!r}")
            if item.type == "float" and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{item.name}: expected a positive number of seconds, got {value!r}")
        if self.port > 65535:
            raise ValueError(f"port: expected 0..65535, got {self.port}")
        if self.threads < 1 or self.connection_limit < 1:
            raise ValueError("threads and connection_limit must be at least 1")
        if self.url_scheme not in ("http", "https"):
            raise ValueError(f"url_scheme: expected http or https, got {self.url_scheme!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ServerConfig":
        """Build from keyword arguments, naming an unknown one."""
        known = {item.name for item in fields(cls)}
        for name in options:
            if name not in known:
                raise TypeError(f"unknown server option {name!r}; {suggest(name, known)}")
        return cls(**options)


_durations = partial(as_duration, minimum=0.001)

OPTIONS = {
    "host": as_str,
    "port": partial(as_int, minimum=0, maximum=65535),
    "unix_socket": as_str,
    "threads": partial(as_int, minimum=1, maximum=1024),
    "connection_limit": partial(as_int, minimum=1),
    "backlog": partial(as_int, minimum=1),
    "header_timeout": _durations,
    "keepalive_timeout": _durations,
    "body_timeout": _durations,
    "send_timeout": _durations,
    "shutdown_timeout": _durations,
    "max_request_line": partial(as_size, minimum=64),
    "max_request_header_size": partial(as_size, minimum=256),
    "max_header_count": partial(as_int, minimum=1),
    "max_request_body_size": as_size,
    "url_scheme": partial(as_choice, choices=("http", "https")),
    "ident": as_str,
}


def config_from_ini(local_conf: Mapping[str, str]) -> ServerConfig:
    """Convert a ``[server:…]`` section's strings (unknown names rejected)."""
    try:
        return ServerConfig(**convert_options(local_conf, OPTIONS))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None

