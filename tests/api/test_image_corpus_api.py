"""The nastiest images of the hostile corpus, sent over HTTP: each gets its 4xx, and the server
answers normal requests afterwards."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Keys, auth, png_data_url
from tests.media.corpus import Refused, build_corpus

# Refused the same way under the app's default limits as under the corpus's own.
NASTIEST = [
    "bomb_png_20000_square",
    "bomb_png_zeros_8000_square",
    "bomb_webp_canvas_16383",
    "bomb_gif_logical_screen_65535",
    "bomb_bmp_header_100000_square",
    "bomb_jpeg_sof_65500_square",
    "bomb_png_ztxt_text_chunk",
    "jpeg_truncated_mid_scan",
    "png_bad_ihdr_crc",
    "png_idat_bit_flipped",
    "b64_padding_in_the_middle",
    "b64_non_ascii_letter",
]


def _chat(client: TestClient, key: str, image_url: str) -> tuple[int, dict[str, object]]:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": image_url}},
    ]
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": content}]}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    return response.status_code, response.json()


def test_nasty_images_get_their_4xx_and_the_server_keeps_serving(
    client: TestClient, keys: Keys
) -> None:
    for name, case in build_corpus(NASTIEST).items():
        assert isinstance(case.expected, Refused)
        status, body = _chat(client, keys.api_key, case.url)
        assert status == case.expected.status, (name, body)
        error = body["error"]
        assert isinstance(error, dict)
        assert case.expected.fragment in error["message"], (name, error)
        assert error["param"] == "messages[0].content[1]", (name, error)
    status, body = _chat(client, keys.api_key, png_data_url((200, 30, 30)))
    assert status == 200, body
