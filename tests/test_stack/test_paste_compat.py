"""PasteDeploy compatibility gate: our sample configs load identically both ways.

The files under ``sample_configs/`` are our own equivalents of PasteDeploy's
test configurations: every section kind ([app:], [application:],
[composite:]/[composit:], [pipeline:], [filter-app:], [filter:], [server:]),
``filter-with``, ``use = call:``, explicit ``paste.*_factory`` keys,
``use = config:OTHER#NAME`` across files, ``set``/``get``, ``%(here)s`` and
``%(__file__)s``, [DEFAULT] globals and ``#name`` fragments. For each, the tree
PasteDeploy's own ``loadapp``/``loadserver``/``loadfilter``/``appconfig``
builds is compared with what ``stack.load``/``stack.load_server`` build:
the same factories, called with the same ``global_conf`` and ``local_conf``,
in the same order. Where stack differs on purpose (``${VAR}``, key=value
overrides, error types) the difference is asserted both ways.
"""
from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest
from paste.deploy import appconfig, loadapp, loadfilter, loadserver

import stack
from stack.errors import ConfigError, ConfigWarning
from support import call
from test_stack import paste_fakes as fakes
from test_stack.paste_fakes import chain, describe

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "sample_configs"


def path(filename: str) -> str:
    return str(CONFIGS / filename)


def uri(filename: str, fragment: str | None = None) -> str:
    """A ``config:`` URI for PasteDeploy (absolute, so no ``relative_to``)."""
    return f"config:{path(filename)}" + (f"#{fragment}" if fragment else "")


def globals_of(filename: str, **extra: str) -> dict:
    """The global_conf every factory of ``filename`` sees: [DEFAULT] + here/__file__."""
    return {"here": str((CONFIGS / filename).parent),
            "__file__": path(filename), **extra}


APPS_GLOBALS = globals_of("apps.ini", site="compat", data_dir=f"{CONFIGS}/data",
                          owner="nobody", SiteName="Compat Site")


# ------------------------------------------------------------------ the gate

APP_CASES = [
    ("apps.ini", None),
    ("apps.ini", "main"),
    ("apps.ini", "second"),
    ("apps.ini", "fixed"),
    ("apps.ini", "other"),
    ("apps.ini", "derived"),
    ("apps.ini", "switch"),
    ("apps.ini", "legacy"),
    ("apps.ini", "explicit"),
    ("filters.ini", None),
    ("filters.ini", "plain"),
    ("filters.ini", "wrapped"),
    ("filters.ini", "explicit"),
    ("filters.ini", "self_filtered"),
    ("layered.ini", None),
    ("layered.ini", "whole"),
    ("layered.ini", "menu"),
    ("servers.ini", None),
    ("default_override.ini", "with_set"),
]


@pytest.mark.parametrize("filename,name", APP_CASES,
                         ids=[f"{f}#{n or 'default'}" for f, n in APP_CASES])
def test_loadapp_and_stack_load_build_the_same_tree(filename, name):
    by_paste = loadapp(uri(filename), name=name)
    by_stack = stack.load(path(filename), name)
    assert type(by_stack) is type(by_paste)
    assert describe(by_stack) == describe(by_paste)
    assert chain(by_stack) == chain(by_paste)
    # and they answer a request the same way
    for target in ("/", "/second/x", "/legacy/y"):
        assert call(by_stack, target).body == call(by_paste, target).body


SERVER_CASES = ["main", "runner", "factory", "derived"]


@pytest.mark.parametrize("name", SERVER_CASES)
def test_loadserver_and_stack_load_server_agree(name):
    by_paste = loadserver(uri("servers.ini"), name=name)
    by_stack = stack.load_server(path("servers.ini"), name)
    # a server_factory returns the server object; a server_runner comes back
    # wrapped by PasteDeploy in a function of the app: either way, "serve" it
    served_paste, served_stack = by_paste(fakes.fixed_page), by_stack(fakes.fixed_page)
    assert isinstance(served_stack, fakes.FakeServer)
    assert describe(served_stack) == describe(served_paste)


