"""A database that cannot answer gives 503s to retry, never a 500, and the server recovers by
itself when it answers again."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.settings import Settings
from tests.conftest import Keys, auth


@pytest.fixture
def locked(fake_settings: Settings) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction holding the database (SQLite's EXCLUSIVE lock)."""
    path = fake_settings.sqlalchemy_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    yield holder
    holder.close()


def _upload(client: TestClient, key: str) -> httpx.Response:
    data = io.BytesIO(b'{"custom_id": "a"}\n')
    return client.post(
        "/v1/files",
        files={"file": ("in.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
        headers=auth(key),
    )


def test_a_database_too_busy_to_write_is_a_503_to_retry(
    client: TestClient, keys: Keys, locked: sqlite3.Connection
) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    assert _upload(client, keys.api_key).status_code == 200
    locked.execute("BEGIN EXCLUSIVE")  # waits out the server's busy timeout (5 s)
    try:
        refused = _upload(client, keys.api_key)
    finally:
        locked.execute("ROLLBACK")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    error = refused.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "retry" in error["message"]
    assert _upload(client, keys.api_key).status_code == 200
