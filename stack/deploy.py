"""Loading deployment files: PasteDeploy, with clear errors and ``${VAR}``.

:func:`load` and :func:`load_server` read a paste-style INI file through
PasteDeploy's own loader, so every file that works with ``loadapp`` (and so
under gunicorn ``--paste`` and pserve) works here, and adds what PasteDeploy
lacks:

- ``${VAR}`` and ``${VAR:-default}`` in values are replaced from the
  environment when the file is read (an empty variable counts as unset for
  ``:-``; ``$${`` writes a literal ``${``). A missing variable without a
  default is an error naming the place. Plain PasteDeploy loaders leave
  ``${...}`` as it is, so files meant for gunicorn or pserve too should not
  use it.
- Every error -- a missing section, an unknown ``egg:`` distribution or
  entry point, a factory's bad or unknown option, a syntax error -- becomes
  one :class:`~stack.errors.ConfigError` naming the file, the section, the
  line and the option, with "did you mean" and the list of what exists.
- A ``[DEFAULT]`` key silently overriding a section's own key (PasteDeploy
  drops the section's value unless it is written ``set key = ...``) gives a
  :class:`~stack.errors.ConfigWarning` naming both places.

>>> app = load("config/demo.ini", http_port="8080")
>>> server = load_server("config/demo.ini")
>>> server(app)
"""
from __future__ import annotations

import ast
import configparser
import importlib.metadata
import logging.config
import os
import re
import warnings
from pathlib import Path
from urllib.parse import unquote
from typing import Any, Callable

from paste.deploy import loadwsgi

from stack.errors import ConfigError, ConfigWarning, suggest
from stack.types import WSGIApp

_ENV_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECTION_LINE = re.compile(r"\[([^\]]+)\]")
_OPTION_IN_MESSAGE = re.compile(r"\boption '([^']+)'")
_OPTION_LINE = re.compile(r"([^\s=:#;\[][^=:]*?)\s*[=:]")


