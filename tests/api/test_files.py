"""The Files API through the official openai client, on the real app (IAM, SQLite, disk)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.protocol.files import FILE_PURPOSES
from fovea.services.files import FileService
from fovea.settings import Settings
from tests.conftest import Keys, auth, make_keys
from tests.fakes import ScriptedEngine

MiB = 1024 * 1024


@pytest.fixture
def fake_settings(fake_settings: Settings, migrated_database_url: str) -> Settings:
    """Each test here runs on SQLite and on PostgreSQL."""
    return fake_settings.model_copy(update={"database_url": migrated_database_url})


def _api(client: TestClient, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0
    )


@pytest.fixture
def editor(keys: Keys) -> str:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    return keys.api_key


def _key_in_new_folder(keys: Keys, name: str, role: str) -> str:
    folder = keys.iam.create_folder(name)
    account = keys.iam.create_service_account(folder.id, f"{name}-sa")
    keys.iam.grant_role(folder.id, account.id, role)
    return keys.iam.create_key(account.id).secret


def _upload(
    client: TestClient, key: str, content: bytes = b"{}\n", purpose: str | None = "batch"
) -> httpx.Response:
    data = {"purpose": purpose} if purpose is not None else {}
    files = {"file": ("input.jsonl", content)}
    return client.post("/v1/files", files=files, data=data, headers=auth(key))


def _files_on_disk(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.storage_dir.rglob("*") if p.is_file())


def test_round_trip_with_the_openai_client(
    client: TestClient, editor: str, keys: Keys, fake_settings: Settings, tmp_path: Path
) -> None:
    api = _api(client, editor)
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b'{"custom_id": "1"}\n{"custom_id": "2"}\n')
    with source.open("rb") as handle:
        created = api.files.create(file=handle, purpose="batch")
    assert created.id.startswith("file-")
    assert (created.object, created.status, created.purpose) == ("file", "processed", "batch")
    assert created.filename == "requests.jsonl"
    assert created.bytes == source.stat().st_size
    assert created.expires_at is None
    assert abs(created.created_at - source.stat().st_mtime) < 60

    assert [f.id for f in api.files.list()] == [created.id]
    assert api.files.retrieve(created.id) == created
    assert api.files.content(created.id).read() == source.read_bytes()
    on_disk = fake_settings.storage_dir / keys.folder_id / created.id
    assert on_disk.read_bytes() == source.read_bytes()

    deleted = api.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    assert not on_disk.exists()
    assert _files_on_disk(fake_settings) == []
    with pytest.raises(openai.NotFoundError, match=f"No such File object: {created.id}"):
        api.files.retrieve(created.id)
    assert api.files.list().data == []


def test_content_type_and_length_of_a_download(client: TestClient, editor: str) -> None:
    file_id = _upload(client, editor, b"x" * 1000).json()["id"]
    response = client.get(f"/v1/files/{file_id}/content", headers=auth(editor))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jsonl"
    assert response.headers["content-length"] == "1000"
    assert response.content == b"x" * 1000


def test_roles_editor_writes_viewer_reads_user_neither(client: TestClient, keys: Keys) -> None:
    user = keys.api_key  # bootstrap's key: ai.languageModels.user only
    refused = _upload(client, user)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert client.get("/v1/files", headers=auth(user)).status_code == 403

    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.viewer")
    assert _upload(client, user).status_code == 403
    assert client.get("/v1/files", headers=auth(user)).status_code == 200

    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    file_id = _upload(client, user).json()["id"]
    assert client.delete(f"/v1/files/{file_id}", headers=auth(user)).json()["deleted"] is True


def test_other_folders_cannot_see_read_or_delete(
    client: TestClient, editor: str, keys: Keys
) -> None:
    file_id = _upload(client, editor, b"secret").json()["id"]
    stranger = _api(client, _key_in_new_folder(keys, "other", "ai.editor"))
    assert stranger.files.list().data == []
    for attempt in (
        stranger.files.retrieve,
        stranger.files.delete,
        lambda i: stranger.files.content(i).read(),
    ):
        with pytest.raises(openai.NotFoundError, match=f"No such File object: {file_id}"):
            attempt(file_id)
    assert _api(client, editor).files.content(file_id).read() == b"secret"


def test_a_folder_header_other_than_the_keys_is_refused(client: TestClient, editor: str) -> None:
    headers = {**auth(editor), "OpenAI-Project": "b1gsomeotherfolder00"}
    response = client.get("/v1/files", headers=headers)
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]["message"]


def test_bad_uploads_are_400s_naming_the_problem(
    client: TestClient, editor: str, fake_settings: Settings
) -> None:
    bad_purpose = _upload(client, editor, purpose="training")
    assert bad_purpose.status_code == 400
    error = bad_purpose.json()["error"]
    assert error["param"] == "purpose"
    assert all(purpose in error["message"] for purpose in FILE_PURPOSES)

    no_purpose = _upload(client, editor, purpose=None)
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["message"] == "Missing required parameter: 'purpose'."

    no_file = client.post("/v1/files", files={"purpose": (None, "batch")}, headers=auth(editor))
    assert no_file.status_code == 400
    assert no_file.json()["error"]["message"] == "Missing required parameter: 'file'."

    as_json = client.post("/v1/files", json={"purpose": "batch"}, headers=auth(editor))
    assert as_json.status_code == 400
    assert "multipart/form-data" in as_json.json()["error"]["message"]

    truncated = client.post(
        "/v1/files",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nab',
        headers={**auth(editor), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert truncated.status_code == 400
    assert "closing boundary" in truncated.json()["error"]["message"]
    assert _files_on_disk(fake_settings) == []  # nothing half-written is left behind


def test_every_openai_purpose_is_accepted(client: TestClient, editor: str) -> None:
    for purpose in FILE_PURPOSES:
        assert _upload(client, editor, purpose=purpose).json()["purpose"] == purpose
    listed = client.get("/v1/files", params={"purpose": "vision"}, headers=auth(editor)).json()
    assert [f["purpose"] for f in listed["data"]] == ["vision"]


def test_listing_pages_with_after_and_limit(client: TestClient, editor: str) -> None:
    ids = [_upload(client, editor, f"{n}\n".encode()).json()["id"] for n in range(5)]

    def page(**params: str | int) -> dict[str, Any]:
        response = client.get("/v1/files", params=params, headers=auth(editor))
        assert response.status_code == 200, response.text
        return dict(response.json())

    first = page(limit=2)
    assert [f["id"] for f in first["data"]] == ids[::-1][:2]  # newest first by default
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
    second = page(limit=2, after=first["last_id"])
    assert [f["id"] for f in second["data"]] == [ids[2], ids[1]]
    last = page(limit=2, after=second["last_id"])
    assert ([f["id"] for f in last["data"]], last["has_more"]) == ([ids[0]], False)
    ascending = page(order="asc", limit=3, after=ids[0])
    assert [f["id"] for f in ascending["data"]] == ids[1:4]

    assert [f.id for f in _api(client, editor).files.list(limit=2)] == ids[::-1]  # auto-paging
    bad_limit = client.get("/v1/files", params={"limit": 0}, headers=auth(editor))
    assert (bad_limit.status_code, bad_limit.json()["error"]["param"]) == (400, "limit")
    unknown_cursor = client.get("/v1/files", params={"after": "file-x"}, headers=auth(editor))
    assert unknown_cursor.status_code == 400


def test_files_survive_a_restart(fake_settings: Settings) -> None:
    with TestClient(create_app(fake_settings, engine_factory=ScriptedEngine)) as first:
        keys = make_keys(fake_settings)
        keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
        file_id = _upload(first, keys.api_key, b"kept\n").json()["id"]
    with TestClient(create_app(fake_settings, engine_factory=ScriptedEngine)) as second:
        assert _api(second, keys.api_key).files.content(file_id).read() == b"kept\n"
    keys.database.dispose()


def _limited_client(settings: Settings, **limits: int) -> TestClient:
    ScriptedEngine.instances.clear()
    return TestClient(create_app(settings.model_copy(update=limits), engine_factory=ScriptedEngine))


def _streamed(
    client: TestClient,
    key: str,
    body: AsyncIterator[bytes] | None = None,
    *,
    source: Path | None = None,
) -> httpx.Response:
    """POST an upload through an ASGI transport that passes the body on chunk by chunk.

    (TestClient reads a request's whole body into one message; a server reads it in pieces.)
    """

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            if source is not None:
                with source.open("rb") as handle:
                    files = {"file": (source.name, handle)}
                    data = {"purpose": "user_data"}
                    return await http.post("/v1/files", files=files, data=data, headers=auth(key))
            headers = {**auth(key), "Content-Type": "multipart/form-data; boundary=xyz"}
            return await http.post("/v1/files", content=body, headers=headers)

    assert client.portal is not None
    return client.portal.call(post)


def test_uploads_over_the_file_limit_get_413(fake_settings: Settings) -> None:
    with _limited_client(fake_settings, max_file_bytes=10_000) as client:
        keys = make_keys(fake_settings)
        keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
        declared = _upload(client, keys.api_key, b"x" * 20_000)
        assert declared.status_code == 413
        assert "FOVEA_MAX_FILE_BYTES" in declared.json()["error"]["message"]

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            for _ in range(10):
                yield b"x" * 4096
            yield b"\r\n--xyz--\r\n"

        streamed = _streamed(client, keys.api_key, chunked())
        assert streamed.status_code == 413
        assert "more than 10000 bytes" in streamed.json()["error"]["message"]
        assert _upload(client, keys.api_key, b"x" * 5_000).status_code == 200
        assert [p.stat().st_size for p in _files_on_disk(fake_settings)] == [5_000]
        keys.database.dispose()


def test_a_large_upload_streams_to_disk_past_the_request_limit(
    fake_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(20):
            out.write(os.urandom(MiB))
    assert fake_settings.max_request_bytes == 2_000_000  # a JSON body this size would get 413
    with _limited_client(fake_settings) as client:
        keys = make_keys(fake_settings)
        keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
        tracemalloc.start()
        try:
            response = _streamed(client, keys.api_key, source=source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 200, response.text
        assert response.json()["bytes"] == 20 * MiB
        assert peak < 5 * MiB  # client and server together held a fraction of the 20 MiB
        assert client.app.state.request_budget.peak <= MiB  # type: ignore[attr-defined]
        downloaded = hashlib.sha256()
        with client.stream(
            "GET", f"/v1/files/{response.json()['id']}/content", headers=auth(keys.api_key)
        ) as stream:
            for chunk in stream.iter_bytes():
                downloaded.update(chunk)
        assert downloaded.digest() == hashlib.sha256(source.read_bytes()).digest()
        keys.database.dispose()


def test_stored_files_for_the_batch_runner(client: TestClient, editor: str, keys: Keys) -> None:
    files: FileService = client.app.state.services.files  # type: ignore[attr-defined]

    def write(sink: BinaryIO) -> None:
        sink.write(b"line\n")

    stored = files.create_stored(keys.folder_id, "out.jsonl", "batch_output", write)
    assert stored.path.read_bytes() == b"line\n"
    assert files.get_stored(stored.id, keys.folder_id) == stored
    listed = _api(client, editor).files.retrieve(stored.id)
    assert (listed.purpose, listed.bytes) == ("batch_output", 5)

    def fail(sink: BinaryIO) -> None:
        sink.write(b"half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        files.create_stored(keys.folder_id, "x.jsonl", "batch_output", fail)
    assert [f.id for f in _api(client, editor).files.list()] == [stored.id]
    assert not list(stored.path.parent.glob("*.part"))


def test_partial_files_left_by_a_killed_writer_are_swept(
    client: TestClient, keys: Keys, fake_settings: Settings
) -> None:
    files: FileService = client.app.state.services.files  # type: ignore[attr-defined]
    stale = fake_settings.storage_dir / keys.folder_id / "file-dead.part"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    fresh = stale.with_name("file-writing.part")
    fresh.write_bytes(b"in progress")
    assert files.remove_stale_partials() == 1
    assert (stale.exists(), fresh.exists()) == (False, True)


def test_a_client_that_leaves_mid_upload_leaves_no_file(
    client: TestClient, editor: str, fake_settings: Settings
) -> None:
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    messages = [{"type": "http.request", "body": head + b"x" * 3 * MiB, "more_body": True}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = {**auth(editor), "content-type": "multipart/form-data; boundary=xyz"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/files",
        "raw_path": b"/v1/files",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    assert sent[0]["status"] == 499
    assert _files_on_disk(fake_settings) == []
    assert _api(client, editor).files.list().data == []
