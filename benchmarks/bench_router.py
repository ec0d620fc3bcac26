"""Router dispatch: stack's Router against Werkzeug's Map and Routes' Mapper.

Each router gets N routes (N = 10, 100, 1000) in a REST shape: for resource
K, ``/resourceK/{id:int}/sub``, ``/resourceK/{id:int}`` and ``/resourceK``
(GET), registered in that order, so the first and the last route are both
two-parameter-deep patterns. Requests: the first-registered route, the
last-registered one, and a miss (``/resource0/42/nope``). Every router ends
in the same bare app (its not-found app too), and every row is ns per
request including a fresh environ copy and that app call (the ``bare app``
line):

- ``stack``: ``Router.__call__`` (named routes, so it also sets the
  ``url_for`` context; sets ``wsgiorg.routing_args`` and the route name).
- ``werkzeug``: ``url_map.bind_to_environ(environ).match()`` per request, as
  Werkzeug apps do, then the app.
- ``wz-bound``: a ``MapAdapter`` bound once, ``adapter.match(path, method)``
  per request (less than a real app does; the most generous anchor).
- ``routes``: ``Mapper.routematch(environ=environ)`` with method conditions.

    python benchmarks/bench_router.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import bare_app, environ_for, ns_per_call, start_response, table  # noqa: E402

from stack.middleware.router import Router  # noqa: E402

SIZES = (10, 100, 1000)


def shapes(n: int) -> list[tuple[str, str]]:
    """``(stack pattern, werkzeug rule)`` for the first ``n`` routes."""
    out = []
    for index in range(n):
        k, kind = divmod(index, 3)
        out.append([(f"/resource{k}/{{id:int}}/sub", f"/resource{k}/<int:id>/sub"),
                    (f"/resource{k}/{{id:int}}", f"/resource{k}/<int:id>"),
                    (f"/resource{k}", f"/resource{k}")][kind])
    return out


def request_paths(n: int) -> dict[str, str]:
    last = shapes(n)[-1][0].replace("{id:int}", "42")
    return {"first": "/resource0/42/sub", "last": last, "miss": "/resource0/42/nope"}


def routers(n: int) -> dict[str, Callable]:
    routes = shapes(n)
    built: dict[str, Callable] = {
        "stack": Router([("GET", pattern, bare_app, f"route{index}")
                         for index, (pattern, _rule) in enumerate(routes)],
                        not_found_app=bare_app),
    }
    try:
        built.update(_werkzeug(routes))
    except ImportError:
        print("werkzeug is not installed: skipped (pip install -e .[bench])")
    try:
        built["routes"] = _routes([pattern for pattern, _rule in routes])
    except ImportError:
        print("Routes is not installed: skipped (pip install -e .[bench])")
    return built


def _werkzeug(routes: list[tuple[str, str]]) -> dict[str, Callable]:
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map, Rule

    url_map = Map([Rule(rule, endpoint=rule, methods=["GET"]) for _pattern, rule in routes])
    apps = {rule: bare_app for _pattern, rule in routes}
    adapter = url_map.bind("www.example.com")

    def werkzeug_app(environ: dict, start_response: Callable) -> Any:
        try:
            endpoint, args = url_map.bind_to_environ(environ).match()
        except HTTPException:
            return bare_app(environ, start_response)
        environ["wsgiorg.routing_args"] = ((), args)
        return apps[endpoint](environ, start_response)

    def bound_app(environ: dict, start_response: Callable) -> Any:
        try:
            endpoint, args = adapter.match(environ["PATH_INFO"], environ["REQUEST_METHOD"])
        except HTTPException:
            return bare_app(environ, start_response)
        environ["wsgiorg.routing_args"] = ((), args)
        return apps[endpoint](environ, start_response)

    return {"werkzeug": werkzeug_app, "wz-bound": bound_app}


def _routes(patterns: list[str]) -> Callable:
    from routes import Mapper

    mapper = Mapper()
    mapper.minimization = False
    for pattern in patterns:
        mapper.connect(pattern, pattern.replace("{id:int}", "{id}"), requirements={"id": r"\d+"},
                       conditions={"method": ["GET"]}, app=bare_app)

    def routes_app(environ: dict, start_response: Callable) -> Any:
        found = mapper.routematch(environ=environ)
        if found is None:
            return bare_app(environ, start_response)
        match, route = found
        environ["wsgiorg.routing_args"] = ((), match)
        return match["app"](environ, start_response)

    return routes_app


def timed(app: Callable, path: str, min_time: float) -> float:
    base = environ_for(path)
    return ns_per_call(lambda: app(base.copy(), start_response), min_time=min_time)


def check(apps: dict[str, Callable], paths: dict[str, str]) -> None:
    """Every router must agree on what matched (the miss reaches the bare app too)."""
    for name, app in apps.items():
        for target, path in paths.items():
            environ = environ_for(path)
            app(environ, start_response)
            args = environ.get("wsgiorg.routing_args", ((), {}))[1]
            expected = {} if target == "miss" else {"id": 42}
            got = {key: int(value) for key, value in args.items() if key == "id"}
            if got != expected:
                raise SystemExit(f"{name} {target} {path}: got {args!r}, expected {expected!r}")


def main(argv: list[str]) -> int:
    min_time = 0.05 if "--quick" in argv else 0.2
    baseline = timed(bare_app, "/resource0/42/sub", min_time)
    rows = []
    results: dict[tuple[str, int, str], float] = {}
    names: list[str] = []
    for n in SIZES:
        apps, paths = routers(n), request_paths(n)
        check(apps, paths)
        names = list(apps)
        for target, path in paths.items():
            row: list[object] = [n, target]
            for name, app in apps.items():
                results[(name, n, target)] = ns = timed(app, path, min_time)
                row.append(ns)
            stack = results[("stack", n, target)]
            row += [_ratio(results.get((other, n, target)), stack)
                    for other in ("werkzeug", "wz-bound", "routes")]
            rows.append(row)
    print(table(f"ns per request (bare app alone: {baseline:,.0f} ns); ratio = other / stack",
                ["routes", "target", *names, "werkzeug/stack", "wz-bound/stack",
                 "routes/stack"], rows))
    print()
    for target in ("first", "last", "miss"):
        growth = results[("stack", 1000, target)] / results[("stack", 10, target)]
        print(f"stack {target}: 1000 routes cost {growth:.2f}x what 10 do")
    return 0


def _ratio(other: float | None, stack: float) -> str:
    return "-" if other is None else f"{other / stack:,.2f}x"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
