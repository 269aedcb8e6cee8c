"""A 200-line batch survives ``kill -9`` of the server: after a restart it finishes, every line
answered exactly once, and the answers match a run without a crash (greedy decoding) of every
fifth line, the picture lines among them."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import Keys, make_keys
from tests.contract.test_reference_client import IMAGES, ROOT
from tests.processes import free_port, link_demo_model, start_fovea

LINES = 200
# The run without a crash answers these lines: every fifth, every picture line among them.
SAMPLED = 5


def _editor_home(tmp_path: Path, demo_model: DemoModelFiles) -> tuple[Path, Keys]:
    """A Fovea home on the shipped catalog, and a key whose account is an editor there."""
    home = tmp_path / "home"
    link_demo_model(home, demo_model)
    (home / "models.toml").write_text((ROOT / "fovea" / "default_models.toml").read_text())
    keys = make_keys(Settings(home=home))
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    keys.database.dispose()
    return home, keys


def _start(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_fovea(home, port, log=log)


def _input(every: int = 1) -> bytes:
    """The batch's lines; with ``every``, only each ``every``-th of them."""
    image = base64.b64encode((IMAGES / "house.png").read_bytes()).decode()
    lines = []
    for i in range(0, LINES, every):
        content: object = f"Item {i}: the next number is"
        if i % 25 == 0:
            content = [
                {"type": "text", "text": f"Picture {i}:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            ]
        body = {
            "model": "gemma-3-demo",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 3,
            "temperature": 0,
        }
        lines.append(
            {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    return "\n".join(json.dumps(line) for line in lines).encode()


def _wait(api: openai.OpenAI, batch_id: str, done: int | None = None) -> openai.types.Batch:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        batch = api.batches.retrieve(batch_id)
        counts = batch.request_counts
        if done is not None and counts is not None and counts.completed >= done:
            return batch
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.2)
    raise AssertionError("the batch did not finish in time")


def same_as_without_a_crash(
    api: openai.OpenAI, answers: list[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, str]]:
    """The sampled lines' answers after the crash, and a clean batch's answers to them."""
    sample = api.files.create(file=("sample.jsonl", io.BytesIO(_input(SAMPLED))), purpose="batch")
    clean = api.batches.create(
        input_file_id=sample.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    without_crash = dict(_answers(api, _wait(api, clean.id)))
    assert len(without_crash) == LINES // SAMPLED
    after_crash = dict(answers)
    return {custom_id: after_crash[custom_id] for custom_id in without_crash}, without_crash


def _answers(api: openai.OpenAI, batch: openai.types.Batch) -> list[tuple[str, str]]:
    assert batch.output_file_id is not None
    rows = [json.loads(line) for line in api.files.content(batch.output_file_id).text.splitlines()]
    return [
        (r["custom_id"], r["response"]["body"]["choices"][0]["message"]["content"]) for r in rows
    ]


@pytest.mark.slow
def test_a_batch_survives_kill_9(tmp_path: Path, demo_model: DemoModelFiles) -> None:
    home, keys = _editor_home(tmp_path, demo_model)
    port, log = free_port(), home / "server.log"
    api = openai.OpenAI(api_key=keys.api_key, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)

    server = _start(home, port, log)
    file_id = api.files.create(file=("in.jsonl", io.BytesIO(_input())), purpose="batch").id
    crashed = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    midway = _wait(api, crashed.id, done=LINES // 4)
    assert midway.status == "in_progress"
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)

    server = _start(home, port, log)
    try:
        finished = _wait(api, crashed.id)
        assert finished.status == "completed"
        assert finished.request_counts is not None
        assert (finished.request_counts.total, finished.request_counts.completed) == (LINES, LINES)
        after_crash = _answers(api, finished)
        ids = [custom_id for custom_id, _ in after_crash]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(LINES))  # each exactly once

        after, clean = same_as_without_a_crash(api, after_crash)
        assert after == clean
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_multimodal_batch_and_the_cli_against_a_real_server(
    tmp_path: Path, demo_model: DemoModelFiles
) -> None:
    home, keys = _editor_home(tmp_path, demo_model)
    port, log = free_port(), home / "server.log"
    base_url = f"http://127.0.0.1:{port}/v1"
    api = openai.OpenAI(api_key=keys.api_key, base_url=base_url, max_retries=0)
    image = base64.b64encode((IMAGES / "sunset.png").read_bytes()).decode()
    rows = [
        {
            "request": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe"},
                        {"type": "image", "image": image},
                    ],
                }
            ]
        },
        {"request": [{"role": "system", "text": "Be brief."}, {"role": "user", "text": "Hello"}]},
        {
            "request": [
                {"role": "user", "content": [{"type": "image", "image": "bm90IGFuIGltYWdl"}]}
            ]
        },
    ]
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("\n".join(json.dumps(r) for r in rows))
    env = {**os.environ, "FOVEA_API_KEY": keys.api_key, "FOVEA_BASE_URL": base_url}
    server = _start(home, port, log)
    try:
        submit = subprocess.run(
            [
                sys.executable,
                "-m",
                "fovea.cli.main",
                "batch",
                "submit",
                str(dataset),
                "--model",
                f"gpt://{keys.folder_id}/gemma-3-demo",
                "--wait",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert submit.returncode == 0, submit.stderr
        batch_id = submit.stdout.strip().splitlines()[-1]
        batch = api.batches.retrieve(batch_id)
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        out = tmp_path / "out.parquet"
        results = subprocess.run(
            [
                sys.executable,
                "-m",
                "fovea.cli.main",
                "batch",
                "results",
                batch_id,
                "-o",
                str(out),
                "--errors",
                str(tmp_path / "errors.jsonl"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert results.returncode == 0, results.stderr
        import pyarrow.parquet as pq

        table = pq.read_table(out).to_pylist()
        assert len(table) == 2
        assert all(row["response"] for row in table)
        assert json.loads(table[0]["request"]) == rows[0]["request"]  # the image survives
        errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
        assert errors[0]["line"] == 3
        assert "messages[0].content[0]" in json.dumps(errors[0])
    finally:
        server.terminate()
        server.wait(timeout=30)
