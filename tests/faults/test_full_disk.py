"""A full disk, for real (a 2 MiB tmpfs): under the files it is a 507 saying what to do, with
nothing half-written; under the database likewise; and both recover once space returns."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from tests.conftest import auth, make_keys
from tests.fakes import ScriptedEngine

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def _editor_client(settings: Settings) -> tuple[TestClient, dict[str, str]]:
    keys = make_keys(settings)
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    keys.database.dispose()
    ScriptedEngine.instances.clear()
    app = create_app(settings, engine_factory=ScriptedEngine)
    return TestClient(app, raise_server_exceptions=False), auth(keys.api_key)


def _upload(client: TestClient, key: dict[str, str], data: bytes) -> httpx.Response:
    files = {"file": ("data.jsonl", data, "application/jsonl")}
    return client.post("/v1/files", files=files, data={"purpose": "batch"}, headers=key)


def _fill(disk: Path) -> Path:
    """A file taking every byte left on ``disk``."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as sink:
        try:
            while sink.write(b"\0" * 4 * KiB):
                pass
        except OSError:
            pass
    return filler


def _files_on(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_insufficient_storage(response: httpx.Response, says: str) -> None:
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "insufficient_storage")
    assert says in error["message"]
    assert "free" in error["message"]  # what to do about it


def test_a_full_files_disk_is_a_507_and_leaves_nothing(
    fake_settings: Settings, small_disk: Path
) -> None:
    settings = fake_settings.model_copy(update={"files_dir": small_disk})
    client, key = _editor_client(settings)
    with client:
        refused = _upload(client, key, b"x" * 3 * MiB)
        _assert_insufficient_storage(refused, "file storage is full")
        assert client.get("/v1/files", headers=key).json()["data"] == []
        assert _files_on(small_disk) == []  # no partial file left

        filler = _fill(small_disk)
        _assert_insufficient_storage(_upload(client, key, b"y" * 64 * KiB), "storage is full")
        assert _files_on(small_disk) == [filler]

        filler.unlink()  # space returns
        stored = _upload(client, key, b"y" * MiB)
        assert stored.status_code == 200, stored.text
        content = client.get(f"/v1/files/{stored.json()['id']}/content", headers=key)
        assert content.content == b"y" * MiB


def test_a_full_database_disk_is_a_507_and_leaves_no_file(
    fake_settings: Settings, small_disk: Path, tmp_path: Path
) -> None:
    files_dir = tmp_path / "files"
    settings = fake_settings.model_copy(
        update={"database_url": f"sqlite:///{small_disk / 'fovea.db'}", "files_dir": files_dir}
    )
    client, key = _editor_client(settings)
    with client:
        filler = _fill(small_disk)
        stored: list[str] = []
        for _ in range(500):  # the database's free pages and journal run out
            answer = _upload(client, key, b"z" * 4 * KiB)
            if answer.status_code != 200:
                break
            stored.append(answer.json()["id"])
        _assert_insufficient_storage(answer, "database's disk is full")
        filler.unlink()  # space returns

        listed = client.get("/v1/files", params={"limit": 1000}, headers=key).json()["data"]
        assert sorted(f["id"] for f in listed) == sorted(stored)
        # The refused upload's bytes went with it: every file on disk is a listed file's.
        assert [p.name for p in _files_on(files_dir)] == sorted(stored)

        again = _upload(client, key, b"w" * 4 * KiB)
        assert again.status_code == 200, again.text
