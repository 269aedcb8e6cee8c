"""http(s) image URLs through the chat API: refused by default, fetched when the operator allows.

The image server runs on 127.0.0.1, so fetching from it needs ``allow_private``; with the
default (public addresses only) the same URL is refused before any connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys
from tests.fakes import ScriptedEngine
from tests.image_server import CAT_PNG, ImageServer, redirect_path, serve_images

POSITION = "messages[0].content[1]"


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with serve_images() as running:
        yield running


def _ask_about(client: TestClient, key: str, url: str) -> httpx.Response:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": content}]}
    return client.post("/v1/chat/completions", json=body, headers=auth(key))


@pytest.fixture
def fetching(fake_settings: Settings) -> Iterator[tuple[TestClient, Keys]]:
    """An app that fetches images from localhost, private addresses allowed (as an intranet)."""
    settings = fake_settings.model_copy(
        update={
            "image_urls_enabled": True,
            "image_url_allowed_domains": ["localhost"],
            "image_url_allow_private": True,
            "max_image_bytes": 1024 * 1024,
        }
    )
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        yield client, keys
        keys.database.dispose()


def test_image_urls_are_refused_by_default(
    client: TestClient, keys: Keys, server: ImageServer
) -> None:
    before = len(server.requests)
    response = _ask_about(client, keys.api_key, server.url("/cat.png", host="localhost"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"].startswith("Remote image URLs are disabled on this server")
    assert (error["code"], error["param"]) == ("invalid_image", POSITION)
    assert len(server.requests) == before


def test_an_allowed_image_url_reaches_the_engine_decoded(
    fetching: tuple[TestClient, Keys], server: ImageServer
) -> None:
    client, keys = fetching
    response = _ask_about(client, keys.api_key, server.url("/cat.png", host="localhost"))
    assert response.status_code == 200, response.text
    engine = next(e for e in ScriptedEngine.instances if e.requests)
    image = engine.requests[-1].messages[0].parts[1].image  # type: ignore[union-attr]
    assert (image.width, image.height) == (40, 30)
    assert image.rgb[:3] == bytes([200, 10, 10])
    assert image.digest.split("@")[0] == hashlib.sha256(CAT_PNG).hexdigest()


@pytest.mark.parametrize(
    ("path", "status", "code", "words"),
    [
        ("/missing.png", 400, "image_fetch_failed", "HTTP 404"),
        ("/huge-declared", 413, "payload_too_large", "max_image_bytes"),
        ("/loop", 400, "image_fetch_failed", "redirected more than 3 times"),
    ],
)
def test_fetch_failures_are_openai_shaped_errors(
    path: str,
    status: int,
    code: str,
    words: str,
    fetching: tuple[TestClient, Keys],
    server: ImageServer,
) -> None:
    client, keys = fetching
    response = _ask_about(client, keys.api_key, server.url(path, host="localhost"))
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == POSITION
    assert words in error["message"] and POSITION in error["message"]


def test_hosts_off_the_allow_list_are_refused(
    fetching: tuple[TestClient, Keys], server: ImageServer
) -> None:
    client, keys = fetching
    redirect = server.url(
        redirect_path("http://169.254.169.254/latest/meta-data/"), host="localhost"
    )
    for url in (server.url("/cat.png"), redirect):
        response = _ask_about(client, keys.api_key, url)
        assert response.status_code == 400
        assert "is not allowed on this server" in response.json()["error"]["message"]


def test_private_addresses_are_refused_unless_allowed(
    fake_settings: Settings, server: ImageServer
) -> None:
    settings = fake_settings.model_copy(
        update={"image_urls_enabled": True, "image_url_allowed_domains": ["*"]}
    )
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        before = len(server.requests)
        for host in ("localhost", "127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1"):
            response = _ask_about(client, keys.api_key, server.url("/cat.png", host=host))
            assert response.status_code == 400
            assert "is not a public address" in response.json()["error"]["message"]
        assert len(server.requests) == before
        keys.database.dispose()
