"""Mount dispatch: stack's Mount against Paste's URLMap and Werkzeug's DispatcherMiddleware.

Each mounter gets N mounts ``/app0`` .. ``/app{N-1}`` (N = 10, 100, 1000) and
the same bare app behind every mount and as its not-found app, so every
request ends in the same app call. Requests: the first-registered mount, the
last-registered one, and a miss, each with two more path segments. Times are
ns per request including a fresh environ copy and the bare app call (the
``bare app`` row). ``stack+host`` is the same table plus one host-specific
mount, so host matching runs on every request.

    python benchmarks/bench_mount.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import bare_app, environ_for, ns_per_call, start_response, table  # noqa: E402

from stack.middleware.mount import Mount  # noqa: E402

SIZES = (10, 100, 1000)


def mounters(n: int) -> dict[str, object]:
    paths = [f"/app{i}" for i in range(n)]
    built: dict[str, object] = {
        "stack": Mount({path: bare_app for path in paths}, not_found_app=bare_app),
        "stack+host": Mount([*((path, bare_app) for path in paths),
                             ("//admin.example.com/x", bare_app)], not_found_app=bare_app),
    }
    try:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        built["werkzeug"] = DispatcherMiddleware(bare_app, {path: bare_app for path in paths})
    except ImportError:
        print("werkzeug is not installed: skipped (pip install -e .[bench])")
    try:
        from paste.urlmap import URLMap
        urlmap = URLMap(not_found_app=bare_app)
        for path in paths:
            urlmap[path] = bare_app
        built["paste"] = urlmap
    except ImportError:
        print("Paste is not installed: skipped (pip install -e .[bench])")
    return built


def timed(app, path: str, min_time: float) -> float:
    base = environ_for(path)
    return ns_per_call(lambda: app(base.copy(), start_response), min_time=min_time)


def main(argv: list[str]) -> int:
    min_time = 0.05 if "--quick" in argv else 0.2
    baseline = timed(bare_app, "/app0/a/b", min_time)
    rows = []
    results: dict[tuple[str, int, str], float] = {}
    for n in SIZES:
        apps = mounters(n)
        targets = {"first": "/app0/a/b", "last": f"/app{n - 1}/a/b", "miss": "/nothing/a/b"}
        for target, path in targets.items():
            row: list[object] = [n, target]
            for name, app in apps.items():
                results[(name, n, target)] = ns = timed(app, path, min_time)
                row.append(ns)
            stack = results[("stack", n, target)]
            row.append(_ratio(results.get(("werkzeug", n, target)), stack))
            row.append(_ratio(results.get(("paste", n, target)), stack))
            rows.append(row)
    names = list(mounters(1))
    print(table(f"ns per request (bare app alone: {baseline:,.0f} ns); ratio = other / stack",
                ["mounts", "target", *names, "werkzeug/stack", "paste/stack"], rows))
    print()
    for target in ("first", "last", "miss"):
        growth = results[("stack", 1000, target)] / results[("stack", 10, target)]
        print(f"stack {target}: 1000 mounts cost {growth:.2f}x what 10 do")
    return 0


def _ratio(other: float | None, stack: float) -> str:
    return "-" if other is None else f"{other / stack:,.2f}x"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
