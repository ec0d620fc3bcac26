"""The Bottle app of the side-by-side example."""
from __future__ import annotations

from typing import Any

import bottle

app = bottle.Bottle()


@app.get("/", name="index")
def index() -> str:
    return f"Bottle here. form at {app.get_url('form')}\n"


@app.post("/form", name="form")
def form() -> str:
    return f"Bottle got name={bottle.request.forms.getunicode('name', default='')}\n"


@app.get("/go")
def go() -> None:
    bottle.redirect(app.get_url("index"))


@app.error(404)
def not_found(error: Any) -> str:
    return "Bottle says: no such page\n"


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> bottle.Bottle:
    return app
