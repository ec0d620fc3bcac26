"""config/side-by-side.ini on a real socket: five frameworks, each under its prefix.

For each framework: a GET whose page carries a URL the framework generated,
a form POST, a redirect whose Location carries the mount prefix, and a 404
answered by the framework itself.
"""
import http.client
import urllib.parse

import pytest

from support import BIN, ROOT, free_port

FRAMEWORKS = [("", "WebOb"), ("/flask", "Flask"), ("/django", "Django"),
              ("/bottle", "Bottle"), ("/pyramid", "Pyramid")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    import os
    import subprocess

    from support import wait_for_port

    port = free_port()
    log = open(tmp_path_factory.mktemp("side") / "serve.log", "w+")
    proc = subprocess.Popen([str(BIN / "stack"), "serve", str(ROOT / "config/side-by-side.ini"),
                             f"http_port={port}"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=dict(os.environ))
    try:
        wait_for_port(port, process=proc, timeout=30)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("prefix, name", FRAMEWORKS, ids=[n for _, n in FRAMEWORKS])
def test_get_shows_a_framework_generated_url_with_the_prefix(site, prefix, name):
    status, headers, body = request(site, "GET", prefix + "/")
    assert status == 200, body
    assert f"{name} here" in body
    # the form URL the framework built itself, absolute or not, carries the prefix
    assert f"{prefix}/form" in body


@pytest.mark.parametrize("prefix, name", FRAMEWORKS, ids=[n for _, n in FRAMEWORKS])
def test_form_post(site, prefix, name):
    status, _, body = request(site, "POST", prefix + "/form", body="name=Ada+L%C3%B6",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    assert body.strip() == f"{name} got name=Ada Lö"


@pytest.mark.parametrize("prefix, name", FRAMEWORKS, ids=[n for _, n in FRAMEWORKS])
def test_redirect_location_carries_the_prefix(site, prefix, name):
    status, headers, _ = request(site, "GET", prefix + "/go")
    assert status in (301, 302, 303), status
    location = urllib.parse.urlsplit(headers["Location"])
    assert location.path == prefix + "/"
    assert location.netloc in ("", f"127.0.0.1:{site}")


@pytest.mark.parametrize("prefix, name", FRAMEWORKS, ids=[n for _, n in FRAMEWORKS])
def test_404_stays_inside_its_framework(site, prefix, name):
    status, _, body = request(site, "GET", prefix + "/no/such/page")
    assert status == 404
    assert f"{name} says: no such page" in body


def test_static_files_beside_them(site):
    status, headers, body = request(site, "GET", "/static/site.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "font-family" in body


def test_show_lists_every_mount(capsys):
    from stack.cli import main

    assert main(["show", str(ROOT / "config/side-by-side.ini")]) == 0
    out = capsys.readouterr().out
    for prefix in ("/flask", "/django", "/bottle", "/pyramid", "/static"):
        assert prefix in out
    assert "flask.app.Flask" in out and "WSGIHandler" in out and "bottle.Bottle" in out
