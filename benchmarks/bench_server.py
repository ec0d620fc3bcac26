"""stack's HTTP/1.1 server against waitress, gunicorn, cheroot and bjoern, with wrk.

Run: ``python benchmarks/bench_server.py`` (``--quick``: 2 s per wrk run
instead of 5 s, one round; ``--rounds N``; ``--only stack,waitress`` to run
some contenders).

Each contender runs as its own process on 127.0.0.1 serving the same app
(``benchmarks/_servers.py``), pinned to core 1 (``taskset -c 1``); ``wrk``
runs on core 0 with one thread. A contender whose package is not installed
is skipped with a note (bjoern needs ``libev-dev`` to build). Contenders
with their defaults: stack (8 threads), waitress (4 threads), gunicorn with
one sync worker and with one gthread worker of 4 threads, cheroot (10
threads), bjoern (a C server: the ceiling).

Scenarios:

- ``keep-alive c10`` / ``keep-alive c100``: hello world with Content-Length,
  persistent connections: req/s and p99 latency (``wrk --latency``);
- ``close c10``: the same with ``Connection: close`` on every request;
- ``stream 4MiB``: 4 MiB in 64 KiB chunks from a generator, no
  Content-Length, 4 connections: MB/s (10^6 bytes, from wrk's Transfer/sec);
- ``file 100MB``: a 100 MB temp file through ``wsgi.file_wrapper``, 4
  connections: MB/s.

wrk reads 8 KiB at a time on one core, so the two streaming scenarios can
be client-bound (its CPU% near 100): there the server CPU seconds spent
per GB sent is the fairer figure, and it is printed beside MB/s.

In full mode every contender is measured twice (the order reversed the
second time) and its best run is kept: the machine is shared and noisy.
Every table prints the CPU the server's processes and wrk used during the
run (% of one core: a client near 100 is the limit, not the server), wrk's
errors (socket errors, non-2xx answers), and the ratio to waitress (and,
for the streams, to the best pure-Python contender). Every process started is stopped (SIGTERM to its
process group, then SIGKILL) whatever happens, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import HOST, command  # noqa: E402
from _timing import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, WRK_CORE = "1", "0"
FILE_SIZE = 100 * 1000 * 1000
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
CLIENT_BOUND = 85   # wrk CPU% from which wrk, not the server, sets the pace

# name -> (module that must be importable, pure Python?)
CONTENDERS: dict[str, tuple[str, bool]] = {
    "stack": ("stack.server", True),
    "waitress": ("waitress", True),
    "gunicorn-sync": ("gunicorn", True),
    "gunicorn-gthread": ("gunicorn", True),
    "cheroot": ("cheroot", True),
    "bjoern": ("bjoern", False),
}


@dataclass
class Scenario:
    key: str
    title: str
    path: str
    connections: int
    headers: tuple[str, ...] = ()
    throughput: bool = False   # report MB/s rather than req/s + p99


SCENARIOS = [
    Scenario("ka10", "keep-alive, 10 connections (hello world)", "/", 10),
    Scenario("ka100", "keep-alive, 100 connections (hello world)", "/", 100),
    Scenario("close10", "Connection: close, 10 connections (hello world)", "/", 10,
             ("Connection: close",)),
    Scenario("stream", "4 MiB streamed in 64 KiB chunks, no Content-Length, 4 connections",
             "/stream", 4, throughput=True),
    Scenario("file", "100 MB file through wsgi.file_wrapper, 4 connections", "/file", 4,
             throughput=True),
]


@dataclass
class Result:
    requests: int = 0
    rps: float = 0.0
    p99_ms: float | None = None
    bytes_per_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    failed: str = ""           # why there are no numbers
    server_cpu: float = 0.0    # % of one core the server's processes used during the run
    wrk_cpu: float = 0.0       # % of one core wrk used (100 = the client is the limit)

    @property
    def mbps(self) -> float:
        return self.bytes_per_s / 1e6

    def error_text(self) -> str:
        if self.failed:
            return self.failed
        return ", ".join(f"{k} {v}" for k, v in self.errors.items() if v) or "-"


# -- processes --------------------------------------------------------------------

class Process:
    """A child in its own process group; ``stop()`` ends the whole group."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # both rounds
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # whatever is left of the group (gunicorn's worker)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"  warning: process {self.pid} did not exit after SIGKILL", file=sys.stderr)
        self._log.close()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)  # the group this child leads (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + line for line in text[-lines:])


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in group ``pgid`` (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:   # fields after "(comm)": state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])   # utime stime
    return total / _TICK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_ready(proc: Process, port: int) -> str:
    """Poll ``GET /`` until it answers 200; return '' or why it never did."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            return f"exited with status {proc.popen.returncode}"
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if response.status == 200 and body == b"Hello, World!":
                return ""
            last = f"answered {response.status} {body[:60]!r}"
        except OSError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.1)
    return f"not ready after {READY_TIMEOUT:.0f}s ({last})"


# -- wrk --------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(text: str) -> Result:
    result = Result()
    match = re.search(r"(\d+) requests in", text)
    result.requests = int(match.group(1)) if match else 0
    match = re.search(r"Requests/sec:\s*([\d.]+)", text)
    result.rps = float(match.group(1)) if match else 0.0
    match = re.search(r"Transfer/sec:\s*([\d.]+)([KMGT]?B)", text)
    if match:
        result.bytes_per_s = float(match.group(1)) * _SIZES[match.group(2)]
    match = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if match:
        result.p99_ms = float(match.group(1)) * _UNITS[match.group(2)]
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        for name, value in zip(("connect", "read", "write", "timeout"), match.groups()):
            result.errors[name] = int(value)
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if match:
        result.errors["non-2xx"] = int(match.group(1))
    if not result.requests:
        result.failed = "no complete request"
    return result


def run_wrk(port: int, scenario: Scenario, seconds: float, log: Path, pgid: int = 0) -> Result:
    argv = ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{scenario.connections}",
            f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    for header in scenario.headers:
        argv += ["-H", header]
    argv.append(f"http://{HOST}:{port}{scenario.path}")
    server_before = group_cpu_seconds(pgid) if pgid else 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_before = usage.ru_utime + usage.ru_stime
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return Result(failed="wrk did not finish")
    elapsed = time.monotonic() - started
    server_used = group_cpu_seconds(pgid) - server_before if pgid else 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_used = usage.ru_utime + usage.ru_stime - wrk_before
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        return Result(failed=f"wrk exit {done.returncode}: {done.stderr.strip()[:80]}")
    result = parse_wrk(done.stdout)
    result.server_cpu = 100 * server_used / elapsed
    result.wrk_cpu = 100 * wrk_used / elapsed
    return result


# -- the run ----------------------------------------------------------------------

def available(only: set[str] | None) -> tuple[list[str], list[str]]:
    names, notes = [], []
    for name, (module, _) in CONTENDERS.items():
        if only is not None and name not in only:
            continue
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if found:
            names.append(name)
        else:
            hint = " (pip install bjoern; needs libev-dev)" if name == "bjoern" else ""
            notes.append(f"{name}: skipped, {module} is not installed{hint}")
    return names, notes


def measure(name: str, seconds: float, tmp: Path, env: dict[str, str]) -> dict[str, Result]:
    port = free_port()
    argv = ["taskset", "-c", SERVER_CORE] + command(name, port)
    proc = Process(argv, tmp / f"{name}.log", env)
    results: dict[str, Result] = {}
    try:
        why = wait_ready(proc, port)
        if why:
            print(f"  {name}: {why}\n{proc.log_tail()}", flush=True)
            return {s.key: Result(failed="did not start") for s in SCENARIOS}
        run_wrk(port, SCENARIOS[0], min(1.0, seconds), tmp / "wrk.log")  # warm-up
        for scenario in SCENARIOS:
            if proc.popen.poll() is not None:
                results[scenario.key] = Result(failed=f"server died ({proc.popen.returncode})")
                continue
            result = run_wrk(port, scenario, seconds, tmp / "wrk.log", proc.pid)
            if proc.popen.poll() is not None:
                result.failed = f"server died ({proc.popen.returncode})"
            results[scenario.key] = result
            shown = (f"{result.mbps:,.0f} MB/s" if scenario.throughput
                     else f"{result.rps:,.0f} req/s")
            print(f"  {name:17} {scenario.key:8} {shown:>14}  errors: {result.error_text()}",
                  flush=True)
        if proc.popen.poll() is not None:
            print(f"  {name} exited with {proc.popen.returncode}:\n{proc.log_tail()}", flush=True)
    finally:
        proc.stop()
    return results


def better(new: Result, old: Result, throughput: bool) -> bool:
    """Keep the best run: one with numbers over one without, then the faster."""
    if old.failed or new.failed:
        return bool(old.failed) and not new.failed
    return new.bytes_per_s > old.bytes_per_s if throughput else new.rps > old.rps


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def cpu(r: Result) -> list[str]:
    return ["-", "-"] if r.failed else [f"{r.server_cpu:.0f}", f"{r.wrk_cpu:.0f}"]


def report(names: list[str], results: dict[str, dict[str, Result]]) -> None:
    pure = [n for n in names if CONTENDERS[n][1] and n != "stack"]
    for scenario in SCENARIOS:
        rows: list[list[Any]] = []
        get = {n: results[n][scenario.key] for n in names}
        if scenario.throughput:
            for name in names:
                r = get[name]
                per_gb = r.server_cpu / 100 / (r.bytes_per_s / 1e9) if r.bytes_per_s else 0.0
                rows.append([name, "-" if r.failed else round(r.mbps),
                             "-" if r.failed else r.requests, *cpu(r),
                             "-" if r.failed else f"{per_gb:.3f}", r.error_text()])
            print(table(f"\n{scenario.title}",
                        ["server", "MB/s", "responses", "server CPU%", "wrk CPU%",
                         "server CPU s/GB", "errors"], rows))
            bound = [n for n in names if not get[n].failed and get[n].wrk_cpu >= CLIENT_BOUND]
            if bound:
                print(f"(wrk used >= {CLIENT_BOUND}% of its core for {', '.join(bound)}: "
                      "the client is the limit there; compare server CPU s/GB)")
            best = max(pure, key=lambda n: 0 if get[n].failed else get[n].mbps, default=None)
            stack = get.get("stack")
            if stack is not None and not stack.failed:
                if "waitress" in get:
                    print(f"stack/waitress: {ratio(stack.mbps, get['waitress'].mbps)}")
                if best is not None:
                    print(f"stack/best pure-Python ({best}): {ratio(stack.mbps, get[best].mbps)}")
        else:
            for name in names:
                r = get[name]
                rows.append([name, "-" if r.failed else round(r.rps),
                             "-" if r.failed or r.p99_ms is None else r.p99_ms,
                             *cpu(r), r.error_text()])
            print(table(f"\n{scenario.title}",
                        ["server", "req/s", "p99 ms", "server CPU%", "wrk CPU%", "errors"], rows))
            stack, waitress = get.get("stack"), get.get("waitress")
            if stack is not None and waitress is not None and not stack.failed:
                line = f"stack/waitress: {ratio(stack.rps, waitress.rps)} req/s"
                if stack.p99_ms and waitress.p99_ms:
                    line += f", p99 {ratio(stack.p99_ms, waitress.p99_ms)} (lower is better)"
                print(line)
    if "stack" in results:
        stream, file = results["stack"]["stream"], results["stack"]["file"]
        if not stream.failed and not file.failed:
            print(f"\nstack file/stream: {ratio(file.mbps, stream.mbps)} MB/s (target >= 5x); "
                  f"server CPU per GB, stream/file: "
                  f"{ratio(stream.server_cpu / stream.mbps, file.server_cpu / file.mbps)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per wrk run instead of 5 s")
    parser.add_argument("--rounds", type=int, default=0,
                        help="measure every contender N times and keep its best run "
                             "(default: 2, or 1 with --quick)")
    parser.add_argument("--only", help="comma-separated contenders (default: all installed)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_server: wrk is not installed (apt-get install wrk); nothing measured",
              file=sys.stderr)
        return 2
    if shutil.which("taskset") is None:
        print("bench_server: taskset is missing (util-linux); nothing measured", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("bench_server: needs 2 cores (wrk on core 0, the server on core 1)", file=sys.stderr)
        return 2
    seconds = 2.0 if args.quick else 5.0
    rounds = args.rounds or (1 if args.quick else 2)
    only = set(args.only.split(",")) if args.only else None
    names, notes = available(only)
    for note in notes:
        print(note)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    results: dict[str, dict[str, Result]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_server-"))
    try:
        data = tmp / "file.bin"
        with open(data, "wb") as out:
            block = os.urandom(1 << 20)
            for _ in range(FILE_SIZE // len(block)):
                out.write(block)
            out.write(block[:FILE_SIZE % len(block)])
        env = dict(os.environ, BENCH_FILE=str(data), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
        print(f"wrk -t1 on core {WRK_CORE}, servers on core {SERVER_CORE}, "
              f"{seconds:g}s per run; logs in {tmp}", flush=True)
        for round_number in range(rounds):
            if rounds > 1:
                print(f"round {round_number + 1} of {rounds}", flush=True)
            # alternate the order so no contender always runs first or last
            for name in (names if round_number % 2 == 0 else names[::-1]):
                measured = measure(name, seconds, tmp, env)
                if name not in results:
                    results[name] = measured
                    continue
                for scenario in SCENARIOS:
                    result = measured[scenario.key]
                    if better(result, results[name][scenario.key], scenario.throughput):
                        results[name][scenario.key] = result
        report(names, results)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        try:
            (tmp / "file.bin").unlink()
        except OSError:
            pass
    print(f"\n(wrk output and server logs kept in {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
