"""Two ``fovea serve`` replicas on one PostgreSQL, one Redis and one shared files directory, as
behind a load balancer: a key made through one works on the other at once, a key revoked through
one is refused by both, the folder's concurrency limit holds across the two, and a 200-line
batch is shared by both runners and survives one replica's SIGKILL, every line answered once
and as a run on one replica answers it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.contract.test_batch_crash import (
    LINES,
    _answers,
    _input,
    _wait,
    same_as_without_a_crash,
)
from tests.contract.test_reference_client import ROOT
from tests.processes import (
    Start,
    free_port,
    link_demo_model,
    start_processes,
    stop_process,
    wait_for,
)

LEASE_S = 3  # the batch runner's leases: a killed replica's lines move on after this
CONCURRENT = 10  # the server's default limit of concurrent generations per folder
STREAM_TOKENS = 400


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    url: str

    def api(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=f"{self.url}/v1", max_retries=0)

    def batch_completions(self) -> float:
        """Batch lines this replica answered (its own /metrics)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "fovea_completions_total" and sample.labels.get("kind") == "batch"
        )


@dataclass
class Cluster:
    replicas: list[Replica]
    folder_id: str
    user_key: str  # ai.editor on the folder: chat and batches
    admin_key: str  # system.admin: the IAM API


