"""The Batches API through the official openai client, on the real app with a scripted engine."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import openai
import pytest
from fastapi.testclient import TestClient

from fovea.settings import Settings
from tests.conftest import Keys, png_data_url
from tests.fakes import ScriptedEngine


@pytest.fixture
def fake_settings(fake_settings: Settings, migrated_database_url: str) -> Settings:
    """Each test here runs on SQLite and on PostgreSQL."""
    return fake_settings.model_copy(update={"database_url": migrated_database_url})


def _client(client: TestClient, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0
    )


@pytest.fixture
def editor(keys: Keys) -> Iterator[Keys]:
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    yield keys


def _line(custom_id: str, text: str, **body: object) -> dict[str, object]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gemma-3-demo", "messages": [{"role": "user", "content": text}], **body},
    }


def _upload(api: openai.OpenAI, lines: list[object]) -> str:
    data = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    return api.files.create(file=("in.jsonl", io.BytesIO(data.encode())), purpose="batch").id


def _wait(api: openai.OpenAI, batch_id: str, statuses: tuple[str, ...]) -> openai.types.Batch:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = api.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch stuck in {batch.status}")


def _until_completed(api: openai.OpenAI, batch_id: str, lines: int) -> None:
    """Wait until the running batch has finished ``lines`` lines."""
    _wait(api, batch_id, ("in_progress",))
    deadline = time.monotonic() + 20
    while (counts := api.batches.retrieve(batch_id).request_counts) is None or (
        counts.completed < lines
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _jsonl(api: openai.OpenAI, file_id: str | None) -> list[dict[str, object]]:
    assert file_id is not None
    return [json.loads(line) for line in api.files.content(file_id).text.splitlines()]


def test_a_multimodal_batch_runs_to_completion(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    image = png_data_url((200, 10, 10))
    lines = [
        _line("a", "first question"),
        {
            **_line("b", ""),
            "body": {
                "model": "gemma-3-demo",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this"},
                            {"type": "image_url", "image_url": {"url": image}},
                        ],
                    }
                ],
            },
        },
        _line("c", "third question", max_tokens=2),
    ]
    batch = api.batches.create(
        input_file_id=_upload(api, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "test"},
    )
    assert batch.status == "validating"
    done = _wait(api, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
    assert done.metadata == {"job": "test"}
    assert done.error_file_id is None
    output = {row["custom_id"]: row for row in _jsonl(api, done.output_file_id)}
    assert set(output) == {"a", "b", "c"}
    answer_b = output["b"]["response"]["body"]["choices"][0]["message"]["content"]  # type: ignore[index]
    assert answer_b.startswith("echo: what is this images: ")
    assert output["c"]["response"]["body"]["usage"]["completion_tokens"] == 2  # type: ignore[index]


def test_malformed_lines_go_to_the_error_file(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    lines: list[object] = [
        _line("ok", "fine"),
        "{not json",
        {**_line("x", "y"), "url": "/v1/embeddings"},
        {k: v for k, v in _line("nocustom", "z").items() if k != "custom_id"},
        _line("ok", "duplicate custom id"),
        {
            **_line("badimage", ""),
            "body": {
                "model": "gemma-3-demo",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,aGk="},
                            }
                        ],
                    }
                ],
            },
        },
        _line("ok2", "also fine"),
    ]
    batch = api.batches.create(
        input_file_id=_upload(api, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = _wait(api, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (
        done.request_counts.total,
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (7, 2, 5)
    assert {row["custom_id"] for row in _jsonl(api, done.output_file_id)} == {"ok", "ok2"}
    errors = {row["line"]: row for row in _jsonl(api, done.error_file_id)}
    assert set(errors) == {2, 3, 4, 5, 6}
    assert "not valid JSON" in errors[2]["error"]["message"]  # type: ignore[index]
    assert "does not match the batch's endpoint" in errors[3]["error"]["message"]  # type: ignore[index]
    assert "custom_id" in errors[4]["error"]["message"]  # type: ignore[index]
    assert "used twice" in errors[5]["error"]["message"]  # type: ignore[index]
    bad_image = errors[6]["response"]
    assert bad_image["status_code"] == 400  # type: ignore[index]
    assert errors[6]["custom_id"] == "badimage"


def test_a_custom_id_too_long_to_keep_is_one_failed_line(client: TestClient, editor: Keys) -> None:
    """Over 512 characters the id cannot be stored (PostgreSQL enforces the column's length):
    the line fails on its own, the batch goes on."""
    api = _client(client, editor.api_key)
    lines: list[object] = [_line("ok", "fine"), _line("x" * 600, "too long an id")]
    batch = api.batches.create(
        input_file_id=_upload(api, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = _wait(api, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    (error,) = _jsonl(api, done.error_file_id)
    assert error["custom_id"] is None
    assert "custom_id" in error["error"]["message"]  # type: ignore[index]


def test_a_file_that_is_not_jsonl_fails_the_batch(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    batch = api.batches.create(
        input_file_id=_upload(api, ["this is", "not json at all"]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = _wait(api, batch.id, ("completed", "failed"))
    assert done.status == "failed"
    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].line == 1


def test_cancel_keeps_finished_lines(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    for engine in ScriptedEngine.instances:
        engine.delay_s = 0.05
    lines = [_line(f"id{i}", "one two three four") for i in range(40)]
    batch = api.batches.create(
        input_file_id=_upload(api, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    _until_completed(api, batch.id, 2)
    cancelling = api.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = _wait(api, batch.id, ("cancelled",))
    assert done.request_counts is not None
    finished = done.request_counts.completed
    assert 2 <= finished < 40
    assert len(_jsonl(api, done.output_file_id)) == finished


def test_other_folders_cannot_see_or_touch_batches(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    file_id = _upload(api, [_line("a", "hi")])
    batch = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    folder = editor.iam.create_folder("other")
    account = editor.iam.create_service_account(folder.id, "intruder")
    editor.iam.grant_role(folder.id, account.id, "ai.editor")
    intruder = _client(client, editor.iam.create_key(account.id).secret)
    with pytest.raises(openai.NotFoundError):
        intruder.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        intruder.batches.cancel(batch.id)
    assert intruder.batches.list().data == []
    with pytest.raises(openai.NotFoundError):  # nor use the other folder's file
        intruder.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_roles_editor_creates_viewer_reads(client: TestClient, keys: Keys) -> None:
    user = _client(client, keys.api_key)  # ai.languageModels.user only
    with pytest.raises(openai.PermissionDeniedError):
        user.batches.create(
            input_file_id="file-x", endpoint="/v1/chat/completions", completion_window="24h"
        )
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.viewer")
    assert user.batches.list().data == []


def test_bad_batch_requests_are_400s(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    file_id = _upload(api, [_line("a", "hi")])
    with pytest.raises(openai.BadRequestError, match="Unsupported endpoint"):
        api.batches.create(
            input_file_id=file_id, endpoint="/v1/completions", completion_window="24h"
        )
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        api.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="1h"
        )  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        api.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_dataset_rows_get_a_response_column(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    image_b64 = png_data_url((1, 2, 3)).split(",", 1)[1]
    rows = [
        {
            "request": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "describe"},
                        {"type": "image", "image": image_b64},
                    ],
                }
            ]
        },
        {"request": [{"role": "system", "text": "be short"}, {"role": "user", "text": "hello"}]},
    ]
    batch = api.batches.create(
        input_file_id=_upload(api, rows),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"model": f"gpt://{editor.folder_id}/gemma-3-demo"},
    )
    done = _wait(api, batch.id, ("completed", "failed"))
    assert done.status == "completed"
    output = _jsonl(api, done.output_file_id)
    assert [row["request"] for row in output] == [row["request"] for row in rows]
    assert str(output[0]["response"]).startswith("echo: describe images: ")
    assert output[1]["response"] == "echo: hello"


def test_lines_left_at_expiry_are_reported_expired(client: TestClient, editor: Keys) -> None:
    from datetime import UTC, datetime, timedelta

    from fovea.store.tables import BatchRecord

    api = _client(client, editor.api_key)
    for engine in ScriptedEngine.instances:
        engine.delay_s = 0.05
    lines = [_line(f"id{i}", "one two three four") for i in range(30)]
    batch = api.batches.create(
        input_file_id=_upload(api, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    _until_completed(api, batch.id, 1)
    # From now on a line takes minutes: the expiry, noticed within the runner's poll (1 s),
    # comes before the rest (it raced them when a line took 0.2 s).
    for engine in ScriptedEngine.instances:
        engine.delay_s = 60
    with editor.database.session() as session, session.begin():
        record = session.get(BatchRecord, batch.id)
        assert record is not None
        record.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    done = _wait(api, batch.id, ("expired",))
    assert done.expired_at is not None
    assert done.request_counts is not None
    finished = done.request_counts.completed
    assert 1 <= finished < 30
    expired = _jsonl(api, done.error_file_id)
    assert len(expired) == 30 - finished
    assert {row["error"]["code"] for row in expired} == {"batch_expired"}  # type: ignore[index]
    assert len(_jsonl(api, done.output_file_id)) == finished


def test_deleting_the_input_file_fails_the_batch_clearly(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    for engine in ScriptedEngine.instances:
        engine.delay_s = 0.05
    file_id = _upload(api, [_line(f"id{i}", "one two three") for i in range(30)])
    batch = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    _wait(api, batch.id, ("in_progress",))
    api.files.delete(file_id)
    done = _wait(api, batch.id, ("failed", "completed"))
    assert done.status == "failed"
    assert done.errors is not None
    assert done.errors.data[0].code == "input_file_missing"


def test_more_bad_batch_requests(client: TestClient, editor: Keys) -> None:
    headers = {"Authorization": f"Bearer {editor.api_key}"}
    file_id = _upload(_client(client, editor.api_key), [_line("a", "hi")])
    too_much = {f"k{i}": "v" for i in range(17)}
    cases = [
        (
            {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "metadata": too_much},
            "metadata",
        ),
        ({"endpoint": "/v1/chat/completions"}, "input_file_id"),
        (
            {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "input_format": "xml"},
            "input_format",
        ),
        (
            {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "model": "gpt:/bad"},
            "model URI",
        ),
    ]
    for body, fragment in cases:
        response = client.post("/v1/batches", json=body, headers=headers)
        assert response.status_code == 400, response.text
        assert fragment in response.json()["error"]["message"]
    bad_json = client.post(
        "/v1/batches", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert client.get("/v1/batches?limit=0", headers=headers).status_code == 400
    assert client.get("/v1/batches/batch_nope", headers=headers).status_code == 404
    assert client.post("/v1/batches/batch_nope/cancel", headers=headers).status_code == 404


def test_batch_wide_options_apply_to_lines_that_do_not_set_them(
    client: TestClient, editor: Keys
) -> None:
    api = _client(client, editor.api_key)
    lines = [_line("default", "one two three four five"), _line("own", "a b c d e", max_tokens=4)]
    batch = api.batches.create(
        input_file_id=_upload(api, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"completion_options": {"max_tokens": 2, "temperature": 0}},
    )
    assert batch.model_extra is not None
    assert batch.model_extra["completion_options"] == {"max_tokens": 2, "temperature": 0.0}
    done = _wait(api, batch.id, ("completed", "failed"))
    output = {row["custom_id"]: row["response"]["body"] for row in _jsonl(api, done.output_file_id)}  # type: ignore[index]
    assert output["default"]["usage"]["completion_tokens"] == 2
    assert output["own"]["usage"]["completion_tokens"] == 4


def test_bad_batch_wide_options_are_400s(client: TestClient, editor: Keys) -> None:
    api = _client(client, editor.api_key)
    file_id = _upload(api, [_line("a", "hi")])
    for options, words in [
        ({"max_tokens": 0}, "completion_options.max_tokens"),
        ({"temperature": 3}, "completion_options.temperature"),
        ({"messages": []}, "completion_options.messages"),
        ({"response_format": {"type": "yaml"}}, "completion_options.response_format.type"),
    ]:
        with pytest.raises(openai.BadRequestError, match=words):
            api.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_body={"completion_options": options},
            )


def test_dataset_results_download_as_parquet(client: TestClient, editor: Keys) -> None:
    import pyarrow.parquet as pq

    api = _client(client, editor.api_key)
    rows = [{"request": [{"role": "user", "text": word}]} for word in ("red", "green")]
    batch = api.batches.create(
        input_file_id=_upload(api, rows),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"model": f"gpt://{editor.folder_id}/gemma-3-demo"},
    )
    done = _wait(api, batch.id, ("completed", "failed"))
    headers = {"Authorization": f"Bearer {editor.api_key}"}
    reply = client.get(f"/v1/files/{done.output_file_id}/content?format=parquet", headers=headers)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(reply.content))
    assert table.column("response").to_pylist() == ["echo: red", "echo: green"]
    refused = client.get(f"/v1/files/{done.output_file_id}/content?format=xml", headers=headers)
    assert refused.status_code == 400
    assert "format" in refused.json()["error"]["message"]
