"""The XSLT example site over a real socket, as config/demo.ini mounts it."""
from __future__ import annotations

import re
from typing import Callable

import pytest
from support import ROOT, http_get

import stack

@pytest.fixture
def site(live_server: Callable) -> str:
    return live_server(stack.load(ROOT / "config" / "demo.ini"))


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
