"""Apps the server's process-level tests load from INI files (``call:test_server.server_apps:...``)."""
import time


def slow_factory(global_conf, delay="1.0"):
    seconds = float(delay)

    def app(environ, start_response):
        time.sleep(seconds)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished after %.1fs" % seconds]
    return app
