"""The XSLT example site over a real socket: the demo's mount table plus the themed
catalogue, built from a deployment file (the snippet proposed for config/demo.ini)."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from support import ROOT, http_get

import stack

SNIPPET = """
[composite:main]
use = egg:stack#urlmap
/ = home
/webob = hello
/catalogue = catalogue

[app:home]
use = call:stack_examples.demo:home_factory

[app:hello]
use = call:stack_examples.demo:hello_factory

[pipeline:catalogue]
pipeline = theme catalogue_xml

[filter:theme]
use = egg:stack#xslt
honor_pi = true
subrequest_stylesheets = true
statuses = 200 404
params =
    path = path
    base = environ:SCRIPT_NAME
    q = query:q
    site = 'stack tea catalogue'

[app:catalogue_xml]
use = call:stack_examples.xslt_site:app_factory
"""


def importable() -> None:
    """Make ``stack_examples.xslt_site`` importable even before pyproject lists it."""
    import importlib.util
    import sys
    try:
        import stack_examples.xslt_site  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "stack_examples.xslt_site", ROOT / "examples" / "xslt_site" / "__init__.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]
        spec.loader.exec_module(module)  # type: ignore[union-attr]


@pytest.fixture
def site(tmp_path: Path, live_server: Callable) -> str:
    importable()
    config = tmp_path / "demo.ini"
    config.write_text(textwrap.dedent(SNIPPET), encoding="utf-8")
    return live_server(stack.load(str(config)))


def test_themed_catalogue_over_a_socket(site: str) -> None:
    status, headers, body = http_get(site + "/catalogue/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    page = body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Catalogue · stack tea catalogue</title>" in page
    assert len(re.findall(r'<a href="/catalogue/tea/\w+">', page)) == 10
    assert "<code>/catalogue/</code>" in page  # the path parameter


def test_search_item_and_not_found_pages(site: str) -> None:
    status, _, body = http_get(site + "/catalogue/?q=oolong")
    assert status == 200 and "Teas matching “oolong”" in body.decode() and "(2)" in body.decode()
    status, _, body = http_get(site + "/catalogue/tea/keemun")
    assert status == 200 and "Winey, with a whisper of smoke &amp; cocoa." in body.decode()
    status, headers, body = http_get(site + "/catalogue/tea/earl-grey")
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    assert "No such tea." in body.decode()


def test_the_theme_and_the_other_apps_are_untouched(site: str) -> None:
    status, headers, body = http_get(site + "/catalogue/theme.xsl")
    assert status == 200 and headers["Content-Type"].startswith("text/xsl")
    assert body == (ROOT / "examples" / "xslt_site" / "theme.xsl").read_bytes()
    status, _, body = http_get(site + "/webob/?name=tea")
    assert status == 200 and b"Hello from WebOb, tea!" in body
