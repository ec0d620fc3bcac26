"""The Flask app of the side-by-side example."""
from __future__ import annotations

from typing import Any

from flask import Flask, redirect, request, url_for

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"Flask here. form at {url_for('form')}\n"


@app.post("/form")
def form() -> str:
    return f"Flask got name={request.form.get('name', '')}\n"


@app.get("/go")
def go() -> Any:
    return redirect(url_for("index"))


@app.errorhandler(404)
def not_found(error: Exception) -> tuple[str, int]:
    return "Flask says: no such page\n", 404


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Flask:
    return app
