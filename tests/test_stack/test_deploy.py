"""stack.deploy: PasteDeploy loading with ${VAR}, clear located errors, warnings."""
import logging
import textwrap

import pytest

import stack
from stack.deploy import expand_env, load, load_server, sections, setup_logging
from stack.errors import ConfigError, ConfigWarning
from support import ROOT, call

FAKES = "call:test_stack.deploy_fakes"


def write(tmp_path, text, name="site.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_load_app_with_options_and_overrides(tmp_path):
    path = write(tmp_path, f"""
        [DEFAULT]
        who = world

        [app:main]
        use = {FAKES}:hello_factory
        greeting = hi %(who)s from %(here)s
        count = 3
    """)
    app = load(path)
    assert app.greeting == f"hi world from {tmp_path}"
    assert app.count == 3 and app.seen_global_conf["who"] == "world"
    assert app.seen_global_conf["__file__"] == str(path)
    # key=value overrides replace [DEFAULT] variables, in interpolation too
    app = load(path, who="there")
    assert app.greeting.startswith("hi there") and app.seen_global_conf["who"] == "there"
    assert call(app).body.startswith(b"hi there")


def test_uri_forms_and_fragment(tmp_path):
    path = write(tmp_path, f"""
        [app:main]
        use = {FAKES}:hello_factory

        [app:other]
        use = {FAKES}:hello_factory
        greeting = other
    """)
    assert load(f"config:{path}#other").greeting == "other"
    assert load(f"{path}#other").greeting == "other"
    assert load(path, "other").greeting == "other"
    assert stack.load(path).greeting == "hello"


def test_pipeline_and_python_api_build_the_same_tree(tmp_path):
    from functools import partial

    from test_stack import deploy_fakes

    path = write(tmp_path, f"""
        [pipeline:main]
        pipeline = outer inner app

        [filter:outer]
        use = {FAKES}:tag_factory
        name = outer

        [filter:inner]
        use = {FAKES}:tag_factory
        name = inner

        [app:app]
        use = {FAKES}:hello_factory
    """)
    from_ini = load(path)
    Tag, Hello = deploy_fakes.Tag, deploy_fakes.Hello
    from_python = stack.pipeline(Hello(), partial(Tag, name="outer"), partial(Tag, name="inner"))
    for app in (from_ini, from_python):
        assert isinstance(app, Tag) and app.name == "outer"
        assert isinstance(app.app, Tag) and app.app.name == "inner"
        assert isinstance(app.app.app, Hello)
        assert call(app).header("X-Tag") == "outer"


# -- ${VAR} -------------------------------------------------------------------------

@pytest.mark.parametrize("text, env, expected", [
    ("${A}", {"A": "1"}, "1"),
    ("x${A}y${B}", {"A": "1", "B": "2"}, "x1y2"),
    ("${A:-dflt}", {}, "dflt"),
    ("${A:-dflt}", {"A": ""}, "dflt"),
    ("${A:-dflt}", {"A": "set"}, "set"),
    ("${A:-}", {}, ""),
    ("$${A}", {"A": "1"}, "${A}"),
    ("no vars", {}, "no vars"),
    ("${A}", {"A": ""}, ""),
])
def test_expand_env(text, env, expected):
    assert expand_env(text, env) == expected


def test_env_expansion_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TEST_GREETING", "howdy")
    monkeypatch.delenv("STACK_TEST_UNSET", raising=False)
    path = write(tmp_path, f"""
        [DEFAULT]
        base = ${{STACK_TEST_UNSET:-fallback}}

        [app:main]
        use = {FAKES}:hello_factory
        greeting = ${{STACK_TEST_GREETING}} %(base)s
    """)
    app = load(path)
    assert app.greeting == "howdy fallback"
    assert app.seen_global_conf["base"] == "fallback"


def test_missing_env_var_names_the_place(tmp_path, monkeypatch):
    monkeypatch.delenv("STACK_TEST_UNSET", raising=False)
    path = write(tmp_path, f"""
        [app:main]
        use = {FAKES}:hello_factory
        greeting = ${{STACK_TEST_UNSET}}
    """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert f"{path}:3" in message and "[app:main]" in message and "'greeting'" in message
    assert "'STACK_TEST_UNSET' is not set" in message


# -- errors name file, section, line, option ------------------------------------------------

def test_unknown_option_names_file_section_line_and_known(tmp_path):
    path = write(tmp_path, f"""
        [app:main]
        use = {FAKES}:hello_factory
        greeting = hi
        cuont = 3
    """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4 [app:main] option 'cuont': unknown option 'cuont'")
    assert "did you mean 'count'?" in message and "known: count, debug, greeting" in message
    assert (info.value.filename, info.value.section, info.value.line) == (str(path), "app:main", 4)


def test_bad_option_value_names_the_line(tmp_path):
    path = write(tmp_path, f"""
        [app:main]
        use = {FAKES}:hello_factory
        debug = perhaps
    """)
    with pytest.raises(ConfigError, match=r"site.ini:3 \[app:main\] option 'debug': .*'perhaps'.*boolean"):
        load(path)


def test_class_validation_error_is_located(tmp_path):
    path = write(tmp_path, f"""
        [app:main]
        use = {FAKES}:hello_factory
        count = 1000
    """)
    with pytest.raises(ConfigError, match=r"site.ini:2 \[app:main\]: could not build it: ValueError: count"):
        load(path)


def test_error_in_a_pipeline_filter_names_the_filter_section(tmp_path):
    path = write(tmp_path, f"""
        [pipeline:main]
        pipeline = tag app

        [filter:tag]
        use = {FAKES}:tag_factory
        nmae = x

        [app:app]
        use = {FAKES}:hello_factory
    """)
    with pytest.raises(ConfigError, match=r"site.ini:6 \[filter:tag\] option 'nmae'.*did you mean 'name'"):
        load(path)


def test_missing_section_did_you_mean(tmp_path):
    path = write(tmp_path, f"""
        [pipeline:main]
        pipeline = tagg app

        [filter:tag]
        use = {FAKES}:tag_factory

        [app:app]
        use = {FAKES}:hello_factory
    """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "no filter named 'tagg'" in message and "did you mean 'tag'?" in message
    # reported where the name is written
    assert message.startswith(f"{path}:2 [pipeline:main] option 'pipeline': no filter named 'tagg'")
    with pytest.raises(ConfigError, match=r"no application named 'nope'.*known: app, main"):
        load(path, "nope")


def test_unknown_egg_entry_point_and_distribution(tmp_path):
    path = write(tmp_path, """
        [composite:main]
        use = egg:stack#urlmpa
    """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert f"{path}:2 [composite:main]" in message
    assert "egg:stack#urlmpa" in message and "did you mean 'urlmap'?" in message

    path.write_text("[app:main]\nuse = egg:no-such-dist-xyz#main\n")
    with pytest.raises(ConfigError, match=r"no installed distribution named 'no-such-dist-xyz'"):
        load(path)

    path.write_text("[app:main]\nuse = egg:stack#http\n")
    with pytest.raises(ConfigError, match=r"'http' is a paste.server_factory entry point"):
        load(path)


def test_syntax_errors_name_the_line(tmp_path):
    path = write(tmp_path, "[app:main]\nuse = x\nuse = y\n")
    with pytest.raises(ConfigError, match=r"site.ini:3: option 'use' is given twice in \[app:main\]"):
        load(path)
    path.write_text("key = value\n[app:main]\n")
    with pytest.raises(ConfigError, match=r"site.ini:1: the file must start with a \[section\] header"):
        load(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /no/such.ini"):
        load("/no/such.ini")


def test_factory_bug_is_reported_with_its_section(tmp_path):
    path = write(tmp_path, f"[app:main]\nuse = {FAKES}:broken_factory\n")
    # A plain bug (not a config problem) keeps its own type and traceback.
    with pytest.raises(RuntimeError, match="a bug in a factory"):
        load(path)


def test_bad_percent_interpolation(tmp_path):
    path = write(tmp_path, f"[app:main]\nuse = {FAKES}:hello_factory\ngreeting = %(nope)s\n")
    with pytest.raises(ConfigError, match=r"site.ini:3 \[app:main\] option 'greeting': bad %\(\.\.\.\)s"):
        load(path)


# -- PasteDeploy's silent surprise -----------------------------------------------------

def test_default_overriding_a_section_key_warns(tmp_path):
    path = write(tmp_path, f"""
        [DEFAULT]
        greeting = from-default

        [app:main]
        use = {FAKES}:hello_factory
        greeting = from-section
    """)
    with pytest.warns(ConfigWarning) as record:
        app = load(path)
    message = str(record[0].message)
    assert f"{path}:6 [app:main] option 'greeting' is ignored" in message
    assert "[DEFAULT] (line 2)" in message and "set greeting" in message
    assert app.greeting == "hello"  # PasteDeploy's behaviour is kept; we only warn


def test_set_key_does_not_warn(tmp_path, recwarn):
    path = write(tmp_path, f"""
        [DEFAULT]
        greeting = from-default

        [app:main]
        use = {FAKES}:hello_factory
        set greeting = from-section
    """)
    app = load(path)
    assert app.seen_global_conf["greeting"] == "from-section"
    assert not [w for w in recwarn if issubclass(w.category, ConfigWarning)]


# -- servers, nested files, logging ------------------------------------------------

def test_load_server_and_server_options(tmp_path):
    path = write(tmp_path, """
        [server:main]
        use = egg:stack#http
        host = 127.0.0.1
        port = 8080

        [server:typo]
        use = egg:stack#http
        prot = 1
    """)
    runner = load_server(path)
    assert (runner.keywords["config"].host, runner.keywords["config"].port) == ("127.0.0.1", 8080)
    runner = load_server(path, server_options={"port": "9"})
    assert runner.keywords["config"].port == 9
    with pytest.raises(ConfigError, match=r"site.ini:8 \[server:typo\] option 'prot'.*did you mean 'port'"):
        load_server(path, "typo")


def test_config_use_across_files(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TEST_GREETING", "from-env")
    write(tmp_path, f"""
        [app:shared]
        use = {FAKES}:hello_factory
        greeting = ${{STACK_TEST_GREETING}}
    """, name="other.ini")
    path = write(tmp_path, """
        [app:main]
        use = config:other.ini#shared
        count = 2
    """)
    app = load(path)
    assert app.greeting == "from-env" and app.count == 2


def test_sections():
    assert "composite:site" in sections(ROOT / "config" / "demo.ini")


def test_setup_logging(tmp_path):
    path = write(tmp_path, """
        [app:main]
        use = egg:stack#mount

        [loggers]
        keys = root, probe

        [handlers]
        keys = file

        [formatters]
        keys = plain

        [logger_root]
        level = WARNING
        handlers =

        [logger_probe]
        level = DEBUG
        handlers = file
        qualname = stack.test.probe

        [handler_file]
        class = FileHandler
        args = ('%(here)s/out.log', 'w')
        formatter = plain

        [formatter_plain]
        format = %(levelname)s %(message)s
    """)
    root_handlers = list(logging.getLogger().handlers)
    try:
        assert setup_logging(path) is True
        logger = logging.getLogger("stack.test.probe")
        logger.debug("configured")
        for handler in logger.handlers:
            handler.flush()
        assert (tmp_path / "out.log").read_text() == "DEBUG configured\n"
    finally:
        probe = logging.getLogger("stack.test.probe")
        for handler in list(probe.handlers):
            handler.close()
            probe.removeHandler(handler)
        logging.getLogger().handlers[:] = root_handlers
        logging.getLogger().setLevel(logging.WARNING)


def test_setup_logging_without_loggers_and_with_bad_ones(tmp_path):
    path = write(tmp_path, "[app:main]\nuse = egg:stack#mount\n")
    assert setup_logging(path) is False
    path.write_text("[loggers]\nkeys = root\n")
    with pytest.raises(ConfigError, match="bad logging configuration"):
        setup_logging(path)


def test_file_less_uris():
    from stack.middleware.mount import Mount
    assert isinstance(load("egg:stack#mount"), Mount)
    with pytest.raises(ConfigError, match="did you mean 'urlmap'"):
        load("egg:stack#urlmpa")


def test_get_of_a_missing_global_is_named(tmp_path):
    path = write(tmp_path, f"""
        [DEFAULT]
        http_port = 1

        [app:main]
        use = {FAKES}:hello_factory
        get count = http_prot
    """)
    with pytest.raises(ConfigError, match=r"site.ini:6 \[app:main\] option 'get count': .*'http_prot'.*did you mean 'http_port'"):
        load(path)


def test_config_use_with_quoted_path(tmp_path):
    write(tmp_path, f"[app:x]\nuse = {FAKES}:hello_factory\ngreeting = spaced\n", name="my file.ini")
    path = write(tmp_path, "[app:main]\nuse = config:my%%20file.ini#x\n")
    assert load(path).greeting == "spaced"


def test_an_error_in_a_nested_config_file_names_that_file(tmp_path):
    write(tmp_path, f"""
        [app:inner]
        use = {FAKES}:hello_factory
        count = -5
    """, name="inner.ini")
    path = write(tmp_path, """
        [app:main]
        use = config:inner.ini#inner
        greeting = hi
    """)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'inner.ini'}:3 [app:inner] option 'count': got '-5'")
    assert message.count("option 'count'") == 1


def test_empty_env_expansion_in_default_stays_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_TEST_EMPTY", "")
    monkeypatch.delenv("STACK_TEST_UNSET", raising=False)
    path = write(tmp_path, f"""
        [DEFAULT]
        prefix = ${{STACK_TEST_UNSET:-}}
        empty = ${{STACK_TEST_EMPTY}}

        [app:main]
        use = {FAKES}:hello_factory
        get greeting = prefix
    """)
    app = load(path)
    assert app.greeting == "" and app.seen_global_conf["empty"] == ""


def test_server_options_are_typed():
    from stack.server import make_server

    with pytest.raises(ValueError, match="host: expected a str, got None"):
        make_server(lambda e, s: [], host=None, port=0)
