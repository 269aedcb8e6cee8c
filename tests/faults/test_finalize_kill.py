"""``kill -9`` of a real server while it writes a batch's files: after the restart the batch
completes with its output and error files each written once, whole (their ids derive from the
batch's: the restarted server finds the one already written and writes the other)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fovea.services.files import derived_file_id
from tests.faults.node import Node, new_node
from tests.faults.replica import echo_replica

ANSWERED = 100
# Lines the validator refuses one by one (method GET) go to the error file, written after the
# output file: many of them, so that its write is caught in the act.
REFUSED = 15_000
CATALOG = """
[[deployments]]
name = "echo"
backend = "upstream"
[deployments.upstream]
probe_interval_s = 30
[[deployments.branches.latest.replicas]]
url = "{url}"
model = "echo"
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with echo_replica() as url:
        made = new_node(tmp_path, CATALOG.format(url=url))
        try:
            yield made
        finally:
            made.stop()


def _input() -> bytes:
    def line(i: int, method: str) -> str:
        body = {"model": "echo", "messages": [{"role": "user", "content": f"line {i}"}]}
        custom_id = f"req-{i}"
        url = "/v1/chat/completions"
        return json.dumps({"custom_id": custom_id, "method": method, "url": url, "body": body})

    lines = [line(i, "POST" if i < ANSWERED else "GET") for i in range(ANSWERED + REFUSED)]
    return "\n".join(lines).encode()


def _finished(api: openai.OpenAI, batch_id: str) -> openai.types.Batch | None:
    batch = api.batches.retrieve(batch_id)
    return batch if batch.status in ("completed", "failed", "cancelled", "expired") else None


def _catch(is_happening: Callable[[], object], what: str, timeout_s: float = 120) -> None:
    """Poll closely: the write lasts a fraction of a second."""
    deadline = time.monotonic() + timeout_s
    while not is_happening():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _rows(api: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in api.files.content(file_id).text.splitlines()]


@pytest.mark.slow
def test_kill_9_while_writing_a_batchs_files_writes_each_once(node: Node) -> None:
    node.start()
    api = node.api()
    input_file = api.files.create(file=("in.jsonl", io.BytesIO(_input())), purpose="batch")
    batch = api.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    output_id = derived_file_id(f"{batch.id}:output")
    error_id = derived_file_id(f"{batch.id}:error")
    folder = node.files_dir / node.folder_id

    def writing_errors() -> bool:
        return any(p.name.startswith(f"{error_id}.") for p in node.partials())

    _catch(writing_errors, "the error file being written")
    node.kill()
    assert (folder / output_id).exists()  # the output file was written before the kill...
    assert not (folder / error_id).exists()  # ...and the error file was not

    node.start()
    api = node.api()
    deadline = time.monotonic() + 120
    while (done := _finished(api, batch.id)) is None:
        assert time.monotonic() < deadline, "the batch never finished"
        time.sleep(0.1)
    assert done.status == "completed"
    assert done.request_counts is not None
    counts = done.request_counts
    assert (counts.total, counts.completed, counts.failed) == (
        ANSWERED + REFUSED,
        ANSWERED,
        REFUSED,
    )
    assert (done.output_file_id, done.error_file_id) == (output_id, error_id)

    outputs = _rows(api, output_id)
    assert sorted(r["custom_id"] for r in outputs) == sorted(f"req-{i}" for i in range(ANSWERED))
    errors = _rows(api, error_id)
    refused = range(ANSWERED, ANSWERED + REFUSED)
    assert sorted(r["custom_id"] for r in errors) == sorted(f"req-{i}" for i in refused)
    assert {r["error"]["code"] for r in errors} == {"invalid_method"}

    listed = sorted(f.id for f in api.files.list(purpose="batch_output"))
    assert listed == sorted([output_id, error_id])  # one of each, no second copy
    assert node.partials() == []
    on_disk = sorted(p.name for p in folder.iterdir())
    assert on_disk == sorted([input_file.id, output_id, error_id])
    for file_id in (output_id, error_id):
        assert api.files.retrieve(file_id).bytes == (folder / file_id).stat().st_size
