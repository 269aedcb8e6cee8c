"""The request log on a real ``fovea serve`` (demo model, debug logging, HTTP and gRPC): what a
client marks ``x-data-logging-enabled: false`` is in no file under ``$FOVEA_HOME`` (the server's
log, the database and its WAL), and ``fovea logs show`` prints what it may keep."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from yandex_ai_studio_sdk import AIStudio
from yandex_ai_studio_sdk.retry import NoRetryPolicy

from fovea.modelgen.demo import DemoModelFiles
from tests.conftest import png_data_url
from tests.contract.grpc_node import Node, new_node
from tests.contract.test_sdk_batches import POLL_S

pytestmark = pytest.mark.slow


def marked_sdk(node: Node) -> AIStudio:
    return AIStudio(
        folder_id=node.folder_id,
        auth=node.api_key,
        endpoint=node.grpc,
        verify=False,
        retry_policy=NoRetryPolicy(),
        enable_server_data_logging=False,
    )


def chat(node: Node, content: object, headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(
        f"{node.http}/v1/chat/completions",
        json={
            "model": "gemma-3-demo",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
        },
        headers={**node.headers(), **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def logs_show(node: Node, request_id: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fovea.cli.main", "logs", "show", request_id]
    return subprocess.run(command, env=node.env, capture_output=True, text=True, timeout=60)


def holding(home: Path, needle: str) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_marked_requests_leave_no_trace_and_unmarked_ones_are_shown(
    tmp_path: Path, demo_model: DemoModelFiles
) -> None:
    env = {"FOVEA_REQUEST_LOG": "on", "FOVEA_LOG_LEVEL": "debug"}
    node = new_node(tmp_path / "home", demo_model, env)
    marked, unmarked = f"MARKED{uuid.uuid4().hex}", f"PLAIN{uuid.uuid4().hex}"
    image = {"type": "image_url", "image_url": {"url": png_data_url((200, 30, 30))}}
    node.start()
    try:
        not_logged = {"x-data-logging-enabled": "false"}
        chat(node, f"Repeat {marked}", not_logged)
        chat(node, [{"type": "text", "text": f"Describe {marked}"}, image], not_logged)
        model = marked_sdk(node).models.completions("gemma-3-demo").configure(max_tokens=8)
        assert model.run(f"Repeat {marked}").alternatives[0].text
        plain = chat(node, [{"type": "text", "text": f"Describe {unmarked}"}, image])
        # Deferred completions keep their request in the operation (the cloud's contract);
        # the request log keeps them only when allowed, under the operation's id.
        marked_deferred = model.run_deferred("Say hello")
        marked_deferred.wait(poll_interval=POLL_S)
        plain_model = node.sdk().models.completions("gemma-3-demo").configure(max_tokens=8)
        plain_deferred = plain_model.run_deferred(f"Repeat {unmarked}")
        plain_deferred.wait(poll_interval=POLL_S)
    finally:
        node.stop()  # a clean stop writes what the request log holds

    assert holding(node.home, marked) == []
    assert [p.name for p in holding(node.home, unmarked)] != []
    shown = logs_show(node, plain.headers["x-request-id"])
    assert shown.returncode == 0, shown.stderr
    assert unmarked in shown.stdout
    assert '"sha256"' in shown.stdout and "base64" not in shown.stdout
    assert logs_show(node, marked_deferred.id).returncode == 1
    shown = logs_show(node, plain_deferred.id)
    assert shown.returncode == 0, shown.stderr
    assert unmarked in shown.stdout
