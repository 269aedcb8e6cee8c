"""``fovea batch`` against a fake server: the official ``openai`` client on an httpx.MockTransport.

The fake implements just what the commands use of the Files and Batches API, in OpenAI's shapes;
each ``GET /v1/batches/{id}`` moves a batch one step along the script a test gives it. Its result
rows are made by Fovea's own code, and the last test runs the commands against the real app.
"""

from __future__ import annotations

import email
import email.message
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from openai.types import Batch, FileObject
from typer.testing import CliRunner, Result

from fovea.app import create_app
from fovea.cli import batch_progress, remote
from fovea.cli.main import app
from fovea.services.datasets.rows import dataset_result_row
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.fakes import ScriptedEngine

NOW = 1_700_000_000
DATASET_ROW = {"request": [{"role": "user", "text": "Capital of France?"}]}
OPENAI_LINE = {
    "custom_id": "q1",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"messages": [{"role": "user", "content": "Capital of France?"}]},
}
RESULT_ROWS = [
    dataset_result_row(DATASET_ROW, "Paris."),
    dataset_result_row({"request": [{"role": "user", "text": "2+2?"}]}, "4"),
]
# A failed line as the batch runner writes it to the error file.
ERROR_LINE = {
    "id": "batch_req_3",
    "custom_id": None,
    "response": {
        "status_code": 400,
        "request_id": "req_0123456789abcdef01234567",
        "body": {"error": {"message": "bad", "type": "invalid_request_error"}},
    },
    "error": None,
    "line": 3,
}


