"""A presented secret is checked by comparing SHA-256 digests with ``hmac.compare_digest``, on
the cached path and the database path alike: a secret wrong in its first character and one wrong
in its last are refused the same way, through the same comparison, and an unknown key id reads
the same as a wrong secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys
from tests.fakes import ScriptedEngine


def forged(key: str, position: int) -> str:
    prefix, secret = key.rsplit(".", 1)
    chars = list(secret)
    chars[position] = "B" if chars[position] == "A" else "A"
    return f"{prefix}.{''.join(chars)}"


@pytest.fixture
def cached_client(fake_settings: Settings) -> Iterator[tuple[TestClient, Keys]]:
    """The app with its auth cache on: the second use of a key is checked from memory."""
    settings = fake_settings.model_copy(update={"auth_cache_ttl_s": 60.0})
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys = make_keys(settings)
        yield client, keys
        keys.database.dispose()


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``hmac.compare_digest`` call's arguments, the comparison still done."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def digest(key: str) -> str:
    return hashlib.sha256(key.rsplit(".", 1)[1].encode()).hexdigest()


@pytest.mark.parametrize("is_cached", [False, True], ids=["from the database", "from the cache"])
def test_first_and_last_character_errors_are_refused_alike_through_compare_digest(
    cached_client: tuple[TestClient, Keys], comparisons: list[tuple[str, str]], is_cached: bool
) -> None:
    client, keys = cached_client
    if is_cached:
        assert client.get("/v1/models", headers=auth(keys.api_key)).status_code == 200
    stored = digest(keys.api_key)
    answers = []
    for wrong in (forged(keys.api_key, 0), forged(keys.api_key, -1)):
        comparisons.clear()
        response = client.get("/v1/models", headers=auth(wrong))
        answers.append((response.status_code, response.json()))
        # One comparison of whole digests: the presented secret's SHA-256 against the stored one.
        assert comparisons == [(digest(wrong), stored)]
    assert answers[0] == answers[1]
    assert answers[0] == (
        401,
        {
            "error": {
                "message": "Unknown api key",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
    )


def test_an_unknown_key_id_reads_as_a_wrong_secret(
    cached_client: tuple[TestClient, Keys],
) -> None:
    client, keys = cached_client
    unknown_id = f"fva.{'0' * 20}.{keys.api_key.rsplit('.', 1)[1]}"
    wrong_secret = client.get("/v1/models", headers=auth(forged(keys.api_key, 5)))
    unknown = client.get("/v1/models", headers=auth(unknown_id))
    assert (unknown.status_code, unknown.json()) == (wrong_secret.status_code, wrong_secret.json())
