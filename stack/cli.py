"""The ``stack`` command: serve, show and check a deployment file.

::

    stack serve site.ini [--app NAME] [--server NAME] [--host H] [--port P]
                         [--reload] [key=value ...]
    stack show site.ini  [--app NAME] [key=value ...]
    stack check site.ini [--app NAME] [--server NAME] [key=value ...]

``key=value`` pairs override ``[DEFAULT]`` variables, as with pserve.
Configuration errors print one clear line and exit 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from typing import Any, Callable, Sequence

from stack import deploy
from stack.errors import ConfigError, ConfigWarning, StackError
from stack.tree import format_tree, node_name, walk

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stack", description="Serve, show and check "
                                     "paste-style WSGI deployment files.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, server: bool) -> argparse.ArgumentParser:  # noqa: A002
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("config", metavar="CONFIG", help="the deployment file (.ini)")
        sub.add_argument("--app", "-n", default=None, metavar="NAME",
                         help="the app section to load (default: main)")
        if server:
            sub.add_argument("--server", "-s", default=None, metavar="NAME",
                             help="the [server:NAME] section to use (default: main, "
                             "or the bundled server if the file has none)")
        sub.add_argument("vars", nargs="*", metavar="key=value", default=[],
                         help="override a [DEFAULT] variable")
        return sub

    serve = command("serve", "load the app and serve it", server=True)
    serve.add_argument("--host", default=None, help=f"listen address (default {DEFAULT_HOST})")
    serve.add_argument("--port", "-p", type=int, default=None,
                       help=f"listen port (default {DEFAULT_PORT})")
    serve.add_argument("--reload", action="store_true",
                       help="restart when a Python file or the config changes (hupper)")
    command("show", "print the built tree: filters, mounts, routes, the server and their options",
            server=True)
    command("check", "load the app and server without serving; exit 1 on any error",
            server=True)
    return parser


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value after the config file, got {pair!r}")
        result[key.strip()] = value
    return result


def _has_server(config: str, name: str | None) -> bool:
    wanted = name or "main"
    for section in deploy.sections(config):
        prefix, _, rest = section.partition(":")
        if prefix == "server" and (rest.strip() or "main") == wanted:
            return True
    return False


def _load_server(args: argparse.Namespace, overrides: dict[str, str]) -> Callable[[Any], Any] | None:
    """The file's server runner, or None when it has none (use the bundled one)."""
    if args.server is None and not _has_server(args.config, None):
        return None
    options = {}
    if getattr(args, "host", None):
        options["host"] = args.host
    if getattr(args, "port", None) is not None:
        options["port"] = str(args.port)
    return deploy.load_server(args.config, args.server, server_options=options, **overrides)


def cmd_serve(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    if args.reload and not _in_reloader():
        import hupper

        hupper.start_reloader("stack.cli.main", worker_kwargs={"argv": sys.argv[1:]})
        return 0  # not reached: the monitor runs until interrupted
    if _in_reloader():
        import hupper

        hupper.get_reloader().watch_files([os.path.abspath(args.config)])
    if not deploy.setup_logging(args.config, **overrides):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    app = deploy.load(args.config, args.app, **overrides)
    runner = _load_server(args, overrides)
    if runner is not None:
        runner(app)
        return 0
    from stack.server import serve

    serve(app, host=args.host or DEFAULT_HOST, port=DEFAULT_PORT if args.port is None else args.port)
    return 0


def _in_reloader() -> bool:
    try:
        import hupper
    except ImportError:  # pragma: no cover - hupper is a dependency
        return False
    return hupper.is_active()


def cmd_show(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    app = deploy.load(args.config, args.app, **overrides)
    print(format_tree(app))
    runner = _load_server(args, overrides)
    if runner is not None:
        print(f"server {args.server or 'main'!r}: {describe_runner(runner)}")
    return 0


def describe_runner(runner: Any) -> str:
    """``module.function (option=value, ...)`` for a server runner built from a file."""
    func = getattr(runner, "func", runner)
    text = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    config = getattr(runner, "keywords", {}).get("config")
    if config is not None and dataclasses.is_dataclass(config):
        options = ", ".join(f"{f.name}={getattr(config, f.name)!r}"
                            for f in dataclasses.fields(config) if f.name != "secret")
        text += f" ({options})"
    elif getattr(runner, "keywords", None):
        text += " (" + ", ".join(f"{k}={v!r}" for k, v in runner.keywords.items()) + ")"
    return text


def cmd_check(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    app = deploy.load(args.config, args.app, **overrides)
    _check_logging(args.config, overrides)
    nodes = sum(1 for _ in walk(app))
    runner = _load_server(args, overrides)
    server = f"server {args.server or 'main'!r}" if runner else "the bundled server (no [server:main])"
    print(f"{args.config}: OK: app {args.app or 'main'!r} is {node_name(app)} "
          f"({nodes} node{'s' * (nodes != 1)}), served by {server}")
    return 0


def _check_logging(config: str, overrides: dict[str, str]) -> None:
    """Apply the file's [loggers] to find its errors now, then put logging back."""
    manager = logging.Logger.manager
    before = {name: (lg.level, list(lg.handlers), lg.propagate, lg.disabled)
              for name, lg in [("", logging.getLogger()), *manager.loggerDict.items()]
              if isinstance(lg, logging.Logger)}
    try:
        deploy.setup_logging(config, **overrides)
    finally:
        for name, lg in [("", logging.getLogger()), *list(manager.loggerDict.items())]:
            if not isinstance(lg, logging.Logger):
                continue
            level, handlers, propagate, disabled = before.get(name, (logging.NOTSET, [], True, False))
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled


COMMANDS = {"serve": cmd_serve, "show": cmd_show, "check": cmd_check}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``stack`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    # key=value pairs may come after options too (argparse would stop at them).
    args, extra = parser.parse_known_args(argv)
    unknown = [arg for arg in extra if arg.startswith("-")]
    if unknown:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    args.vars += extra
    with warnings.catch_warnings():
        warnings.simplefilter("default", category=ConfigWarning)
        warnings.showwarning = _show_warning
        try:
            overrides = _overrides(args.vars)
            for key in deploy.unused_overrides(args.config, overrides):
                warnings.warn(ConfigWarning(
                    f"{key}={overrides[key]!r} sets a variable {args.config} never uses "
                    f"(no [DEFAULT] {key}, no %({key})s, no 'get ... = {key}'): a typo?"))
            return COMMANDS[args.command](args, overrides)
        except StackError as exc:
            print(f"stack: error: {exc}", file=sys.stderr)
            return 1


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: Any = None) -> None:
    print(f"stack: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