class FakeServer:
    """Files and Batches, held in dicts; requests are kept for the tests to inspect."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.script: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.created: list[dict[str, Any]] = []

    def add_file(self, content: bytes, purpose: str = "batch_output") -> str:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = FileObject(
            id=file_id,
            object="file",
            bytes=len(content),
            created_at=NOW,
            filename=f"{file_id}.jsonl",
            purpose=purpose,  # type: ignore[arg-type]
            status="processed",
        ).model_dump(mode="json")
        self.contents[file_id] = content
        return file_id

    def add_batch(self, **fields: Any) -> str:
        batch_id = f"batch_{len(self.batches) + 1}"
        batch = Batch(
            id=batch_id,
            object="batch",
            endpoint="/v1/chat/completions",
            input_file_id="file-0",
            completion_window="24h",
            status="validating",
            created_at=NOW,
            request_counts={"total": 0, "completed": 0, "failed": 0},  # type: ignore[arg-type]
        )
        self.batches[batch_id] = {**batch.model_dump(mode="json"), **fields}
        return batch_id

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        parts = request.url.path.removeprefix("/v1/").split("/")
        match request.method, parts:
            case "POST", ["files"]:
                return self._upload(request)
            case "GET", ["files", file_id, "content"] if file_id in self.contents:
                return httpx.Response(200, content=self.contents[file_id])
            case "POST", ["batches"]:
                return self._create(json.loads(request.content))
            case "GET", ["batches"]:
                data = list(self.batches.values())[: int(request.url.params.get("limit", 20))]
                return httpx.Response(200, json={"object": "list", "data": data, "has_more": False})
            case "GET", ["batches", batch_id] if batch_id in self.batches:
                return httpx.Response(200, json=self._step(batch_id))
            case "POST", ["batches", batch_id, "cancel"] if batch_id in self.batches:
                self.batches[batch_id].update(status="cancelling", cancelling_at=NOW + 5)
                return httpx.Response(200, json=self.batches[batch_id])
        return not_found(request.url.path)

    def _upload(self, request: httpx.Request) -> httpx.Response:
        form = multipart(request)
        file_id = self.add_file(form["file"], purpose=form["purpose"].decode())
        return httpx.Response(200, json=self.files[file_id])

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        self.created.append(body)
        if body["input_file_id"] not in self.files:
            return not_found(body["input_file_id"])
        batch_id = self.add_batch(input_file_id=body["input_file_id"], metadata=body["metadata"])
        return httpx.Response(200, json=self.batches[batch_id])

    def _step(self, batch_id: str) -> dict[str, Any]:
        if self.script:
            self.batches[batch_id].update(self.script.pop(0))
        return self.batches[batch_id]


def not_found(what: str) -> httpx.Response:
    error = {"message": f"No such object: {what}", "type": "invalid_request_error"}
    return httpx.Response(404, json={"error": {**error, "param": None, "code": "not_found"}})


def multipart(request: httpx.Request) -> dict[str, bytes]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.content)
    form: dict[str, bytes] = {}
    for part in message.get_payload():
        assert isinstance(part, email.message.Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        form[name] = payload
    return form


def counts(completed: int, failed: int, total: int = 4) -> dict[str, int]:
    return {"total": total, "completed": completed, "failed": failed}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    transport = httpx.MockTransport(fake.handle)
    monkeypatch.setattr(remote, "http_client", lambda: httpx.Client(transport=transport))
    monkeypatch.setattr(batch_progress, "POLL_INTERVAL_S", 0)
    monkeypatch.setenv("FOVEA_API_KEY", "sk-test")
    for name in ("FOVEA_BASE_URL", "FOVEA_FOLDER_ID", "OPENAI_PROJECT_ID", "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    return fake


def fovea_batch(*args: str) -> Result:
    return CliRunner().invoke(app, ["batch", *args])


def write_jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# -- submit -----------------------------------------------------------------------------------


def test_submit_dataset_rows_sends_model_and_format(server: FakeServer, tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "rows.jsonl", DATASET_ROW, DATASET_ROW)
    result = fovea_batch(
        "submit", str(dataset), "--model", "gpt://f1/gemma-3-demo", "--metadata", "team=vision"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "batch_1"
    assert "dataset rows" in result.stderr
    [body] = server.created
    assert body == {
        "input_file_id": "file-1",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"team": "vision"},
        "model": "gpt://f1/gemma-3-demo",
        "input_format": "dataset",
    }
    assert server.contents["file-1"] == dataset.read_bytes()
    assert server.files["file-1"]["purpose"] == "batch"
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_submit_openai_lines_needs_no_model(server: FakeServer, tmp_path: Path) -> None:
    lines = write_jsonl(tmp_path / "lines.jsonl", OPENAI_LINE)
    result = fovea_batch("submit", str(lines), "--folder", "b1gfolder")
    assert result.exit_code == 0, result.output
    [body] = server.created
    assert body["input_format"] == "openai"
    assert "model" not in body
    assert {r.headers["openai-project"] for r in server.requests} == {"b1gfolder"}


def test_submit_openai_lines_pass_model_as_default(server: FakeServer, tmp_path: Path) -> None:
    lines = write_jsonl(tmp_path / "lines.jsonl", OPENAI_LINE)
    assert fovea_batch("submit", str(lines), "--model", "m").exit_code == 0
    assert server.created[0]["model"] == "m"


def test_submit_dataset_rows_without_model_is_refused(server: FakeServer, tmp_path: Path) -> None:
    dataset = write_jsonl(tmp_path / "rows.jsonl", DATASET_ROW)
    result = fovea_batch("submit", str(dataset))
    assert result.exit_code == 2
    assert "--model" in result.stderr
    assert server.requests == []


def test_submit_bad_metadata_is_refused(server: FakeServer, tmp_path: Path) -> None:
    lines = write_jsonl(tmp_path / "lines.jsonl", OPENAI_LINE)
    result = fovea_batch("submit", str(lines), "--metadata", "no-equals")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr


def test_submit_wait_follows_to_completed(server: FakeServer, tmp_path: Path) -> None:
    output_id = server.add_file(b"")
    server.script = [
        {"status": "in_progress", "request_counts": counts(0, 0)},
        {"status": "in_progress", "request_counts": counts(2, 0)},
        {"status": "finalizing", "request_counts": counts(3, 1)},
        {"status": "completed", "request_counts": counts(3, 1), "output_file_id": output_id},
    ]
    dataset = write_jsonl(tmp_path / "rows.jsonl", *[DATASET_ROW] * 4)
    result = fovea_batch("submit", str(dataset), "--model", "m", "--wait")
    assert result.exit_code == 0, result.output
    assert server.script == []
    assert "4/4" in result.stderr
    assert "completed: 4/4 lines done, 1 failed" in result.stderr
    assert "fovea batch results batch_1" in result.stderr


def test_submit_wait_exits_1_when_the_batch_fails(server: FakeServer, tmp_path: Path) -> None:
    error = {"code": "empty_file", "message": "The input file has no usable line", "line": 3}
    server.script = [
        {"status": "failed", "failed_at": NOW + 1, "errors": {"object": "list", "data": [error]}}
    ]
    lines = write_jsonl(tmp_path / "lines.jsonl", OPENAI_LINE)
    result = fovea_batch("submit", str(lines), "--wait")
    assert result.exit_code == 1
    assert "batch_1 failed" in result.stderr
    assert "line 3: The input file has no usable line" in result.stderr


def test_ctrl_c_stops_following_not_the_batch(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_progress.time, "sleep", interrupt)
    lines = write_jsonl(tmp_path / "lines.jsonl", OPENAI_LINE)
    result = fovea_batch("submit", str(lines), "--wait")
    assert result.exit_code == 130
    assert "fovea batch status batch_1" in result.stderr
    assert not any(r.url.path.endswith("/cancel") for r in server.requests)


# -- results ----------------------------------------------------------------------------------


def completed_batch(server: FakeServer, *, with_errors: bool = False) -> str:
    output = "".join(json.dumps(row) + "\n" for row in RESULT_ROWS).encode()
    errors = server.add_file(json.dumps(ERROR_LINE).encode() + b"\n") if with_errors else None
    return server.add_batch(
        status="completed",
        request_counts=counts(2, 1, total=3),
        output_file_id=server.add_file(output),
        error_file_id=errors,
    )


def test_results_to_jsonl_as_served(server: FakeServer, tmp_path: Path) -> None:
    batch_id = completed_batch(server, with_errors=True)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    result = fovea_batch("results", batch_id, "-o", str(out), "--errors", str(errors))
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == RESULT_ROWS
    assert json.loads(errors.read_text()) == ERROR_LINE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.jsonl", "out.jsonl"]


def test_results_to_parquet(server: FakeServer, tmp_path: Path) -> None:
    batch_id = completed_batch(server)
    out = tmp_path / "out.parquet"
    result = fovea_batch("results", batch_id, "-o", str(out))
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column_names == ["request", "response"]
    assert table.column("response").to_pylist() == ["Paris.", "4"]
    assert json.loads(table.column("request")[0].as_py()) == DATASET_ROW["request"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_results_before_there_are_any(server: FakeServer, tmp_path: Path) -> None:
    batch_id = server.add_batch(status="in_progress")
    result = fovea_batch("results", batch_id, "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    assert f"Batch {batch_id} has no results yet (status in_progress)" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- status, cancel, list -----------------------------------------------------------------------


def test_status_json_is_the_batch_object(server: FakeServer) -> None:
    batch_id = completed_batch(server)
    result = fovea_batch("status", batch_id, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == batch_id
    assert shown["status"] == "completed"
    assert shown["request_counts"] == counts(2, 1, total=3)
    assert shown["output_file_id"] == "file-1"


def test_status_text(server: FakeServer) -> None:
    batch_id = completed_batch(server, with_errors=True)
    result = fovea_batch("status", batch_id)
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert "3/3 done, 1 failed" in result.stdout
    assert "2023-11-14 22:13:20 UTC" in result.stdout
    assert "file-2" in result.stdout and "file-1" in result.stdout


def test_cancel_and_list(server: FakeServer) -> None:
    first = server.add_batch(status="in_progress", request_counts=counts(1, 0))
    server.add_batch(status="completed", request_counts=counts(4, 0))
    result = fovea_batch("cancel", first)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Batch {first}: cancelling"
    listed = fovea_batch("list", "--json", "--limit", "1")
    assert [b["status"] for b in json.loads(listed.stdout)] == ["cancelling"]
    table = fovea_batch("list")
    assert table.exit_code == 0, table.output
    assert "batch_2" in table.stdout and "4/4" in table.stdout


# -- failures ---------------------------------------------------------------------------------


def test_a_server_error_is_one_line_and_exit_1(server: FakeServer) -> None:
    result = fovea_batch("status", "batch_missing")
    assert result.exit_code == 1
    assert result.stderr == "Error: No such object: /v1/batches/batch_missing (HTTP 404)\n"
    assert result.stdout == ""


def test_refused_connection_hints_at_fovea_serve(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "http_client", lambda: None)
    monkeypatch.setattr(remote, "MAX_RETRIES", 0)
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    result = fovea_batch("list", "--base-url", url)
    assert result.exit_code == 1
    assert "is `fovea serve` running there?" in result.stderr
    assert url in result.stderr
    assert "Traceback" not in result.output


def test_api_key_is_required(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOVEA_API_KEY")
    result = fovea_batch("list")
    assert result.exit_code == 2
    assert "--api-key" in result.stderr


# -- against the real app ---------------------------------------------------------------------


def test_submit_wait_and_results_against_fovea(
    fake_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = make_keys(fake_settings)
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    rows = [DATASET_ROW, {"request": [{"role": "user", "text": "2+2?"}]}]
    dataset = write_jsonl(tmp_path / "rows.jsonl", *rows)
    monkeypatch.setattr(batch_progress, "POLL_INTERVAL_S", 0.05)
    monkeypatch.setenv("FOVEA_API_KEY", keys.api_key)
    monkeypatch.setenv("FOVEA_BASE_URL", "http://testserver/v1")
    for name in ("FOVEA_FOLDER_ID", "OPENAI_PROJECT_ID", "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(create_app(fake_settings, engine_factory=ScriptedEngine)) as client:
        # Each command closes its client: this one stays open for the next command.
        monkeypatch.setattr(client, "close", lambda: None)
        monkeypatch.setattr(remote, "http_client", lambda: client)
        submitted = fovea_batch("submit", str(dataset), "--model", "gemma-3-demo", "--wait")
        assert submitted.exit_code == 0, submitted.output
        batch_id = submitted.stdout.strip()
        assert "2 lines done, 0 failed" in submitted.stderr
        out_jsonl, out_parquet = tmp_path / "out.jsonl", tmp_path / "out.parquet"
        for out in (out_jsonl, out_parquet):
            result = fovea_batch("results", batch_id, "-o", str(out))
            assert result.exit_code == 0, result.output
    served = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert served == [
        dataset_result_row(rows[0], "echo: Capital of France?"),
        dataset_result_row(rows[1], "echo: 2+2?"),
    ]
    table = pq.read_table(out_parquet)
    assert table.column("response").to_pylist() == [row["response"] for row in served]
