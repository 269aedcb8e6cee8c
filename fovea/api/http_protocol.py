"""uvicorn's httptools protocol with a bound on a request's head (its target and headers).

uvicorn bounds heads only when it runs h11; with httptools, what ``uvicorn[standard]`` runs, a
client could send megabytes of headers (or thousands of them) and have them buffered whole.
Past ``MAX_HEAD_BYTES`` or ``MAX_HEADERS`` the client gets a 431 and its connection is closed;
the server goes on serving everyone else. Everything else is uvicorn's, unchanged.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fovea.errors import InvalidRequestError

# nginx's default is 4 x 8 KiB, gunicorn's 100 fields: a client sending more is not a client.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# After a 431 the rest of the head is read and dropped (up to this much, for this long) before
# the connection closes: closing on unread bytes resets it, and the client never sees the 431.
LINGER_BYTES = 1024 * 1024
LINGER_S = 2.0


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops and uvicorn calls ``send_400_response``."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing heads over ``MAX_HEAD_BYTES`` or ``MAX_HEADERS``."""

    _is_in_head = False
    _is_head_too_large = False
    _head_bytes = 0  # the target, names and values parsed so far
    _raw_head_bytes = 0  # bytes received since the head began (a header not yet parsed)
    _chunk_body_bytes = 0  # bytes of an earlier request's body in the chunk being parsed
    _num_headers = 0
    _lingered_bytes = -1  # from 0 once a 431 is sent: the bytes dropped since

    def data_received(self, data: bytes) -> None:
        if self._lingered_bytes >= 0:
            self._lingered_bytes += len(data)
            if self._lingered_bytes > LINGER_BYTES:
                self.transport.close()
            return
        self._chunk_body_bytes = 0
        super().data_received(data)
        if not self._is_in_head or self.transport.is_closing():
            return
        # httptools keeps an unfinished header to itself: count what arrives while it grows,
        # from the chunk the head began in (less an earlier request's body in that chunk: a
        # client's writes may arrive as one read however they were sent).
        self._raw_head_bytes += len(data) - self._chunk_body_bytes
        if self._raw_head_bytes > MAX_HEAD_BYTES:
            self._is_head_too_large = True
            self.logger.warning("Request head over %d bytes refused (431).", MAX_HEAD_BYTES)
            self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._is_in_head = True
        self._head_bytes = self._raw_head_bytes = self._num_headers = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._num_headers += 1
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        self._chunk_body_bytes += len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._is_in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._is_head_too_large:
            super().send_400_response(msg)
            return
        body = json.dumps(_too_large_body()).encode()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client reads the 431, then its end of the stream
        self._lingered_bytes = 0
        self.loop.call_later(LINGER_S, self.transport.close)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES or self._num_headers > MAX_HEADERS:
            self._is_head_too_large = True
            raise _HeadTooLarge


def _too_large_body() -> dict[str, dict[str, str | None]]:
    return InvalidRequestError(
        f"Request header fields too large: this server accepts at most {MAX_HEADERS} headers "
        f"and {MAX_HEAD_BYTES} bytes of request target and headers",
        code="request_header_fields_too_large",
    ).to_body()
