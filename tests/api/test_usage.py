"""Usage records: chat and batch traffic from two folders, read back over HTTP and the CLI, on
SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fovea.app import create_app
from fovea.cli.main import app as cli
from fovea.settings import Settings
from tests.conftest import auth, make_keys, png_data_url
from tests.fakes import ScriptedEngine

USAGE = "/v1/organization/usage/completions"


@pytest.fixture
def fake_settings(fake_settings: Settings, migrated_database_url: str) -> Settings:
    """Each test here runs on SQLite and on PostgreSQL."""
    return fake_settings.model_copy(update={"database_url": migrated_database_url})


def _chat(client: TestClient, key: str, text: str, **extra: Any) -> dict[str, Any]:
    content: Any = text
    if extra.pop("image", False):
        content = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": png_data_url((200, 10, 10))}},
        ]
    body = {"model": "gemma-3-demo", "messages": [{"role": "user", "content": content}], **extra}
    response = client.post("/v1/chat/completions", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    if not extra.get("stream"):
        return dict(response.json()["usage"])
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    return dict(events[-1]["usage"])


def _batch_usage(client: TestClient, key: str, texts: list[str]) -> list[dict[str, Any]]:
    api = openai.OpenAI(
        api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0
    )
    lines = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gemma-3-demo", "messages": [{"role": "user", "content": text}]},
        }
        for i, text in enumerate(texts)
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    file_id = api.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id
    batch = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while (batch := api.batches.retrieve(batch.id)).status != "completed":
        assert batch.status in ("validating", "in_progress", "finalizing"), batch
        assert time.monotonic() < deadline, "the batch did not finish"
        time.sleep(0.05)
    assert batch.output_file_id is not None
    output = api.files.content(batch.output_file_id).text.splitlines()
    return [json.loads(line)["response"]["body"]["usage"] for line in output]


def _sum(usages: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "input_tokens": sum(u["prompt_tokens"] for u in usages),
        "output_tokens": sum(u["completion_tokens"] for u in usages),
        "input_image_tokens": sum(
            (u.get("prompt_tokens_details") or {}).get("image_tokens") or 0 for u in usages
        ),
        "num_model_requests": len(usages),
    }


def _results(client: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    query = {"start_time": int(time.time()) - 3600, **params}
    response = client.get(USAGE, params=query, headers=auth(key))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "page"
    return [result for bucket in page["data"] for result in bucket["results"]]


def _picked(result: dict[str, Any]) -> dict[str, int]:
    return {
        name: result[name]
        for name in ("input_tokens", "output_tokens", "input_image_tokens", "num_model_requests")
    }


def test_usage_of_two_folders_reads_back_exactly_over_http_and_the_cli(
    fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ScriptedEngine.instances.clear()
    keys = make_keys(fake_settings)
    iam = keys.iam
    iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    other = iam.create_folder("other-team")
    other_account = iam.create_service_account(other.id, "bot")
    iam.grant_role(other.id, other_account.id, "ai.editor")
    other_key = iam.create_key(other_account.id).secret

    with TestClient(create_app(fake_settings, engine_factory=ScriptedEngine)) as client:
        interactive = [
            _chat(client, keys.api_key, "hello there"),
            _chat(client, keys.api_key, "what is this", image=True),
            _chat(
                client,
                keys.api_key,
                "stream me",
                stream=True,
                stream_options={"include_usage": True},
            ),
        ]
        batch = _batch_usage(client, keys.api_key, ["one line", "another line here"])
        theirs = [_chat(client, other_key, "their question")]

        mine = _results(client, keys.api_key, group_by=["batch"])
        by_batch = {r["batch"]: _picked(r) for r in mine}
        assert by_batch == {False: _sum(interactive), True: _sum(batch)}
        assert {
            r["project_id"] for r in _results(client, keys.api_key, group_by=["project_id"])
        } == {keys.folder_id}
        their_view = _results(client, other_key)
        assert [_picked(r) for r in their_view] == [_sum(theirs)]

        # A folder's usage is not another folder's business.
        refused = client.get(
            USAGE,
            params={"start_time": 0, "project_ids": [keys.folder_id]},
            headers=auth(other_key),
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["type"]

        # Written at shutdown, though nobody asked for it before.
        last = _chat(client, other_key, "one more before the stop")

    monkeypatch.setenv("FOVEA_HOME", str(fake_settings.home))
    monkeypatch.setenv("FOVEA_DATABASE_URL", fake_settings.sqlalchemy_url)
    result = CliRunner().invoke(cli, ["usage", "--by", "folder", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["folder"]: row for row in json.loads(result.output)}
    everything_mine = _sum(interactive + batch)
    assert rows[keys.folder_id]["prompt_tokens"] == everything_mine["input_tokens"]
    assert rows[keys.folder_id]["completion_tokens"] == everything_mine["output_tokens"]
    assert rows[keys.folder_id]["image_tokens"] == everything_mine["input_image_tokens"]
    assert rows[keys.folder_id]["requests"] == 5
    assert rows[other.id]["requests"] == 2
    assert rows[other.id]["prompt_tokens"] == _sum([*theirs, last])["input_tokens"]

    csv_out = CliRunner().invoke(cli, ["usage", "--folder", "other-team", "--by", "day", "--csv"])
    assert csv_out.exit_code == 0, csv_out.output
    header, row = csv_out.output.strip().splitlines()
    assert header.startswith("day,requests,prompt_tokens")
    assert row.split(",")[1] == "2"


def test_usage_requests_that_cannot_be_answered_are_400s(client: TestClient, keys: Any) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.viewer")
    for params, param in (
        ({}, "start_time"),
        ({"start_time": 100, "end_time": 50}, "end_time"),
        ({"start_time": 0, "bucket_width": "1w"}, "bucket_width"),
        ({"start_time": 0, "bucket_width": "1d", "limit": 32}, "limit"),
        ({"start_time": 0, "page": "garbage"}, "page"),
        ({"start_time": 0, "group_by": ["colour"]}, "group_by"),
    ):
        response = client.get(USAGE, params=params, headers=auth(keys.api_key))
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert param in (error["param"] or "") + error["message"], (params, error)


def test_usage_pages_through_buckets(client: TestClient, keys: Any) -> None:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.viewer")
    _chat(client, keys.api_key, "counted once")
    now = int(time.time())
    start = now - 3 * 3600 + 1
    first = client.get(
        USAGE,
        params={"start_time": start, "bucket_width": "1h", "limit": 2},
        headers=auth(keys.api_key),
    ).json()
    assert [b["start_time"] for b in first["data"]] == [start, start + 3600]
    assert first["has_more"] is True
    second = client.get(
        USAGE,
        params={"start_time": start, "bucket_width": "1h", "limit": 2, "page": first["next_page"]},
        headers=auth(keys.api_key),
    ).json()
    assert second["data"][0]["start_time"] == start + 7200
    requests = [
        r["num_model_requests"]
        for page in (first, second)
        for b in page["data"]
        for r in b["results"]
    ]
    assert requests == [1]


def test_usage_needs_the_viewer_role(client: TestClient, keys: Any) -> None:
    """A key that may only use models (ai.languageModels.user) cannot read its folder's usage."""
    response = client.get(USAGE, params={"start_time": 0}, headers=auth(keys.api_key))
    assert response.status_code == 403
    assert "ai.viewer" in response.json()["error"]["message"]


def test_bad_usage_times_name_the_option_to_fix(
    fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOVEA_HOME", str(fake_settings.home))
    for args, option in ((["--since", "yesterday"], "--since"), (["--until", "soon"], "--until")):
        result = CliRunner().invoke(cli, ["usage", *args])
        assert result.exit_code == 2, result.output
        assert option in result.output and "ISO 8601" in result.output