# ------------------------------------------------------------------ what each section means
# (asserted outright, not only "the same as PasteDeploy": both could be wrong)


def test_app_section_sees_defaults_and_interpolation():
    app = stack.load(path("apps.ini"))
    assert isinstance(app, fakes.Recorder)
    assert app.global_conf == APPS_GLOBALS
    assert app.local_conf == {
        "label": "main",
        "color": "blue",
        "data": f"{CONFIGS}/data/main",          # %(data_dir)s, itself %(here)s/data
        "config_file": path("apps.ini"),         # %(__file__)s
        "MixedCase": "kept as written",          # keys keep their case
        "motto": "first line\nsecond line\nthird line",
    }


def test_application_prefix_and_explicit_protocol_key():
    app = stack.load(path("apps.ini"), "second")
    assert isinstance(app, fakes.Recorder)
    # the paste.app_factory key chose the factory and is not passed on to it
    assert app.local_conf == {"label": "second", "site_copy": "compat",
                              "name_copy": "Compat Site"}
    assert app.global_conf == APPS_GLOBALS


def test_factories_returning_one_shared_app():
    assert stack.load(path("apps.ini"), "fixed") is fakes.fixed_page
    assert stack.load(path("apps.ini"), "other") is fakes.other_page
    assert loadapp(uri("apps.ini"), name="fixed") is fakes.fixed_page


def test_use_another_section_with_set_and_get():
    app = stack.load(path("apps.ini"), "derived")
    main = stack.load(path("apps.ini"), "main")
    # main's options, then derived's on top; `get` copies globals (after `set`)
    assert app.local_conf == {**main.local_conf, "label": "derived",
                              "who": "derived-owner", "where": "compat"}
    # `set` changes/extends the globals of this app only
    assert app.global_conf == {**APPS_GLOBALS, "owner": "derived-owner", "extra": "added"}
    assert main.global_conf == APPS_GLOBALS
    assert stack.load(path("apps.ini"), "main").global_conf["owner"] == "nobody"


def test_appconfig_matches_what_the_stack_built_factory_saw():
    for name in ("main", "second", "derived"):
        conf = appconfig(uri("apps.ini"), name=name)
        app = stack.load(path("apps.ini"), name)
        assert conf.local_conf == app.local_conf
        assert conf.global_conf == app.global_conf
        assert dict(conf) == {**app.global_conf, **app.local_conf}


def test_composites_build_children_through_the_loader():
    app = stack.load(path("apps.ini"), "switch")
    assert isinstance(app, fakes.Dispatch)
    assert app.routes[""] is fakes.fixed_page
    assert app.routes["second"].local_conf["label"] == "second"
    assert app.routes["derived"].global_conf["owner"] == "derived-owner"
    assert app.local_conf == {"route.": "fixed", "route.second": "second",
                              "route.derived": "derived", "mode": "strict"}
    assert app.global_conf == APPS_GLOBALS
    assert call(app, "/second/page").body == b"app second\n"
    assert call(app, "/").body == b"fixed page\n"


def test_composit_spelling_and_explicit_composite_keys():
    legacy = stack.load(path("apps.ini"), "legacy")
    assert isinstance(legacy, fakes.Dispatch)
    assert legacy.routes[""] is fakes.other_page
    assert legacy.local_conf == {"route.": "other", "route.main": "main"}
    outer = stack.load(path("apps.ini"), "explicit")
    # nested composites, and a filter fetched by the composite (loader.get_filter)
    assert isinstance(outer.routes[""], fakes.Dispatch)
    assert chain(outer.routes["legacy"]) == ["marker", "Dispatch"]
    assert call(outer, "/legacy/").body == b"other page\n[marker]"
    assert call(outer, "/second/").body == b"app second\n"


def test_fragment_and_name_select_the_section_the_same_way():
    expected = describe(loadapp(uri("apps.ini", "second")))
    assert describe(stack.load(f"{path('apps.ini')}#second")) == expected
    assert describe(stack.load(f"config:{path('apps.ini')}#second")) == expected
    assert describe(stack.load(path("apps.ini"), "second")) == expected
    # an explicit name wins over the fragment, in both
    assert loadapp(uri("apps.ini", "second"), name="fixed") is fakes.fixed_page
    assert stack.load(f"{path('apps.ini')}#second", "fixed") is fakes.fixed_page
    # no name, no fragment: main
    assert stack.load(path("apps.ini")).local_conf["label"] == "main"


