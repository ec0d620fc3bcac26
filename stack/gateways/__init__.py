"""Gateways: the same pipeline behind nginx, Apache, lighttpd or IIS.

Pick one in the deployment file's ``[server:…]`` section; the app sections
stay the same:

- ``use = egg:stack#fastcgi`` (:mod:`stack.gateways.fastcgi`): nginx
  ``fastcgi_pass``, lighttpd ``mod_fastcgi``, Apache ``mod_proxy_fcgi``;
- ``python -m stack.gateways.fastcgi site.ini`` (:mod:`stack.gateways.fastcgi_stdio`):
  FastCGI on stdin, for front servers that start the process: IIS (a pipe),
  ``mod_fcgid``/``spawn-fcgi`` (a listening socket);
- ``use = egg:stack#scgi`` (:mod:`stack.gateways.scgi`): nginx ``scgi_pass``,
  lighttpd ``mod_scgi``, Apache ``mod_proxy_scgi``;
- ``use = egg:stack#ajp`` (:mod:`stack.gateways.ajp`): Apache ``mod_proxy_ajp``;
- ``use = egg:stack#cgi`` (:mod:`stack.gateways.cgi`): one request per
  process, from any web server's CGI support;
- mod_python: :mod:`stack.gateways.modpython` (an Apache configuration).

FastCGI, SCGI and AJP run on the bundled server's loop and worker pool
(:class:`stack.server.loop.Server` with their own connection class), so
they take its options (``threads``, timeouts, limits, ``unix_socket``,
graceful stop on SIGTERM) plus ``script_name``, and are started by the
same :class:`~stack.server.runner.Runner` as the HTTP server (each module's
``make_server``, ``serve`` and ``server_factory``). What they share is in
:mod:`~stack.gateways.base` and :mod:`~stack.gateways.exchange` (one WSGI
call); FastCGI's connection, used on a socket and on stdin alike, is
:mod:`~stack.gateways.fastcgi_connection`. Each protocol's framing is a
sans-IO module: :mod:`~stack.gateways.fastcgi_records`,
:mod:`~stack.gateways.scgi_netstring`, :mod:`~stack.gateways.ajp_packets`.

INI::

    [server:main]
    use = egg:stack#fastcgi
    port = 9000
"""
