"""The one runner behind the HTTP server and the gateways: entry points, options, start-up, stop."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from stack.cli import describe_runner
from stack.errors import ConfigError, OptionError
from stack.gateways import ajp, cgi, fastcgi, scgi
from stack.gateways.base import GatewayConfig
from support import ROOT

import stack.server

PROTOCOLS = [stack.server, fastcgi, scgi, ajp]


@pytest.mark.parametrize("module", PROTOCOLS, ids=lambda m: m.__name__)
def test_every_protocol_exports_the_same_four_functions(module) -> None:
    for name in ("make_server", "serve", "server_factory", "_serve_config"):
        function = getattr(module, name)
        assert (function.__module__, function.__name__) == (module.__name__, name)
    assert module.RUNNER.config_class.__name__ in module.make_server.__doc__
    runner = module.server_factory({}, port="0")
    assert runner.func is module._serve_config
    assert describe_runner(runner).startswith(f"{module.__name__}._serve_config (host='127.0.0.1', "
                                              "port=0")


@pytest.mark.parametrize("module", [fastcgi, scgi, ajp], ids=lambda m: m.__name__)
def test_python_and_ini_refuse_the_same_script_name(module) -> None:
    with pytest.raises(OptionError) as python:
        module.make_server(lambda e, s: [], port=0, script_name="app")
    with pytest.raises(ConfigError) as ini:
        module.server_factory({}, script_name="app")
    assert python.value.option == ini.value.option == "script_name"
    with pytest.raises(OptionError, match="script_name"):
        GatewayConfig(script_name=5)  # type: ignore[arg-type]
    assert GatewayConfig(script_name="/app/").script_name == "/app"


def test_ajp_options_share_their_bounds() -> None:
    for bad in (100, 65537):
        with pytest.raises(OptionError) as python:
            ajp.AJPConfig(packet_size=bad)
        with pytest.raises(ConfigError) as ini:
            ajp.server_factory({}, packet_size=str(bad))
        assert python.value.option == ini.value.option == "packet_size"
    with pytest.raises(OptionError, match="secret"):
        ajp.AJPConfig(secret=None)  # type: ignore[arg-type]


def test_cgi_options_are_checked_in_python_and_when_the_file_loads() -> None:
    with pytest.raises(OptionError) as python:
        cgi.run(lambda e, s: [], script_name="cgi")
    with pytest.raises(ConfigError) as ini:
        cgi.server_factory({}, script_name="cgi")
    assert python.value.option == ini.value.option == "script_name"
    with pytest.raises(OptionError, match="max_request_body_size"):
        cgi.run(lambda e, s: [], max_request_body_size=-1)
    runner = cgi.server_factory({}, script_name="/cgi/")
    assert runner.keywords == {"script_name": "/cgi", "max_request_body_size": 1024**3}


SERVE = """
import sys
from {module} import serve

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "0")])
    return []

serve(app, port=0, shutdown_timeout=0.2)
print("stopped", file=sys.stderr)
"""


@pytest.mark.parametrize("module, stream, line", [
    ("stack.server", "stdout", "stack: serving on http://127.0.0.1:"),
    ("stack.gateways.fastcgi", "stderr", "stack: FastCGI gateway on 127.0.0.1:"),
    ("stack.gateways.scgi", "stderr", "stack: SCGI gateway on 127.0.0.1:"),
    ("stack.gateways.ajp", "stderr", "stack: AJP13 gateway on 127.0.0.1:"),
], ids=["http", "fastcgi", "scgi", "ajp"])
def test_serve_prints_one_line_and_stops_on_sigterm(module: str, stream: str, line: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SERVE.format(module=module)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = getattr(proc, stream).readline()
        assert first.startswith(line), first
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in err
    assert "stack:" not in (out if stream == "stdout" else err.replace(first, ""))


def test_fastcgi_stdio_does_not_import_the_fastcgi_module() -> None:
    code = ("import sys, stack.gateways.fastcgi_stdio; "
            "print('stack.gateways.fastcgi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.strip() == "False"