def expand_env(value: str, environ: Any = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in ``value``; ``$${`` is a literal ``${``.

    Raises :class:`KeyError` naming the variable when it is unset and has no
    default (the loader turns that into a located :class:`ConfigError`).
    """
    if "${" not in value:
        return value
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        found = env.get(name)
        if default is not None:
            return found if found else default
        if found is None:
            raise KeyError(name)
        return found

    return _ENV_VAR.sub(replace, value)


class _LineIndex:
    """Where each section and option starts in the file (ConfigParser forgets)."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, int] = {}
        self.options: dict[tuple[str, str], int] = {}
        section = "DEFAULT"
        for number, line in enumerate(text.splitlines(), start=1):
            match = _SECTION_LINE.match(line)
            if match:
                section = match.group(1).strip()
                self.sections.setdefault(section, number)
                continue
            match = _OPTION_LINE.match(line)
            if match:
                self.options.setdefault((section, match.group(1).strip()), number)

    def line(self, section: str | None, option: str | None = None) -> int | None:
        if section is None:
            return None
        if option is not None and (section, option) in self.options:
            return self.options[(section, option)]
        return self.sections.get(section)


class _Interpolation(loadwsgi.NicerConfigParser.InterpolateWrapper):
    """PasteDeploy's ``%(name)s`` interpolation, then ``${VAR}`` expansion."""

    def before_get(self, parser: Any, section: str, option: str, value: str, defaults: Any) -> str:
        try:
            value = self._original.before_get(parser, section, option, value, defaults)
        except configparser.Error as exc:
            raise ConfigError(
                f"bad %(...)s interpolation: {exc.message.splitlines()[0]}",
                option=option, section=section, filename=parser.filename,
                line=parser.lines.line(section, option)) from None
        try:
            return expand_env(value)
        except KeyError as exc:
            raise ConfigError(
                f"environment variable {exc.args[0]!r} is not set "
                f"(write ${{{exc.args[0]}:-default}} to give a default)",
                option=option, section=section, filename=parser.filename,
                line=parser.lines.line(section, option)) from None


class _Parser(loadwsgi.NicerConfigParser):
    """PasteDeploy's parser with ``${VAR}`` expansion and a line index."""

    def defaults(self) -> dict[str, str]:  # type: ignore[override]
        # PasteDeploy's falls back to the raw text when a value interpolates
        # to "" (so an empty ${VAR:-} would reach factories as written).
        raw = configparser.ConfigParser.defaults(self)
        return {key: self.get("DEFAULT", key) for key in raw}

    def __init__(self, filename: str, text: str, defaults: dict[str, str]) -> None:
        super().__init__(filename, defaults=defaults)
        self._interpolation = _Interpolation(self._interpolation._original)
        self.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
        self.lines = _LineIndex(text)
        try:
            self.read_string(text, source=filename)
        except configparser.Error as exc:
            raise _syntax_error(filename, exc) from None
        # What the file itself puts in [DEFAULT] (before any override).
        self._defaults_read = {key for key in self._defaults if key not in defaults}


def _syntax_error(filename: str, exc: configparser.Error) -> ConfigError:
    line = getattr(exc, "lineno", None)
    if isinstance(exc, configparser.ParsingError) and getattr(exc, "errors", None):
        line = exc.errors[0][0]
    message = exc.message.splitlines()[0]
    if isinstance(exc, configparser.DuplicateOptionError):
        message = f"option {exc.option!r} is given twice in [{exc.section}]"
    elif isinstance(exc, configparser.DuplicateSectionError):
        message = f"section [{exc.section}] is given twice"
    elif isinstance(exc, configparser.MissingSectionHeaderError):
        message = "the file must start with a [section] header"
    elif isinstance(exc, configparser.ParsingError) and getattr(exc, "errors", None):
        text = exc.errors[0][1]  # configparser keeps the line's repr
        try:
            text = repr(ast.literal_eval(text).strip())
        except (ValueError, SyntaxError):
            pass
        message = f"cannot read the line {text}: expected 'name = value' or a [section]"
    return ConfigError(message, filename=filename, line=line)


class _LocatedContext(loadwsgi.LoaderContext):
    """A loader context that names its section when its factory fails.

    ``where`` lists the sections it was built from, outermost first (a
    ``use = config:other.ini#name`` adds the other file's section): an
    error about an option names the section that gives that option.
    """

    where: list[tuple[_Parser, str]]

    def _place(self, option: str | None) -> tuple[_Parser, str]:
        for parser, section in self.where:
            if option is not None and option in parser._sections.get(section, {}):  # type: ignore[attr-defined]
                return parser, section
        return self.where[0]

    def create(self) -> Any:
        try:
            return super().create()
        except ConfigError as exc:
            if not exc.located:
                parser, section = self._place(exc.option)
                exc.locate(parser.filename, section, parser.lines.line(section, exc.option))
            raise
        except (TypeError, ValueError, LookupError, ImportError, AttributeError) as exc:
            named = _OPTION_IN_MESSAGE.search(str(exc))
            option = named.group(1) if named else None
            parser, section = self._place(option)
            if option is not None and option in parser._sections.get(section, {}):  # type: ignore[attr-defined]
                raise ConfigError(str(exc), option=option, section=section,
                                  filename=parser.filename,
                                  line=parser.lines.line(section, option)) from exc
            raise ConfigError(
                f"could not build it: {type(exc).__name__}: {exc}",
                section=section, filename=parser.filename,
                line=parser.lines.line(section, "use")) from exc


class _Loader(loadwsgi.ConfigLoader):
    """PasteDeploy's ConfigLoader, with our parser and our error messages."""

    def __init__(self, filename: str, overrides: dict[str, str] | None = None) -> None:
        path = os.path.abspath(filename)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {filename}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {filename}: {exc}") from None
        self.filename = path
        defaults = {"here": os.path.dirname(path), "__file__": path}
        self.parser = _Parser(path, text, defaults)
        self.overrides = dict(overrides or {})
        self.update_defaults(self.overrides, overwrite=True)
        self.text = text

    def get_context(self, object_type: Any, name: str | None = None,
                    global_conf: dict[str, Any] | None = None) -> Any:
        if self.absolute_name(name):
            return self._absolute_context(object_type, name, global_conf)
        section = self.find_config_section(object_type, name=name)
        self._warn_default_overrides(section)
        if section.startswith("pipeline:") and not self.parser.get(section, "pipeline",
                                                                    fallback="x").split():
            raise ConfigError("the pipeline is empty: list the filters, then the app",
                              option="pipeline", section=section, filename=self.filename,
                              line=self.parser.lines.line(section, "pipeline"))
        self._check_gets(section, global_conf)
        try:
            context = super().get_context(object_type, name, global_conf)
        except ConfigError as exc:
            exc.locate(self.filename, section, self.parser.lines.line(section, exc.option or "use"))
            raise
        except (LookupError, ImportError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{exc}", section=section, filename=self.filename,
                line=self.parser.lines.line(section, "use")) from exc
        if isinstance(context, _LocatedContext):  # built by a section of another file
            context.where.insert(0, (self.parser, section))
        else:
            context.__class__ = _LocatedContext
            context.where = [(self.parser, section)]
        return context

    def _check_gets(self, section: str, global_conf: dict[str, Any] | None) -> None:
        """``get key = NAME`` needs a global NAME; say so plainly when it is missing."""
        known = set(self.parser.defaults()) | set(global_conf or {})
        for option in self.parser.options(section):
            if option.startswith("get "):
                wanted = self.parser.get(section, option)
                if wanted not in known:
                    raise ConfigError(
                        f"{option!r} names the global {wanted!r}, which is not set in [DEFAULT] "
                        f"nor by an override; {suggest(wanted, known - {'here', '__file__'})}",
                        option=option, section=section, filename=self.filename,
                        line=self.parser.lines.line(section, option))

    def _absolute_context(self, object_type: Any, name: str, global_conf: Any) -> Any:
        scheme, _, spec = name.partition(":")
        scheme = scheme.lower()
        if scheme == "config":
            path, _, section_name = spec.partition("#")
            path = os.path.join(os.path.dirname(self.filename), unquote(path))
            loader = _Loader(path, self.overrides)
            if global_conf:
                loader.update_defaults(global_conf, overwrite=False)
            return loader.get_context(object_type, section_name or None, global_conf)
        if scheme == "egg":
            _check_entry_point(object_type, spec)
        return loadwsgi.loadcontext(object_type, name, relative_to=os.path.dirname(self.filename),
                                    global_conf=global_conf)

    def find_config_section(self, object_type: Any, name: str | None = None) -> str:
        try:
            return super().find_config_section(object_type, name=name)
        except LookupError as exc:
            if str(exc).startswith("Ambiguous"):
                found = [s for s in self.parser.sections() if s.partition(":")[2].strip()
                         == (name or "main") or s == name]
                raise ConfigError(f"ambiguous: {' and '.join(f'[{s}]' for s in found)} both "
                                  f"define {object_type.name} {name or 'main'!r}; rename one",
                                  filename=self.filename) from None
        prefixes = [p for group in object_type.config_prefixes for p in group]
        sections = [s for s in self.parser.sections() if s.split(":", 1)[0] in prefixes]
        wanted = name or "main"
        names = [s.split(":", 1)[1].strip() for s in sections if ":" in s]
        kinds = "/".join(f"[{p}:{wanted}]" for p in prefixes[:4])
        section, option = self._referrer(wanted)
        raise ConfigError(f"no {object_type.name} named {wanted!r} (looked for {kinds}); "
                          f"{suggest(wanted, names)}", filename=self.filename, section=section,
                          option=option, line=self.parser.lines.line(section, option))

    def _referrer(self, name: str) -> tuple[str | None, str | None]:
        """The section and option whose value names ``name`` (where a typo would be)."""
        for section in self.parser.sections():
            for option, value in self.parser._sections[section].items():  # type: ignore[attr-defined]
                if option != "use" and name in re.split(r"[\s,]+", str(value)):
                    return section, option
        return None, None

    def _warn_default_overrides(self, section: str) -> None:
        own = self.parser._sections.get(section, {})  # type: ignore[attr-defined]
        for key in own:
            if key.startswith(("set ", "get ")) or key not in self.parser._defaults:  # type: ignore[attr-defined]
                continue
            if key in ("here", "__file__"):
                where = "PasteDeploy's built-in variable"
            elif key in self.overrides:
                where = "a command-line/keyword override"
            else:
                where = f"[DEFAULT] (line {self.parser.lines.line('DEFAULT', key)})"
            warnings.warn(ConfigWarning(
                f"{self.filename}:{self.parser.lines.line(section, key)} [{section}] "
                f"option {key!r} is ignored: {where} sets {key!r} too, and PasteDeploy then "
                f"passes neither value to this section (the option's default applies); "
                f"take the global with 'get {key} = {key}', change it with 'set {key} = ...', "
                f"or rename one of them"), stacklevel=2)


def _check_entry_point(object_type: Any, spec: str) -> None:
    """Fail early, and clearly, for ``egg:DIST#NAME`` that cannot resolve."""
    dist_name, _, ep_name = spec.partition("#")
    dist_name = dist_name.split("[", 1)[0].strip()
    ep_name = ep_name or "main"
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"use = egg:{spec}: no installed distribution named {dist_name!r} "
                          f"(is it pip-installed in this environment?)") from None
    groups = {p for group in object_type.egg_protocols for p in group}
    names = {ep.name for ep in dist.entry_points if ep.group in groups}
    if ep_name not in names:
        elsewhere = sorted(ep.group for ep in dist.entry_points
                           if ep.name == ep_name and ep.group.startswith("paste."))
        kind = f" ({ep_name!r} is a {elsewhere[0]} entry point)" if elsewhere else ""
        raise ConfigError(f"use = egg:{spec}: {dist_name!r} has no {object_type.name} entry "
                          f"point named {ep_name!r}{kind}; {suggest(ep_name, names)}")


def _split_uri(config: str | os.PathLike[str], name: str | None) -> tuple[str, str]:
    uri = os.fspath(config)
    if uri.startswith("config:"):
        uri = uri[len("config:"):]
    path, _, fragment = uri.partition("#")
    return path, name or fragment or "main"


def _stringify(overrides: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in overrides.items()}


def load(config: str | os.PathLike[str], name: str | None = None, **overrides: Any) -> WSGIApp:
    """Build the WSGI app ``name`` (default ``main``) from a deployment file.

    ``config`` is a path, ``config:path``, ``path#name``, or a file-less
    ``egg:Dist#name``. ``overrides``
    replace ``[DEFAULT]`` variables, as ``key=value`` does on pserve's command
    line. Raises :class:`ConfigError` for anything wrong in the file.
    """
    if os.fspath(config).lower().startswith("egg:"):  # no file: straight to PasteDeploy
        _check_entry_point(loadwsgi.APP, os.fspath(config)[4:])
        return loadwsgi.loadapp(os.fspath(config), name=name, global_conf=_stringify(overrides))
    path, name = _split_uri(config, name)
    loader = _Loader(path, _stringify(overrides))
    context = loader.get_context(loadwsgi.APP, name, loader.overrides)
    return context.create()


def load_server(config: str | os.PathLike[str], name: str | None = None, *,
                server_options: dict[str, str] | None = None,
                **overrides: Any) -> Callable[[WSGIApp], Any]:
    """The server runner ``name`` from ``[server:name]``: call it with the app.

    ``server_options`` replace options of the server section itself (the
    CLI's ``--host``/``--port``); ``overrides`` replace ``[DEFAULT]`` variables.
    """
    path, _ = _split_uri(config, None)  # a #fragment names the app, not the server
    loader = _Loader(path, _stringify(overrides))
    context = loader.get_context(loadwsgi.SERVER, name or "main", loader.overrides)
    context.local_conf.update(server_options or {})
    return context.create()


def unused_overrides(config: str | os.PathLike[str], overrides: dict[str, Any]) -> list[str]:
    """The override names the file never reads: not in its ``[DEFAULT]``, no
    ``%(name)s``, no ``get … = name`` (likely typos on a command line; a factory
    reading ``global_conf`` directly could still use them)."""
    path, _ = _split_uri(config, None)
    loader = _Loader(path)
    return [key for key in overrides
            if key not in loader.parser._defaults_read and f"%({key})s" not in loader.text
            and not re.search(rf"^get\s+\S+\s*[=:]\s*{re.escape(key)}\s*$", loader.text, re.M)]


def sections(config: str | os.PathLike[str]) -> list[str]:
    """The section names of a deployment file, in order."""
    path, _ = _split_uri(config, None)
    return _Loader(path).parser.sections()


def setup_logging(config: str | os.PathLike[str], **overrides: Any) -> bool:
    """Configure :mod:`logging` from the file's ``[loggers]`` sections, as pserve does.

    ``%(here)s``, ``%(__file__)s`` and ``${VAR}`` work in those sections.
    Returns False (and changes nothing) when the file has no ``[loggers]``.
    """
    path, _ = _split_uri(config, None)
    loader = _Loader(path, _stringify(overrides))
    if not loader.parser.has_section("loggers"):
        return False
    try:
        logging.config.fileConfig(loader.parser, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"bad logging configuration: {type(exc).__name__}: {exc}",
                          filename=loader.filename,
                          line=loader.parser.lines.line("loggers")) from exc
    return True


__all__ = ["load", "load_server", "setup_logging", "sections", "expand_env", "unused_overrides"]