@pytest.fixture
def cluster(
    tmp_path: Path, demo_model: DemoModelFiles, migrated_postgres_url: str, redis_url: str
) -> Iterator[Cluster]:
    shared_files = tmp_path / "files"
    env = {
        **os.environ,
        "FOVEA_DATABASE_URL": migrated_postgres_url,
        "FOVEA_REDIS_URL": redis_url,
        "FOVEA_FILES_DIR": str(shared_files),
        "FOVEA_SIGNING_KEY": "one-key-for-every-replica",
        "FOVEA_BATCH_LEASE_S": str(LEASE_S),
        # A long cache: a revocation that reaches the other replica did not wait it out.
        "FOVEA_AUTH_CACHE_TTL_S": "600",
    }
    keys = make_keys(Settings(home=tmp_path, database_url=migrated_postgres_url))
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    _, _, admin = keys.iam.bootstrap("default", "admin", admin=True)
    keys.database.dispose()
    replicas: list[Replica] = []
    starts, urls = [], []
    for name in ("a", "b"):
        home = tmp_path / name
        link_demo_model(home, demo_model)
        catalog = (ROOT / "fovea" / "default_models.toml").read_text()
        # Slots for the five streams each replica holds open at once.
        catalog = catalog.replace(
            'chat_template = "gemma3"', 'chat_template = "gemma3"\nparallel = 6'
        )
        (home / "models.toml").write_text(catalog)
        port = free_port()
        starts.append(
            Start(
                [sys.executable, "-m", "fovea.cli.main", "serve"],
                ready_url=f"http://127.0.0.1:{port}/readyz",
                log=home / "server.log",
                env={**env, "FOVEA_HOME": str(home), "FOVEA_PORT": str(port)},
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        processes = start_processes(starts)
        replicas = [Replica(process, url) for process, url in zip(processes, urls, strict=True)]
        yield Cluster(replicas, keys.folder_id, keys.api_key, admin.secret)
    finally:
        for replica in replicas:
            stop_process(replica.process)


def _iam(replica: Replica, admin_key: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method,
        f"{replica.url}{path}",
        headers={"Authorization": f"Api-Key {admin_key}"},
        timeout=30,
        **kwargs,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _chat(replica: Replica, key: str) -> httpx.Response:
    body = {
        "model": "gemma-3-demo",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    }
    return httpx.post(
        f"{replica.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=60,
    )


@pytest.mark.slow
def test_a_key_made_on_one_replica_works_on_the_other_and_revocation_reaches_both(
    cluster: Cluster,
) -> None:
    a, b = cluster.replicas
    accounts = _iam(
        a,
        cluster.admin_key,
        "GET",
        "/iam/v1/serviceAccounts",
        params={"folderId": cluster.folder_id},
    )
    account = next(s["id"] for s in accounts["serviceAccounts"] if s["name"] == "default")
    made = _iam(a, cluster.admin_key, "POST", "/iam/v1/apiKeys", json={"serviceAccountId": account})
    secret, key_id = made["secret"], made["apiKey"]["id"]
    assert _chat(b, secret).status_code == 200  # made on a, used on b at once
    assert _chat(a, secret).status_code == 200  # both replicas have it cached now

    _iam(a, cluster.admin_key, "DELETE", f"/iam/v1/apiKeys/{key_id}")
    assert _chat(a, secret).status_code == 401

    # b cached the key for 600 s: only the revocation's message can make it refuse it now.
    def refused_by_b() -> httpx.Response | None:
        response = _chat(b, secret)
        return response if response.status_code == 401 else None

    refused = wait_for(refused_by_b, "b refuses the revoked key")
    assert refused.json()["error"]["message"] == "Unknown api key"


@pytest.mark.slow
def test_the_folders_concurrency_limit_holds_across_replicas(cluster: Cluster) -> None:
    a, b = cluster.replicas
    body = {
        "model": "gemma-3-demo",
        "messages": [{"role": "user", "content": "Count on and on"}],
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,  # every stream holds its slot until all its tokens are out
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {cluster.user_key}"}
    streams: list[tuple[httpx.Client, Any, Iterator[str]]] = []
    started = threading.Barrier(CONCURRENT + 1)
    errors: list[BaseException] = []

    def open_stream(replica: Replica) -> None:
        try:
            client = httpx.Client(timeout=300)
            context = client.stream(
                "POST", f"{replica.url}/v1/chat/completions", json=body, headers=headers
            )
            response = context.__enter__()
            assert response.status_code == 200, response.read()
            lines = response.iter_lines()  # kept: a dropped iterator closes the stream
            next(lines)  # the first chunk: admitted and generating
            streams.append((client, context, lines))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            started.wait()

    threads = [
        threading.Thread(target=open_stream, args=(cluster.replicas[n % 2],))
        for n in range(CONCURRENT)
    ]
    for thread in threads:
        thread.start()
    started.wait()
    try:
        assert not errors, errors
        # Ten generations in flight, five on each replica: the eleventh, on either, is refused.
        for replica in (a, b):
            refused = _chat(replica, cluster.user_key)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert "10 generations in flight" in refused.json()["error"]["message"]
        for _, _, lines in streams:  # all ten were still generating when refused
            event = next(line for line in lines if line.startswith("data: {"))
            choice = json.loads(event.removeprefix("data: "))["choices"][0]
            assert choice.get("finish_reason") is None and choice["delta"]["content"], event
    finally:
        for client, context, _ in streams:  # the clients go: their generations stop
            context.__exit__(None, None, None)
            client.close()
        for thread in threads:
            thread.join()

    def admitted_on_a() -> bool:  # the slots come back, on both replicas' count
        return _chat(a, cluster.user_key).status_code == 200

    wait_for(admitted_on_a, "a slot for a new request once the streams are gone")


@pytest.mark.slow
def test_a_batch_is_shared_by_both_replicas_and_survives_one_being_killed(
    cluster: Cluster,
) -> None:
    a, b = cluster.replicas
    api_a, api_b = a.api(cluster.user_key), b.api(cluster.user_key)
    file_id = api_a.files.create(file=("in.jsonl", io.BytesIO(_input())), purpose="batch").id
    batch = api_a.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    # Both runners take lines; then a dies in the middle of the batch, holding leases.
    wait_for(
        lambda: a.batch_completions() > 0 and b.batch_completions() > 0,
        "both replicas answering lines",
        timeout_s=300,
    )
    midway = _wait(api_b, batch.id, done=LINES // 4)
    assert midway.status == "in_progress"
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=30)

    finished = _wait(api_b, batch.id)
    assert finished.status == "completed", finished
    assert finished.request_counts is not None
    assert (finished.request_counts.total, finished.request_counts.completed) == (LINES, LINES)
    answers = _answers(api_b, finished)
    assert sorted(custom_id for custom_id, _ in answers) == sorted(
        f"req-{i}" for i in range(LINES)
    )  # each exactly once

    after, clean = same_as_without_a_crash(api_b, answers)
    assert after == clean
    outputs = [f for f in api_b.files.list(purpose="batch_output") if batch.id in f.filename]
    assert [f.filename for f in outputs] == [f"{batch.id}_output.jsonl"]  # written once


@pytest.mark.slow
def test_a_batch_running_on_both_replicas_is_cancelled_from_either(cluster: Cluster) -> None:
    a, b = cluster.replicas
    api_a, api_b = a.api(cluster.user_key), b.api(cluster.user_key)
    before = a.batch_completions() + b.batch_completions()
    file_id = api_a.files.create(file=("in.jsonl", io.BytesIO(_input())), purpose="batch").id
    batch = api_a.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(
        lambda: a.batch_completions() + b.batch_completions() > before + 4,
        "lines answered",
        timeout_s=300,
    )
    assert api_b.batches.cancel(batch.id).status == "cancelling"
    cancelled = _wait(api_a, batch.id)
    assert cancelled.status == "cancelled", cancelled
    counts = cancelled.request_counts
    assert counts is not None and 0 < counts.completed < LINES
    answered = [custom_id for custom_id, _ in _answers(api_a, cancelled)]
    assert len(answered) == len(set(answered)) == counts.completed  # each finished line once
