"""Walk a built WSGI tree and describe it (what ``stack show`` prints).

The walk uses the objects themselves, not the INI text: a middleware's
wrapped app is ``.app`` (``.application`` for some third-party filters), and
a node that dispatches to several apps (a mount table, a router, a cascade)
exposes ``children()`` yielding ``(label, app)`` pairs. A node's options are
its class's keyword-only ``__init__`` parameters, read back from attributes of
the same name (or with a leading underscore).

>>> print(format_tree(load("config/demo.ini")))
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Iterator

_MISSING = object()


def node_name(obj: Any) -> str:
    """``module.Qualname`` of a class instance, function or method."""
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def node_options(obj: Any) -> dict[str, Any]:
    """The keyword-only options of ``obj``'s class, as the object holds them now."""
    if inspect.isroutine(obj):
        return {}
    try:
        params = inspect.signature(type(obj).__init__).parameters.values()
    except (TypeError, ValueError):
        return {}
    options = {}
    for param in params:
        if param.kind is param.POSITIONAL_OR_KEYWORD and param.name not in ("self", "app"):
            value = getattr(obj, param.name, getattr(obj, "_" + param.name, _MISSING))
            if isinstance(value, (str, int, float, os.PathLike)):  # e.g. Static's directory
                options[param.name] = value
            continue
        if param.kind is not param.KEYWORD_ONLY:
            continue
        value = getattr(obj, param.name, _MISSING)
        if value is _MISSING:
            value = getattr(obj, "_" + param.name, _MISSING)
        if value is not _MISSING and not callable(value):
            options[param.name] = value
    return options


def node_children(obj: Any) -> list[tuple[str, Any]]:
    """``(label, app)`` pairs below ``obj``: its ``children()``, else its ``.app``."""
    children = getattr(obj, "children", None)
    if callable(children) and not inspect.isclass(obj):
        return [(str(label), app) for label, app in children()]
    for attr in ("app", "application"):
        inner = getattr(obj, attr, None)
        if inner is not None and callable(inner) and inner is not obj:
            return [("", inner)]
    return []


def walk(obj: Any, depth: int = 0, label: str = "",
         seen: set[int] | None = None) -> Iterator[tuple[int, str, Any]]:
    """Yield ``(depth, label, node)`` for ``obj`` and everything below it."""
    seen = set() if seen is None else seen
    yield depth, label, obj
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for child_label, child in node_children(obj):
        yield from walk(child, depth + 1, child_label, seen)


def format_tree(app: Any) -> str:
    """An indented text picture of the tree, one node per line."""
    lines = []
    for depth, label, node in walk(app):
        options = ", ".join(f"{k}={_show(v)}" for k, v in node_options(node).items())
        text = node_name(node) + (f" ({options})" if options else "")
        prefix = "  " * depth + (f"{label} -> " if label else "")
        lines.append(prefix + text)
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, logging.Logger):
        return repr(value.name)  # its configured level is noise here
    return repr(value)


__all__ = ["node_name", "node_options", "node_children", "walk", "format_tree"]
