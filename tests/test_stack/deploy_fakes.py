"""Factories the deploy/CLI tests name in their INI files (``call:deploy_fakes:...``)."""
from functools import partial

from stack.options import as_bool, as_int, as_str, convert_options
from stack.wsgi import ClosingIterator, call_app, set_header

OPTIONS = {"greeting": as_str, "debug": as_bool, "count": partial(as_int, minimum=0)}


class Hello:
    """An app that says its greeting and reports how it was configured."""

    def __init__(self, *, greeting="hello", debug=False, count=0, global_conf=None):
        if count > 100:
            raise ValueError("count: expected at most 100")
        self.greeting, self.debug, self.count = greeting, debug, count
        self.seen_global_conf = dict(global_conf or {})

    def __call__(self, environ, start_response):
        body = self.greeting.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def hello_factory(global_conf, **local_conf):
    return Hello(global_conf=global_conf, **convert_options(local_conf, OPTIONS))


class Tag:
    """A filter that adds ``X-Tag: name`` to responses."""

    def __init__(self, app, *, name="tag"):
        self.app, self.name = app, name

    def __call__(self, environ, start_response):
        response = call_app(self.app, environ)
        response.start(start_response, headers=set_header(response.headers, "X-Tag", self.name))
        return ClosingIterator(response)


def tag_factory(global_conf, **local_conf):
    options = convert_options(local_conf, {"name": as_str})
    return lambda app: Tag(app, **options)


def broken_factory(global_conf, **local_conf):
    raise RuntimeError("a bug in a factory")
