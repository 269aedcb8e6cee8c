"""A local HTTP server (127.0.0.1 only) with a route for every way fetching an image can go.

Routes: ``/cat.png`` (40x30 PNG), ``/redirect?to=<url>`` (302), ``/loop`` (redirects to
itself), ``/huge-declared`` (Content-Length over any limit), ``/huge-streamed`` (no length,
body grows until the client hangs up), ``/slow`` (headers after 2 s), ``/drip`` (one byte
every 0.1 s), ``/gzip``, ``/empty``, anything else 404. ``requests`` records (path, Host).

``TlsHelloListener`` accepts one TLS connection, records the SNI name of its ClientHello and
hangs up: enough to see which name a client verifies, without a certificate.
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from PIL import Image


def cat_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


CAT_PNG = cat_png()


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-body is what several tests do; stay quiet about it."""


def redirect_path(target: str) -> str:
    return "/redirect?to=" + quote(target, safe="")


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        route = urlsplit(self.path)
        handler = _ROUTES.get(route.path)
        if handler is None:
            self._send(404, b"not found")
        else:
            handler(self, parse_qs(route.query))

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _cat_png(self, query: dict[str, list[str]]) -> None:
        self._send(200, CAT_PNG, Content_Type="image/png")

    def _redirect(self, query: dict[str, list[str]]) -> None:
        self._send(302, b"", Location=query["to"][0])

    def _loop(self, query: dict[str, list[str]]) -> None:
        self._send(302, b"", Location="/loop")

    def _huge_declared(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10**12))
        self.end_headers()
        self.wfile.write(CAT_PNG)

    def _huge_streamed(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.end_headers()  # HTTP/1.0, no length: the body ends when the connection does
        for _ in range(2000):  # up to 128 MiB, unless the client hangs up first
            self.wfile.write(b"\0" * 65536)

    def _slow(self, query: dict[str, list[str]]) -> None:
        time.sleep(2)
        self._send(200, CAT_PNG)

    def _drip(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def _gzip(self, query: dict[str, list[str]]) -> None:
        self._send(200, b"\x1f\x8b...", Content_Encoding="gzip")

    def _empty(self, query: dict[str, list[str]]) -> None:
        self._send(200, b"")


_ROUTES: dict[str, Callable[[_Handler, dict[str, list[str]]], None]] = {
    "/cat.png": _Handler._cat_png,
    "/redirect": _Handler._redirect,
    "/loop": _Handler._loop,
    "/huge-declared": _Handler._huge_declared,
    "/huge-streamed": _Handler._huge_streamed,
    "/slow": _Handler._slow,
    "/drip": _Handler._drip,
    "/gzip": _Handler._gzip,
    "/empty": _Handler._empty,
}


@contextmanager
def serve_images() -> Iterator[ImageServer]:
    server = ImageServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class TlsHelloListener:
    """Accepts TLS connections on 127.0.0.1 and records each ClientHello's SNI name."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.server_names: list[str | None] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                self.server_names.append(_server_name(connection.recv(65536)))

    def close(self) -> None:
        self._socket.close()


def _server_name(hello: bytes) -> str | None:
    """The server_name extension of a TLS ClientHello record (RFC 8446 4.1.2, RFC 6066 3)."""
    offset = 5 + 4 + 2 + 32  # record header, handshake header, version, random
    offset += 1 + hello[offset]  # session id
    offset += 2 + struct.unpack_from("!H", hello, offset)[0]  # cipher suites
    offset += 1 + hello[offset]  # compression methods
    end = offset + 2 + struct.unpack_from("!H", hello, offset)[0]
    offset += 2
    while offset < end:
        kind, length = struct.unpack_from("!HH", hello, offset)
        if kind == 0:  # server_name: list length, name type, name length, name
            (size,) = struct.unpack_from("!H", hello, offset + 7)
            return hello[offset + 9 : offset + 9 + size].decode("ascii")
        offset += 4 + length
    return None
