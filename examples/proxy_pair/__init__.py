"""The proxy pair: a front site that mounts a pool of two backends (``config/proxy.ini``).

- :mod:`.backend` -- the app each backend runs (``config/proxy-backends.ini``):
  it answers with its own name, echoes requests, streams downloads, hashes
  uploads, redirects and sets cookies, so the proxy's rewriting can be seen.
- :mod:`.front` -- the front site's local page at ``/``.
"""
