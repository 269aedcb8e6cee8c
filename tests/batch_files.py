"""Batch helpers for tests through the app: upload JSONL lines, wait for the batch to end,
read its output or error file by custom_id."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth


def upload_lines(client: TestClient, key: str, lines: list[dict[str, Any]]) -> str:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    files = {"file": ("in.jsonl", data)}
    response = client.post("/v1/files", files=files, data={"purpose": "batch"}, headers=auth(key))
    file_id: str = response.json()["id"]
    return file_id


def finished_batch(client: TestClient, key: str, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}", headers=auth(key)).json()
        if batch["status"] in ("completed", "failed"):
            return batch
        time.sleep(0.05)
    raise AssertionError("the batch did not finish")


def batch_rows(client: TestClient, key: str, file_id: str) -> dict[str, Any]:
    content = client.get(f"/v1/files/{file_id}/content", headers=auth(key)).text
    return {row["custom_id"]: row for row in map(json.loads, content.splitlines())}
