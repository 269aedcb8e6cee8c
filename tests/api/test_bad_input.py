"""Bad input gets a clear OpenAI-shaped 4xx, and the server keeps serving afterwards."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import Keys, auth, png_data_url


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zero pixels: tens of KB on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _image_message(url: str) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def _post(client: TestClient, key: str, body: object) -> httpx.Response:
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


def _assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in error["message"], error["message"]


def _truncated_png() -> str:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()[:2000]).decode()


BAD_BODIES = {
    "empty messages": ({"model": "gemma-3-demo", "messages": []}, 400, "messages"),
    "messages not a list": ({"model": "gemma-3-demo", "messages": "hi"}, 400, "messages"),
    "temperature wrong type": (
        {
            "model": "gemma-3-demo",
            "messages": [{"role": "user", "content": "x"}],
            "temperature": "hot",
        },
        400,
        "temperature",
    ),
    "unknown role": (
        {"model": "gemma-3-demo", "messages": [{"role": "robot", "content": "x"}]},
        400,
        "role",
    ),
    "missing model": ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    "bad model uri": (
        {"model": "gpt:/broken//", "messages": [{"role": "user", "content": "x"}]},
        400,
        "Failed to parse model URI",
    ),
    "unknown branch": (
        {"model": "gemma-3-demo/nightly", "messages": [{"role": "user", "content": "x"}]},
        400,
        "unknown branch",
    ),
    "unknown model": (
        {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
        404,
        "does not exist",
    ),
    "non-image base64": (
        {
            "model": "gemma-3-demo",
            "messages": _image_message(
                "data:image/png;base64," + base64.b64encode(b"hello world, not an image").decode()
            ),
        },
        400,
        "messages[0].content[1]",
    ),
    "truncated png": (
        {"model": "gemma-3-demo", "messages": _image_message(_truncated_png())},
        400,
        "messages[0].content[1]",
    ),
    "too many images": (
        {
            "model": "gemma-3-demo",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": png_data_url((i, 0, 0))}}
                        for i in range(5)
                    ],
                }
            ],
        },
        400,
        "Too many images",
    ),
    "image to a text-only model": (
        {"model": "text-only", "messages": _image_message(png_data_url((1, 2, 3)))},
        400,
        "does not accept images",
    ),
    "n above one": (
        {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "x"}], "n": 3},
        400,
        "n=3",
    ),
    "max_tokens over the model's cap": (
        {
            "model": "gemma-3-demo",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 100000,
        },
        400,
        "max_tokens is too large",
    ),
    "remote image url": (
        {"model": "gemma-3-demo", "messages": _image_message("http://example.com/cat.png")},
        400,
        "messages[0].content[1]",
    ),
    "image in a system message": (
        {
            "model": "gemma-3-demo",
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "image_url", "image_url": {"url": png_data_url((1, 1, 1))}}
                    ],
                }
            ],
        },
        400,
        "user messages only",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_body_gets_clear_4xx(client: TestClient, keys: Keys, case: str) -> None:
    body, status, fragment = BAD_BODIES[case]
    _assert_error(_post(client, keys.api_key, body), status, fragment)
    assert (
        _post(
            client,
            keys.api_key,
            {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "still ok"}]},
        ).status_code
        == 200
    )


def test_invalid_json(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=b'{"model": "gemma-3-demo", "messages": [',
        headers={**auth(keys.api_key), "Content-Type": "application/json"},
    )
    _assert_error(response, 400, "not valid JSON")


def test_decompression_bomb_is_refused(client: TestClient, keys: Keys) -> None:
    url = "data:image/png;base64," + base64.b64encode(bomb_png()).decode()
    response = _post(
        client, keys.api_key, {"model": "gemma-3-demo", "messages": _image_message(url)}
    )
    _assert_error(response, 400, "20000", "messages[0].content[1]")


def test_oversized_body_gets_413(client: TestClient, keys: Keys) -> None:
    huge = "data:image/png;base64," + "A" * 3_000_000
    response = _post(
        client, keys.api_key, {"model": "gemma-3-demo", "messages": _image_message(huge)}
    )
    _assert_error(response, 413, "too large")
    assert (
        _post(
            client,
            keys.api_key,
            {"model": "gemma-3-demo", "messages": [{"role": "user", "content": "ok"}]},
        ).status_code
        == 200
    )


def test_unknown_route_and_method(client: TestClient) -> None:
    _assert_error(client.get("/v1/nothing-here"), 404, "Unknown path")
    _assert_error(client.get("/v1/chat/completions"), 405, "not allowed")
