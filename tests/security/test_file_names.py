"""Hostile upload names (traversal, absolute and Windows paths, NUL and control characters,
bidi overrides, 5000 characters): the bytes land under the storage directory under the file's
id, the name reported back is one plain component, and downloads are attachments whose
Content-Disposition cannot be broken out of."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.settings import Settings
from tests.conftest import Keys, auth

BOUNDARY = "hostile-name-boundary"

# What the client puts in filename="..." (raw bytes), and the name Fovea must report.
NAMES = {
    "traversal": (b"../../etc/passwd", "passwd"),
    "absolute path": (b"/etc/passwd", "passwd"),
    "windows traversal": (b"..\\..\\Windows\\win.ini", "win.ini"),
    "windows drive": (b"C:\\Users\\eve\\report.txt", "report.txt"),
    "NUL inside": (b"notes\x00.txt", "notes.txt"),
    "NUL hiding a traversal": (b"..\x00/..\x00/x.txt", "x.txt"),
    "only dots": (b"..", "file"),
    "dots and NUL": (b".\x00.", "file"),
    "tab and escape": (b"a\tb\x1b[31m.txt", "ab[31m.txt"),
    "bidi override": ("invoice\u202egpj.exe".encode(), "invoicegpj.exe"),
    "long": (b"x" * 1000 + b".jsonl", "x" * 249 + ".jsonl"),
    "quote and semicolon": (b'q\\"; filename=evil.sh', 'q"; filename=evil.sh'),
    "html page": (b"page.html", "page.html"),
}


@pytest.fixture
def editor(keys: Keys) -> str:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    return keys.api_key


def upload(client: TestClient, key: str, raw_name: bytes) -> httpx.Response:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="'
        ).encode()
        + raw_name
        + f'"\r\n\r\nhello\r\n--{BOUNDARY}--\r\n'.encode()
    )
    headers = {**auth(key), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return client.post("/v1/files", content=body, headers=headers)


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize(("raw_name", "expected"), NAMES.values(), ids=NAMES.keys())
def test_hostile_names_stay_in_storage_and_come_back_plain(
    client: TestClient,
    editor: str,
    keys: Keys,
    fake_settings: Settings,
    raw_name: bytes,
    expected: str,
) -> None:
    before = files_under(fake_settings.home)
    created = upload(client, editor, raw_name)
    assert created.status_code == 200, created.text
    file = created.json()
    assert file["filename"] == expected

    # The only new file is the upload's bytes, named by its id in the folder's directory.
    stored = fake_settings.storage_dir / keys.folder_id / file["id"]
    new = {p for p in files_under(fake_settings.home) - before if not p.name.startswith("fovea.db")}
    assert new == {stored}
    assert stored.read_bytes() == b"hello"

    listed = client.get("/v1/files", headers=auth(editor)).json()["data"]
    assert [f["filename"] for f in listed] == [expected]

    download = client.get(f"/v1/files/{file['id']}/content", headers=auth(editor))
    assert download.status_code == 200 and download.content == b"hello"
    assert download.headers["x-content-type-options"] == "nosniff"
    disposition = download.headers["content-disposition"]
    match = re.fullmatch(
        r"attachment; filename=\"([^\"\\]*)\"; filename\*=UTF-8''(\S+)", disposition
    )
    assert match is not None, disposition
    assert unquote(match[2]) == expected


def test_a_jsonl_file_downloads_as_parquet_under_its_own_name(
    client: TestClient, editor: str
) -> None:
    rows = {"file": ("../rows.jsonl", b'{"request": {"messages": []}}\n')}
    file = client.post("/v1/files", files=rows, data={"purpose": "batch"}, headers=auth(editor))
    file = file.json()
    assert file["filename"] == "rows.jsonl"
    parquet = client.get(f"/v1/files/{file['id']}/content?format=parquet", headers=auth(editor))
    assert parquet.status_code == 200, parquet.text
    assert parquet.headers["content-disposition"] == (
        "attachment; filename=\"rows.parquet\"; filename*=UTF-8''rows.parquet"
    )


def test_a_name_too_long_for_a_part_header_is_a_clear_400(
    client: TestClient, editor: str, fake_settings: Settings
) -> None:
    refused = upload(client, editor, b"../" * 5000 + b"x.txt")
    assert refused.status_code == 400
    assert "header" in refused.json()["error"]["message"]
    assert not [path for path in fake_settings.storage_dir.rglob("*") if path.is_file()]
