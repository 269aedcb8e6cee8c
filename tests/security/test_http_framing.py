"""Malformed and abusive HTTP against a real ``fovea serve``, over raw sockets: request
smuggling (Content-Length against Transfer-Encoding), oversized heads, control characters in
header values. Each gets a clean 4xx and a closed connection, never a second request read out
of a body, and the next client is served."""

from __future__ import annotations

import json
import socket

import pytest

from fovea.api.http_protocol import MAX_HEAD_BYTES, MAX_HEADERS
from tests.security.conftest import Server

pytestmark = pytest.mark.slow


def exchange(server: Server, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def responses(answer: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``answer`` (all carry Content-Length)."""
    found = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        found.append((int(lines[0].split()[1]), rest[:length]))
        answer = rest[length:]
    return found


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + body


SMUGGLED = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"

MALFORMED = {
    "content-length and transfer-encoding": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 4\n"
        f"Transfer-Encoding: chunked\nConnection: close\n\n0\r\n\r\n{SMUGGLED}"
    ),
    "transfer-encoding and content-length": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
        f"Content-Length: 40\nConnection: close\n\n0\r\n\r\n{SMUGGLED}"
    ),
    "two content-lengths": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 40\n"
        f"Connection: close\n\n{{}}{SMUGGLED}"
    ),
    "two equal content-lengths": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 2\n"
        "Connection: close\n\n{}"
    ),
    "obfuscated transfer-encoding": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nTransfer-Encoding: xchunked\n"
        f"Connection: close\n\n0\r\n\r\n{SMUGGLED}"
    ),
    "chunk size that is not hex": request(
        "POST /v1/chat/completions HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
        "Connection: close\n\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "bare LF injecting a header": request(
        "GET /v1/models HTTP/1.1\nHost: x\nX-Note: a\x0aAuthorization: Bearer x\r\n"
        "Connection: close\n\n"
    ),
    "bare CR injecting a header": request(
        "GET /v1/models HTTP/1.1\nHost: x\nX-Note: a\x0dAuthorization: Bearer x\n"
        "Connection: close\n\n"
    ),
    "NUL in a header value": request(
        "GET /v1/models HTTP/1.1\nHost: x\nX-Note: a\x00b\nConnection: close\n\n"
    ),
    "control character in a header value": request(
        "GET /v1/models HTTP/1.1\nHost: x\nX-Note: a\x01b\nConnection: close\n\n"
    ),
    "folded header line": request(
        "GET /v1/models HTTP/1.1\nHost: x\nX-Note: a\n b\nConnection: close\n\n"
    ),
    "space before the colon": request(
        "GET /v1/models HTTP/1.1\nHost: x\nAuthorization : Bearer x\nConnection: close\n\n"
    ),
    "not HTTP at all (a TLS hello)": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(64),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_get_400_and_nothing_smuggled(server: Server, data: bytes) -> None:
    answers = responses(exchange(server, data))
    assert [status for status, _ in answers] == [400]  # one answer: nothing read from a body
    assert server.is_serving()


def _headers(count: int, size: int) -> str:
    return "".join(f"X-Filler-{i}: {'v' * size}\n" for i in range(count))


OVERSIZED = {
    "one huge header": request(
        f"GET /v1/models HTTP/1.1\nHost: x\n{_headers(1, 4 * MAX_HEAD_BYTES)}\n"
    ),
    "too many headers": request(
        f"GET /v1/models HTTP/1.1\nHost: x\n{_headers(MAX_HEADERS + 1, 1)}\n"
    ),
    "many headers too large together": request(
        f"GET /v1/models HTTP/1.1\nHost: x\n{_headers(MAX_HEADERS // 2, 2048)}\n"
    ),
    "huge request target": request(
        f"GET /v1/models?q={'a' * 2 * MAX_HEAD_BYTES} HTTP/1.1\nHost: x\n\n"
    ),
}


@pytest.mark.parametrize("data", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_heads_get_431_and_the_server_stays_up(server: Server, data: bytes) -> None:
    [(status, body)] = responses(exchange(server, data))
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
    assert server.is_serving()


def test_a_head_dripped_in_small_writes_is_refused_at_the_limit(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        sent = 0
        try:
            while sent <= 2 * MAX_HEAD_BYTES:  # the server answers and closes on the way
                sock.sendall(b"a" * 1024)
                sent += 1024
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert server.is_serving()


def test_an_unfinished_head_over_the_limit_in_one_write_is_refused(server: Server) -> None:
    # The head's first bytes and the overflow arrive together: one read holds them all.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert server.is_serving()


def test_heads_under_the_limits_and_large_bodies_are_served(server: Server) -> None:
    auth = f"Authorization: Bearer {server.api_key}\n"
    near_limit = _headers(MAX_HEADERS - 10, MAX_HEAD_BYTES // (2 * MAX_HEADERS))
    body = json.dumps({"model": "none", "messages": [], "pad": "x" * 1_000_000}).encode()
    pipelined = (
        request(f"GET /v1/models HTTP/1.1\nHost: x\n{auth}{near_limit}\n")
        # A small head and a large body in one write: the body is not counted as head.
        + request(
            "POST /v1/chat/completions HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"{auth}Content-Length: {len(body)}\n\n",
            body,
        )
        + request(f"GET /v1/models HTTP/1.1\nHost: x\n{auth}Connection: close\n\n")
    )
    answers = responses(exchange(server, pipelined))
    assert [status for status, _ in answers] == [200, 400, 200]
    # The body was read whole and judged by the app (it names the missing messages).
    assert "messages" in json.loads(answers[1][1])["error"]["message"]
