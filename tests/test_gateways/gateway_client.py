"""Tiny front-server clients for the gateway tests (FastCGI records, raw reads)."""
from __future__ import annotations

import socket

from stack.gateways import fastcgi_records as fcgi


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's timeout)."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def fcgi_request(request_id: int, params: dict[str, str], body: bytes = b"", *,
                 keep_conn: bool = True, end_stdin: bool = True) -> bytes:
    """BEGIN_REQUEST, PARAMS and STDIN records for one request, as nginx sends them."""
    pairs = fcgi.encode_pairs((k.encode("latin-1"), v.encode("latin-1")) for k, v in params.items())
    data = fcgi.begin_request(request_id, fcgi.RESPONDER, fcgi.KEEP_CONN if keep_conn else 0)
    data += fcgi.encode_stream(fcgi.PARAMS, request_id, pairs, end=True)
    return data + fcgi.encode_stream(fcgi.STDIN, request_id, body, end=end_stdin)


def fcgi_params(path: str, method: str = "GET", body: bytes = b"", **extra: str) -> dict[str, str]:
    path_info, _, query = path.partition("?")
    params = {"REQUEST_METHOD": method, "SCRIPT_NAME": "/app", "PATH_INFO": path_info,
              "QUERY_STRING": query, "REQUEST_URI": "/app" + path, "SERVER_NAME": "localhost",
              "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1"}
    if body or method == "POST":
        params["CONTENT_LENGTH"] = str(len(body))
    params.update(extra)
    return params


class RecordReader:
    """Reads our records back from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> fcgi.Record | None:
        """The next record, or None when the server closed the connection."""
        while True:
            found = fcgi.decode_record(self.buffer)
            if found is not None:
                record, end = found
                self.buffer = self.buffer[end:]
                return record
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data

    def response(self, request_id: int = 1) -> tuple[bytes, bytes, tuple[int, int] | None]:
        """(STDOUT bytes, STDERR bytes, END_REQUEST (app, protocol) or None if the connection closed)."""
        stdout, stderr = [], []
        while True:
            record = self.next()
            if record is None:
                return b"".join(stdout), b"".join(stderr), None
            assert record.request_id == request_id, record
            if record.type == fcgi.STDOUT:
                stdout.append(record.content)
            elif record.type == fcgi.STDERR:
                stderr.append(record.content)
            elif record.type == fcgi.END_REQUEST:
                return b"".join(stdout), b"".join(stderr), fcgi.parse_end_request(record.content)


def split_cgi(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """A CGI-style response: (status, headers, body)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    assert headers[0][0] == "Status", lines
    return headers[0][1], [h for h in headers[1:]], body  # type: ignore[misc]
