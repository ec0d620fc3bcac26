"""A tea catalogue that speaks only XML, themed into HTML by the XSLT middleware.

The app emits XML documents (the catalogue, one item, a not-found error),
each naming its theme with ``<?xml-stylesheet type="text/xsl"
href=".../theme.xsl"?>``, and serves that theme itself at ``/theme.xsl``. So
it works three ways: behind ``stack.middleware.xslt.XSLT`` (HTML from the server),
in a browser alone (the browser applies the theme), or as a plain XML API.

Python::

    from stack.examples.xslt_site import make_site
    app = make_site()          # XSLT(catalogue, honor_pi=True, subrequest_stylesheets=True, ...)

INI (mounted at ``/catalogue`` in the demo)::

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
    use = call:stack.examples.xslt_site:app_factory
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, quote

from stack.types import Environ, StartResponse, WSGIApp

THEME = Path(__file__).resolve().with_name("theme.xsl")

#: (id, name, category, price in cents, description)
TEAS = [
    ("sencha", "Sencha", "green", 1200, "Steamed Japanese green tea, grassy and bright."),
    ("gyokuro", "Gyokuro", "green", 2900, "Shade-grown, sweet and deep in umami."),
    ("longjing", "Longjing", "green", 2400, "Pan-fired 'Dragon Well' from Hangzhou, chestnut notes."),
    ("darjeeling", "Darjeeling First Flush", "black", 2200, "Light, floral, muscatel."),
    ("assam", "Assam", "black", 900, "Malty and strong: a breakfast tea."),
    ("keemun", "Keemun", "black", 1500, "Winey, with a whisper of smoke & cocoa."),
    ("tieguanyin", "Tieguanyin", "oolong", 2600, "Rolled oolong, orchid and cream."),
    ("dahongpao", "Da Hong Pao", "oolong", 3400, "Roasted rock oolong from the Wuyi mountains."),
    ("baihao", "Bai Hao Yinzhen", "white", 3100, "Silver needle buds, honeyed <and> delicate."),
    ("puerh", "Shou Pu-erh", "dark", 1800, "Earthy, aged, smooth."),
]


def _document(environ: Environ, root: ET.Element) -> bytes:
    """XML declaration, the theme's <?xml-stylesheet?> (built from SCRIPT_NAME), the root."""
    href = quote(environ.get("SCRIPT_NAME", "").encode("latin-1")) + "/theme.xsl"
    head = (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<?xml-stylesheet type="text/xsl" href="{href}"?>\n')
    return head.encode() + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def _tea(parent: ET.Element, tea: tuple[str, str, str, int, str], full: bool) -> None:
    ident, name, category, cents, description = tea
    item = ET.SubElement(parent, "tea", id=ident, category=category)
    ET.SubElement(item, "name").text = name
    ET.SubElement(item, "price", currency="EUR").text = f"{cents / 100:.2f}"
    if full:
        ET.SubElement(item, "description").text = description


def catalogue(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The XML app: ``/`` (``?q=`` and ``?category=`` filter), ``/tea/ID``, ``/theme.xsl``."""
    path = environ.get("PATH_INFO", "") or "/"
    if path == "/theme.xsl":
        body = THEME.read_bytes()
        start_response("200 OK", [("Content-Type", "text/xsl; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    status, root = "200 OK", None
    if path == "/":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        words = query.get("q", [""])[0].lower().split()
        category = query.get("category", [""])[0]
        root = ET.Element("catalogue", count="0")
        for tea in TEAS:
            text = f"{tea[1]} {tea[2]} {tea[4]}".lower()
            if all(word in text for word in words) and category in ("", tea[2]):
                _tea(root, tea, full=True)
        root.set("count", str(len(root)))
    elif path.startswith("/tea/"):
        found = [tea for tea in TEAS if tea[0] == path[5:]]
        if found:
            root = ET.Element("page")
            _tea(root, found[0], full=True)
    if root is None:
        status, root = "404 Not Found", ET.Element("error", status="404")
        root.text = "No such tea."
    body = _document(environ, root)
    start_response(status, [("Content-Type", "application/xml; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


def make_site(**options: Any) -> WSGIApp:
    """The catalogue behind :class:`stack.middleware.xslt.XSLT`, themed by its own stylesheet."""
    from stack.middleware.xslt import XSLT

    settings: dict[str, Any] = dict(
        honor_pi=True, subrequest_stylesheets=True, statuses=[200, 404],
        params={"path": "path", "base": "environ:SCRIPT_NAME", "q": "query:q",
                "site": "'stack tea catalogue'"})
    settings.update(options)
    return XSLT(catalogue, **settings)


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> WSGIApp:
    """``use = call:stack.examples.xslt_site:app_factory`` (the XML app, unthemed)."""
    return catalogue