def test_relative_path_is_relative_to_the_working_directory(monkeypatch):
    monkeypatch.chdir(HERE)
    by_paste = loadapp("config:sample_configs/apps.ini#derived", relative_to=str(HERE))
    by_stack = stack.load(os.path.join("sample_configs", "apps.ini"), "derived")
    assert describe(by_stack) == describe(by_paste)
    assert by_stack.global_conf["here"] == str(CONFIGS)  # absolute, not "sample_configs"


def test_missing_section_fails_in_both():
    with pytest.raises(LookupError):
        loadapp(uri("apps.ini"), name="nowhere")
    with pytest.raises(ConfigError) as error:
        stack.load(path("apps.ini"), "nowhere")
    assert "apps.ini" in str(error.value) and "nowhere" in str(error.value)


def test_ambiguous_section_is_refused_by_both_and_named_as_such():
    with pytest.raises(LookupError, match="Ambiguous section names"):
        loadapp(uri("ambiguous.ini"))
    with pytest.raises(ConfigError) as error:
        stack.load(path("ambiguous.ini"))
    assert error.value.filename == path("ambiguous.ini")
    message = error.value.message  # the text without the file name
    # it must say what is wrong -- two sections claim "main" -- not "there is none"
    assert "no application named" not in message, message
    assert "ambiguous" in message.lower(), message
    assert "app:main" in message and "composite:main" in message, message


# ------------------------------------------------------------------ filters


def test_pipeline_order_outermost_first():
    for app in (stack.load(path("filters.ini")), loadapp(uri("filters.ini"))):
        assert chain(app) == ["outer", "inner", "PrefixMiddleware", "plain"]
        assert isinstance(app, fakes.Stamp) and app.local_conf == {"tag": "outer"}
        # the filter_app_factory got (app, global_conf, **local): no protocol key
        assert app.app.local_conf == {"tag": "inner"}
        assert app.app.app.prefix == ""  # PasteDeploy's own prefix filter, via egg:
        # the innermost filter stamps first
        assert call(app, "/").body == b"app plain\n[inner][outer]"


def test_filter_app_with_use_and_with_explicit_key():
    wrapped = stack.load(path("filters.ini"), "wrapped")
    assert chain(wrapped) == ["wrapped", "plain"]
    assert wrapped.local_conf == {"tag": "wrapped"}       # `next` is not passed on
    assert wrapped.global_conf == globals_of("filters.ini")
    explicit = stack.load(path("filters.ini"), "explicit")
    # `next` may name a pipeline
    assert chain(explicit) == ["explicit", "outer", "inner", "PrefixMiddleware", "plain"]
    assert explicit.local_conf == {"tag": "explicit"}


def test_filter_with_on_an_app_and_on_a_filter():
    app = stack.load(path("filters.ini"), "self_filtered")
    # self_filtered is filtered with `chained`, itself filtered with `outer`
    assert chain(app) == ["outer", "chained", "self-filtered"]
    assert app.app.app.local_conf == {"label": "self-filtered"}  # filter-with not passed on
    assert app.app.local_conf == {"tag": "chained"}


def shallow(obj):
    """describe() of one filter, without the app it wraps."""
    data = describe(obj)
    data.pop("app")
    return data


def test_loadfilter_builds_the_filters_stack_uses():
    pipeline = stack.load(path("filters.ini"))
    filtered = stack.load(path("filters.ini"), "self_filtered")

    outer = loadfilter(uri("filters.ini"), name="outer")(fakes.fixed_page)
    assert chain(outer) == ["outer", "fixed_page"]
    assert shallow(outer) == shallow(pipeline) == shallow(filtered)

    inner = loadfilter(uri("filters.ini"), name="inner")(fakes.fixed_page)  # filter_app_factory
    assert chain(inner) == ["inner", "fixed_page"]
    assert shallow(inner) == shallow(pipeline.app)

    chained = loadfilter(uri("filters.ini"), name="chained")(fakes.fixed_page)  # filter-with
    assert chain(chained) == ["outer", "chained", "fixed_page"]
    assert shallow(chained.app) == shallow(filtered.app)
    assert call(chained).body == b"fixed page\n[chained][outer]"


