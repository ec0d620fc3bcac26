"""Five frameworks side by side (``config/side-by-side.ini``).

Each module holds one small app written the way its framework's users write
them, with the same four pages so the functional tests can check each one:

- ``GET /``        a page with a URL the framework generated itself
- ``POST /form``   echoes the form field ``name``
- ``GET /go``      redirects (the ``Location`` must carry the mount prefix)
- anything else    the framework's own 404

Each module has ``app_factory(global_conf, **local_conf)`` for PasteDeploy.
"""
