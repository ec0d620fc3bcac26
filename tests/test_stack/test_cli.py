"""The stack command: check, show, serve (in-process and as a real process)."""
import textwrap
import time

import pytest

from stack.cli import main
from support import BIN, ROOT, free_port, http_get

ENV = {"PYTHONPATH": str(ROOT / "tests")}  # so the child imports test_stack.deploy_fakes

FAKES = "call:test_stack.deploy_fakes"

SITE = f"""
[DEFAULT]
word = hello

[pipeline:main]
pipeline = outer app

[filter:outer]
use = {FAKES}:tag_factory
name = outer

[app:app]
use = {FAKES}:hello_factory
greeting = %(word)s
count = 2

[server:main]
use = egg:stack#http
host = 127.0.0.1
port = 8080
"""


def write(tmp_path, text, name="site.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_check_ok(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: OK: app 'main' is test_stack.deploy_fakes.Tag (2 nodes)")
    assert "server 'main'" in out


def test_check_typo_in_option_exits_1_naming_everything(tmp_path, capsys):
    path = write(tmp_path, SITE.replace("name = outer", "nmae = outer"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stack: error: {path}:9 [filter:outer] option 'nmae': unknown option 'nmae'")
    assert "did you mean 'name'? known: name" in err
    assert "Traceback" not in err


def test_check_typo_in_server_option(tmp_path, capsys):
    path = write(tmp_path, SITE.replace("port = 8080", "prot = 8080"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:19 [server:main] option 'prot'" in err and "did you mean 'port'?" in err and "threads" in err


def test_check_missing_egg_name(tmp_path, capsys):
    path = write(tmp_path, "[composite:main]\nuse = egg:stack#mnt\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "egg:stack#mnt" in err and "no application entry point named 'mnt'" in err
    assert "did you mean 'mount'?" in err


def test_check_unknown_app_name(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["check", str(path), "--app", "ap"]) == 1
    assert "no application named 'ap'" in capsys.readouterr().err


def test_check_missing_file(capsys):
    assert main(["check", "/no/such/site.ini"]) == 1
    assert "config file not found: /no/such/site.ini" in capsys.readouterr().err


def test_vars_override_defaults(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["show", str(path), "word=bonjour"]) == 0
    assert "greeting='bonjour'" in capsys.readouterr().out
    assert main(["show", str(path), "no-equals-sign"]) == 1
    assert "expected key=value" in capsys.readouterr().err


def test_show_prints_the_tree(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["show", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "test_stack.deploy_fakes.Tag (name='outer')",
        "  test_stack.deploy_fakes.Hello (greeting='hello', debug=False, count=2)",
    ]
    assert lines[2].startswith("server 'main': stack.server._serve_config (host='127.0.0.1'")


def test_warnings_are_printed(tmp_path, capsys):
    path = write(tmp_path, SITE.replace("greeting = %(word)s", "word = mine"))
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "stack: warning:" in err and "option 'word' is ignored" in err


def test_serve_over_a_real_socket(tmp_path, run_process):
    path = write(tmp_path, SITE)
    port = free_port()
    run_process([BIN / "stack", "serve", path, "--port", port, "word=served"], port=port, env=ENV)
    status, headers, body = http_get(f"http://127.0.0.1:{port}/")
    assert (status, body, headers["X-Tag"]) == (200, b"served", "outer")


def test_serve_without_server_section_uses_the_bundled_server(tmp_path, run_process):
    path = write(tmp_path, SITE.split("[server:main]")[0])
    port = free_port()
    run_process([BIN / "stack", "serve", path, "--host", "127.0.0.1", "--port", port], port=port, env=ENV)
    assert http_get(f"http://127.0.0.1:{port}/")[2] == b"hello"


def test_serve_reload_restarts_on_config_change(tmp_path, run_process):
    path = write(tmp_path, SITE)
    port = free_port()
    run_process([BIN / "stack", "serve", path, "--port", port, "--reload"], port=port, env=ENV)
    assert http_get(f"http://127.0.0.1:{port}/")[2] == b"hello"
    time.sleep(1.1)  # hupper compares mtimes; make sure the change is seen as one
    path.write_text(path.read_text().replace("word = hello", "word = reloaded"))
    deadline = time.monotonic() + 20
    body = b""
    while time.monotonic() < deadline:
        try:
            body = http_get(f"http://127.0.0.1:{port}/", timeout=2)[2]
        except OSError:
            body = b""
        if body == b"reloaded":
            break
        time.sleep(0.2)
    assert body == b"reloaded"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_show_the_demo(capsys):
    assert main(["show", str(ROOT / "config" / "demo.ini")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stack.middleware.access_log.AccessLog (")
    for line in ("  stack.middleware.error_catcher.ErrorCatcher (debug=False", "/webob -> ",
                 "/flask -> flask.app.Flask", "/catalogue -> stack.middleware.xslt.XSLT"):
        assert line in out


def test_serve_on_a_port_in_use_is_one_clear_line(tmp_path, capsys):
    import socket

    path = write(tmp_path, SITE.split("[server:main]")[0])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"stack: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_check_finds_a_bad_logging_section_and_leaves_logging_alone(tmp_path, capsys):
    import logging

    path = write(tmp_path, SITE + """
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys =

[logger_root]
level = INFOO
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
""")
    root_handlers = list(logging.getLogger().handlers)
    assert main(["check", str(path)]) == 1
    assert "bad logging configuration" in capsys.readouterr().err
    assert logging.getLogger().handlers == root_handlers


def test_a_command_line_variable_the_file_never_reads_is_flagged(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["check", str(path), "wrod=x"]) == 0
    assert "wrod='x' sets a variable" in capsys.readouterr().err
    assert main(["check", str(path), "word=x"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_app_fragment_does_not_pick_the_server(tmp_path, capsys):
    path = write(tmp_path, SITE)
    assert main(["check", f"{path}#app"]) == 0
    assert "served by server 'main'" in capsys.readouterr().out


def test_call_typo_is_one_clear_line(tmp_path, capsys):
    path = write(tmp_path, "[app:main]\nuse = call:stack.examples.demo:hom_factory\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stack: error: {path}:2 [app:main]: ") and "hom_factory" in err
    assert "Traceback" not in err


def test_empty_pipeline_and_unreadable_line(tmp_path, capsys):
    path = write(tmp_path, "[pipeline:main]\npipeline =\n")
    assert main(["check", str(path)]) == 1
    assert "the pipeline is empty" in capsys.readouterr().err
    path.write_text("[app:main]\nuse = egg:stack#mount\nlevel 6\n")
    assert main(["check", str(path)]) == 1
    assert "cannot read the line 'level 6'" in capsys.readouterr().err


def test_show_prints_the_server_and_every_option_but_passwords(tmp_path, capsys):
    path = write(tmp_path, SITE.replace("[server:main]", """[filter:errors]
use = egg:stack#errors
error_email = ops@example.com
smtp_server = mail.example.com:587
smtp_username = u
smtp_password = s3cret

[server:main]""").replace("pipeline = outer app", "pipeline = errors outer app"))
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "error_email=('ops@example.com',)" in out and "smtp_server='mail.example.com:587'" in out
    assert "s3cret" not in out
    assert "server 'main': stack.server._serve_config (host='127.0.0.1', port=8080" in out