def test_pipeline_with_extra_options_is_refused_by_both():
    with pytest.raises(LookupError, match="extra .disallowed. settings"):
        loadapp(uri("filters.ini", "bad"))
    with pytest.raises(ConfigError) as error:
        stack.load(path("filters.ini"), "bad")
    message = str(error.value)
    assert path("filters.ini") in message and "pipeline:bad" in message and "stray" in message


# ------------------------------------------------------------------ across files


def test_use_config_across_files():
    app = stack.load(path("layered.ini"))
    inner_dir = str(CONFIGS / "included")
    assert app.local_conf == {
        "label": "inner",
        "note": "outer note",                            # the referring section wins
        "where": inner_dir,                              # %(here)s of the included file
        "file": str(CONFIGS / "included" / "base.ini"),  # %(__file__)s of the included file
    }
    assert app.global_conf == {
        # the outer file's globals win over the included file's [DEFAULT]...
        "here": str(CONFIGS), "__file__": path("layered.ini"),
        "tier": "outer", "outer_dir": str(CONFIGS), "shared": "set-by-outer",
        # ...which adds what the outer file lacks (interpolated in its own dir)
        "only_included": "yes", "included_dir": inner_dir,
    }
    assert describe(app) == describe(loadapp(uri("layered.ini")))


def test_use_config_without_fragment_means_main():
    app = stack.load(path("layered.ini"), "whole")
    assert app.local_conf == {"label": "included-main", "where": str(CONFIGS / "included")}
    assert app.global_conf["shared"] == "from-outer"
    assert app.global_conf["__file__"] == path("layered.ini")


def test_composite_from_another_file_gets_the_referring_files_loader():
    by_stack = stack.load(path("layered.ini"), "menu")
    assert isinstance(by_stack, fakes.Dispatch)
    # [app:helper] of layered.ini (other_page), not of included/base.ini (fixed_page)
    assert by_stack.routes[""] is fakes.other_page
    assert loadapp(uri("layered.ini", "menu")).routes[""] is fakes.other_page
    assert stack.load(path("included/base.ini"), "menu").routes[""] is fakes.fixed_page


def test_included_file_loads_alone_too():
    app = stack.load(path("included/base.ini"), "inner")
    assert app.global_conf == {
        "here": str(CONFIGS / "included"), "__file__": path("included/base.ini"),
        "shared": "from-included", "only_included": "yes",
        "included_dir": str(CONFIGS / "included")}
    assert describe(app) == describe(loadapp(uri("included/base.ini", "inner")))


# ------------------------------------------------------------------ servers


def test_server_sections_see_their_options_and_globals():
    server = stack.load_server(path("servers.ini"))
    assert isinstance(server, fakes.FakeServer) and server.protocol == "server_factory"
    assert server.local_conf == {"host": "127.0.0.1", "port": "8001"}
    assert server.global_conf == globals_of("servers.ini", workers="2")

    ran = stack.load_server(path("servers.ini"), "runner")(fakes.other_page)
    assert ran.protocol == "server_runner" and ran.served == [fakes.other_page]
    assert ran.local_conf == {"host": "127.0.0.1", "port": "8002"}

    factory = stack.load_server(path("servers.ini"), "factory")
    assert factory.local_conf == {"port": "8003", "socket": path("factory.sock")}

    derived = stack.load_server(path("servers.ini"), "derived")(fakes.fixed_page)
    assert derived.protocol == "server_runner"
    assert derived.local_conf == {"host": "127.0.0.1", "port": "8004"}


def test_app_and_server_of_one_file():
    server = stack.load_server(path("servers.ini"))
    server(stack.load(path("servers.ini")))
    assert server.served == [fakes.fixed_page]


# ------------------------------------------------------------------ [DEFAULT] surprises


