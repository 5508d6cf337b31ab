"""A lean HTTP/1.x request-head parser for the daemon's handler.

The standard library's `BaseHTTPRequestHandler.parse_request` runs every request's headers through
the `email` package, which costs more than an MLP inference. This parser reads the header lines
into a case-insensitive dict and applies the same rules (keep-alive, `Expect: 100-continue`, limits
on line length and header count). Request lines it does not expect (anything but `HTTP/1.0` and
`HTTP/1.1`) are left to the standard parser, which answers them as it always did.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

MAX_LINE = 65536
MAX_HEADERS = 100
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
_END = (b"\r\n", b"\n", b"")


class Headers(dict):
    """Request headers keyed by lower-cased name; `get` and `in` ignore case. Repeats are joined by ', '."""

    def get(self, name: str, default=None):  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())


def parse_request(handler: BaseHTTPRequestHandler) -> bool:
    """Parse `handler.raw_requestline` and the header lines that follow; False when answered with an error."""
    line = str(handler.raw_requestline, "iso-8859-1").rstrip("\r\n")
    words = line.split(" ")
    if len(words) != 3 or words[2] not in _VERSIONS or not words[1]:
        return BaseHTTPRequestHandler.parse_request(handler)  # the unusual cases, answered as before
    handler.requestline = line
    handler.command, handler.path, handler.request_version = words
    handler.close_connection = True  # until the headers are read
    headers = Headers()
    for _ in range(MAX_HEADERS + 1):
        raw = handler.rfile.readline(MAX_LINE + 1)
        if raw in _END:
            break
        if len(raw) > MAX_LINE:
            handler.send_error(431, "Line too long")
            return False
        if not raw.endswith(b"\n"):  # the client hung up (or was evicted) mid-line: nobody to answer
            return False
        name, sep, value = str(raw, "iso-8859-1").partition(":")
        name = name.strip().lower()
        if not sep or not name or raw[:1] in (b" ", b"\t"):  # folded (obsolete) lines are refused too
            handler.send_error(400, "Bad header line")
            return False
        value = value.strip()
        if name in headers:
            if name == "content-length" and dict.__getitem__(headers, name) != value:
                handler.send_error(400, "Conflicting Content-Length headers")
                return False
            value = dict.__getitem__(headers, name) + ", " + value if name != "content-length" else value
        dict.__setitem__(headers, name, value)
    else:
        handler.send_error(431, "Too many headers")
        return False
    handler.headers = headers  # type: ignore[assignment]
    connection = headers.get("connection", "").lower()
    if handler.request_version == "HTTP/1.1":
        handler.close_connection = "close" in connection
    else:
        handler.close_connection = "keep-alive" not in connection
    if handler.request_version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
        return handler.handle_expect_100()
    return True