def test_default_key_overrides_the_section_key_in_both_and_stack_warns():
    by_paste = loadapp(uri("default_override.ini"))
    with pytest.warns(ConfigWarning) as warned:
        by_stack = stack.load(path("default_override.ini"))
    # PasteDeploy drops the section's `port = 9001`: the [DEFAULT] value wins
    assert by_paste.local_conf == by_stack.local_conf == {"color": "green"}
    assert by_paste.global_conf == by_stack.global_conf
    assert by_stack.global_conf["port"] == "9000"
    message = str(warned[0].message)
    assert "'port'" in message and "app:main" in message and "set port" in message


def test_set_changes_the_global_without_a_warning():
    # filterwarnings=error: any ConfigWarning here fails the test
    app = stack.load(path("default_override.ini"), "with_set")
    assert app.local_conf == {"color": "red"}
    assert app.global_conf["port"] == "9002"


# ------------------------------------------------------------------ where stack differs on purpose


def test_env_vars_expanded_by_stack_left_alone_by_pastedeploy(monkeypatch):
    monkeypatch.setenv("STACK_COMPAT_GREETING", "hi there")
    monkeypatch.delenv("STACK_COMPAT_UNSET", raising=False)
    by_paste = loadapp(uri("env_vars.ini"))
    by_stack = stack.load(path("env_vars.ini"))
    assert by_paste.local_conf == {
        "greeting": "${STACK_COMPAT_GREETING}",
        "fallback": "${STACK_COMPAT_UNSET:-plan b}",
        "literal": "$${NOT_EXPANDED}",
        "plain": "no variables here",
    }
    assert by_stack.local_conf == {
        "greeting": "hi there",
        "fallback": "plan b",
        "literal": "${NOT_EXPANDED}",
        "plain": "no variables here",
    }
    # everything else is the same
    assert by_stack.global_conf == by_paste.global_conf


def test_env_var_missing_is_a_located_error_for_stack_only(monkeypatch):
    monkeypatch.delenv("STACK_COMPAT_GREETING", raising=False)
    assert loadapp(uri("env_vars.ini")).local_conf["greeting"] == "${STACK_COMPAT_GREETING}"
    with pytest.raises(ConfigError) as error:
        stack.load(path("env_vars.ini"))
    assert error.value.filename == path("env_vars.ini")
    assert error.value.section == "app:main" and error.value.option == "greeting"
    assert error.value.line == 6
    assert "STACK_COMPAT_GREETING" in str(error.value)


def test_overrides_versus_global_conf():
    """stack.load(**overrides) vs loadapp(global_conf=...) (what pserve/gunicorn pass).

    A name the file's [DEFAULT] lacks: the same in both. A name [DEFAULT]
    has: both give factories the new value in global_conf, but in %(name)s
    interpolation PasteDeploy keeps the file's value while stack uses the
    override (stack's overrides replace [DEFAULT], on purpose).
    """
    by_paste = loadapp(uri("apps.ini", "second"), global_conf={"added": "new"})
    by_stack = stack.load(path("apps.ini"), "second", added="new")
    assert describe(by_stack) == describe(by_paste)
    assert by_stack.global_conf["added"] == "new"

    by_paste = loadapp(uri("apps.ini", "second"), global_conf={"site": "elsewhere"})
    by_stack = stack.load(path("apps.ini"), "second", site="elsewhere")
    assert by_paste.global_conf == by_stack.global_conf
    assert by_stack.global_conf["site"] == "elsewhere"
    assert by_paste.local_conf["site_copy"] == "compat"
    assert by_stack.local_conf["site_copy"] == "elsewhere"


def test_bad_interpolation_fails_in_both_stack_names_the_place():
    with pytest.raises(configparser.InterpolationError, match="Error in file"):
        loadapp(uri("bad_interpolation.ini"))
    with pytest.raises(ConfigError) as error:
        stack.load(path("bad_interpolation.ini"))
    assert error.value.filename == path("bad_interpolation.ini")
    assert error.value.section == "app:main" and error.value.option == "broken"
    assert error.value.line == 7
    assert "no_such_name" in str(error.value)
