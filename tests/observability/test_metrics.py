"""``GET /metrics``: traffic through the real app (on the scripted engine) shows up in every
family with the numbers the responses reported; the scrape-time families read the engines,
replicas, batch lines, admission budget and quota refusals; the token guards the scrape."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from pydantic import SecretStr

from fovea.app import create_app
from fovea.engine.registry import EngineKey, EngineRegistry
from fovea.engine.types import (
    Capabilities,
    EngineStats,
    ReplicaInfo,
    SlotInfo,
    Usage,
)
from fovea.errors import FoveaError
from fovea.iam.types import Principal
from fovea.observability.metrics import Metrics
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.chat_events import CompletionStatus, FinishedCompletion, RequestContext
from fovea.settings import Settings
from fovea.store.batches import BatchStore, LineEntry, LineResult
from tests.conftest import Keys, auth, make_keys, png_data_url
from tests.fakes import IMAGE_TOKENS, ScriptedEngine
from tests.observability.scrape import Scrape

MODEL = "gemma-3-demo"


def _scrape(client: TestClient, **headers: str) -> Scrape:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape.parse(response.text)


def _stream_usage(client: TestClient, key: str) -> dict[str, int]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/chat/completions", json=body, headers=auth(key)) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    usage: dict[str, int] = json.loads(events[-2])["usage"]
    return usage


def test_traffic_shows_in_http_and_completion_families(client: TestClient, keys: Keys) -> None:
    with_image = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": png_data_url((200, 10, 10))}},
                ],
            }
        ],
    }
    answered = client.post("/v1/chat/completions", json=with_image, headers=auth(keys.api_key))
    assert answered.status_code == 200
    usages = [answered.json()["usage"], _stream_usage(client, keys.api_key)]
    unknown = {**with_image, "model": "no-such-model"}
    refused = client.post("/v1/chat/completions", json=unknown, headers=auth(keys.api_key))
    assert refused.status_code == 404
    assert client.get("/v1/files/file-missing", headers=auth(keys.api_key)).status_code >= 400
    assert client.get("/no/such/path").status_code == 404

    scrape = _scrape(client)

    chat = {"route": "/v1/chat/completions", "method": "POST"}
    assert scrape.value("fovea_http_requests_total", **chat, status="200") == 2
    assert scrape.value("fovea_http_requests_total", **chat, status="404") == 1
    assert scrape.value("fovea_http_requests_total", route="/v1/files/{file_id}") == 1
    assert scrape.value("fovea_http_requests_total", route="other", status="404") == 1
    assert scrape.value("fovea_http_request_duration_seconds_count", route=chat["route"]) == 3
    assert "/no/such/path" not in scrape.label_values("fovea_http_requests_total", "route")

    ok = {"model": MODEL, "status": "ok", "kind": "interactive"}
    assert scrape.value("fovea_completions_total", **ok) == 2
    assert scrape.value("fovea_completions_total") == 2  # the refused request is no completion
    assert scrape.value("fovea_prompt_tokens_total", model=MODEL) == sum(
        u["prompt_tokens"] for u in usages
    )
    assert scrape.value("fovea_completion_tokens_total", model=MODEL) == sum(
        u["completion_tokens"] for u in usages
    )
    assert scrape.value("fovea_image_tokens_total", model=MODEL) == IMAGE_TOKENS
    assert scrape.value("fovea_cached_tokens_total", model=MODEL) == 0
    assert scrape.value("fovea_images_total", model=MODEL) == 1
    assert scrape.value("fovea_time_to_first_token_seconds_count", model=MODEL) == 2
    assert scrape.value("fovea_inter_token_latency_seconds_count", model=MODEL) == 2


def test_server_state_is_read_at_scrape_time(
    client: TestClient, keys: Keys, fake_settings: Settings
) -> None:
    assert client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(keys.api_key),
    ).is_success
    services = client.app.state.services  # type: ignore[attr-defined]
    services.quotas.refusals[(keys.folder_id, "requests")] += 2

    scrape = _scrape(client)

    engine = {"model": MODEL, "branch": "latest"}
    assert scrape.value("fovea_engine_state", **engine, state="ready") == 1
    assert scrape.value("fovea_engine_state", **engine) == 1  # one state at a time
    assert scrape.value("fovea_engine_queued_requests", **engine) == 0
    assert "fovea_engine_tokens_per_second" in scrape.families
    capacity = fake_settings.max_inflight_request_bytes
    assert scrape.value("fovea_admission_bytes_capacity") == capacity
    assert scrape.value("fovea_admission_bytes_in_use") == 0  # a GET reserves nothing
    assert "fovea_batch_lines" in scrape.families
    refusals = {"folder": keys.folder_id, "limit": "requests"}
    assert scrape.value("fovea_quota_refusals_total", **refusals) == 2


class _StubEngine:
    """An engine that is only its stats and replicas, for the scrape-time families."""

    def __init__(self, stats: EngineStats, replicas: tuple[ReplicaInfo, ...] = ()) -> None:
        self.capabilities = Capabilities(vision=False, max_images=0, context_length=512)
        self.stats = stats
        self.replicas = replicas
        self.state = "ready"
        self.failure = None

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _finished(batch_id: str | None, status: CompletionStatus) -> FinishedCompletion:
    return FinishedCompletion(
        context=RequestContext(batch_id=batch_id),
        principal=Principal("key-1", "sa", "folder", frozenset()),
        folder_id="folder",
        model_uri="gpt://folder/m/latest",
        model="m",
        branch="latest",
        request=ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        ),
        status=status,
        usage=Usage(prompt_tokens=20, completion_tokens=5, image_tokens=16, cached_tokens=8),
        images=1,
        started_at=0.0,
        ttft_s=0.2,
        duration_s=0.6,
        text="",
    )


@pytest.mark.anyio
async def test_engine_replica_and_server_families() -> None:
    slots = tuple(SlotInfo(i, s, None, 0) for i, s in enumerate(("idle", "prompt", "generating")))
    local = EngineStats(
        prompt_tokens=100,
        cached_prompt_tokens=30,
        image_cache_hits=2,
        image_cache_misses=3,
        image_cache_bytes=4096,
        tokens_per_s=12.5,
        queued=4,
        slots=(*slots, SlotInfo(3, "generating", "batch", 9)),
    )
    replica = ReplicaInfo("http://r1:8000", "m", "up", 3, 40, 0, False, waiting=2)
    down = ReplicaInfo("http://r2:8000", "m", "down", 0, 7, 5, False)
    engines = {
        EngineKey("local", "latest"): _StubEngine(local),
        EngineKey("remote", "latest"): _StubEngine(EngineStats(), (replica, down)),
    }
    registry = EngineRegistry(lambda key: engines[key])  # type: ignore[arg-type, return-value]
    for key in engines:
        await registry.start(key)
    metrics = Metrics(registry, lambda: {"pending": 3, "completed": 5})
    metrics.completion_finished(_finished("batch_1", CompletionStatus.OK))
    metrics.completion_finished(_finished(None, CompletionStatus.TIMEOUT))
    budget = SimpleNamespace(in_use=1000, capacity=64_000)

    scrape = Scrape.parse(
        (await metrics.exposition(budget, Counter({("f1", "tokens"): 3}))).decode()
    )

    local_labels = {"model": "local", "branch": "latest"}
    assert scrape.value("fovea_engine_slots", **local_labels, state="generating") == 2
    assert scrape.value("fovea_engine_slots", **local_labels, state="idle") == 1
    assert scrape.value("fovea_engine_queued_requests", **local_labels) == 4
    assert scrape.value("fovea_engine_tokens_per_second", **local_labels) == 12.5
    assert scrape.value("fovea_engine_image_cache_hits_total", **local_labels) == 2
    assert scrape.value("fovea_engine_image_cache_misses_total", **local_labels) == 3
    assert scrape.value("fovea_engine_image_cache_bytes", **local_labels) == 4096
    assert scrape.value("fovea_engine_prefix_cache_hit_tokens_total", **local_labels) == 30
    assert scrape.value("fovea_engine_prefix_cache_miss_tokens_total", **local_labels) == 70
    assert scrape.value("fovea_engine_slots", model="remote") == 0  # no slots upstream

    r1 = {"model": "remote", "replica": "http://r1:8000"}
    assert scrape.value("fovea_upstream_replica_up", **r1) == 1
    assert scrape.value("fovea_upstream_replica_up", replica="http://r2:8000") == 0
    assert scrape.value("fovea_upstream_replica_in_flight", **r1) == 3
    assert scrape.value("fovea_upstream_replica_served_total", **r1) == 40
    assert scrape.value("fovea_upstream_replica_failures", replica="http://r2:8000") == 5
    assert scrape.value("fovea_upstream_replica_waiting", **r1) == 2
    assert scrape.value("fovea_upstream_replica_waiting", replica="http://r2:8000") == 0

    assert scrape.value("fovea_batch_lines", state="pending") == 3
    assert scrape.value("fovea_batch_lines", state="completed") == 5
    assert scrape.value("fovea_admission_bytes_in_use") == 1000
    assert scrape.value("fovea_admission_bytes_capacity") == 64_000
    assert scrape.value("fovea_quota_refusals_total", folder="f1", limit="tokens") == 3

    assert scrape.value("fovea_completions_total", kind="batch", status="ok") == 1
    assert scrape.value("fovea_completions_total", kind="interactive", status="timeout") == 1
    assert scrape.value("fovea_prompt_tokens_total", model="m") == 40
    assert scrape.value("fovea_cached_tokens_total", model="m") == 16
    assert scrape.value("fovea_time_to_first_token_seconds_count", kind="batch") == 1
    # (0.6 s - 0.2 s) over the 4 tokens after the first
    assert scrape.value("fovea_inter_token_latency_seconds_sum", kind="batch") == pytest.approx(0.1)


def test_request_durations_fall_in_their_buckets() -> None:
    metrics = Metrics(EngineRegistry(lambda key: None), dict)  # type: ignore[arg-type, return-value]
    metrics.request_finished("/v1/models", "GET", 200, 0.005)  # on a bound: counted under it
    metrics.request_finished("/v1/models", "GET", 200, 0.2)
    metrics.request_finished("/v1/models", "BREW", 405, 1000.0)  # past every bound

    scrape = Scrape.parse(generate_latest(metrics.registry).decode())

    buckets = "fovea_http_request_duration_seconds_bucket"
    assert scrape.value(buckets, route="/v1/models", le="0.005") == 1
    assert scrape.value(buckets, route="/v1/models", le="0.25") == 2
    assert scrape.value(buckets, route="/v1/models", le="300.0") == 2
    assert scrape.value(buckets, route="/v1/models", le="+Inf") == 3
    assert scrape.value("fovea_http_request_duration_seconds_sum") == pytest.approx(1000.205)
    assert scrape.value("fovea_http_requests_total", method="other", status="405") == 1


@pytest.mark.anyio
async def test_a_scrape_survives_the_database_failing() -> None:
    def broken() -> dict[str, int]:
        raise FoveaError("Internal database error")

    metrics = Metrics(EngineRegistry(lambda key: None), broken)  # type: ignore[arg-type, return-value]
    scrape = Scrape.parse((await metrics.exposition(None, None)).decode())
    assert "fovea_batch_lines" in scrape.families
    assert "fovea_http_requests" in scrape.families


def test_batch_lines_of_unfinished_batches_by_state(fake_settings: Settings) -> None:
    keys = make_keys(fake_settings)
    store = BatchStore(keys.database)
    batch = store.create(
        folder_id=keys.folder_id,
        service_account_id=keys.service_account_id,
        endpoint="/v1/chat/completions",
        input_file_id="file-1",
        input_format="openai",
        model=None,
        options=None,
        source_dataset_id=None,
        completion_window="24h",
        batch_metadata=None,
    )
    assert store.claim(batch.id, "validating", "runner", 30.0)
    store.save_lines(
        batch.id,
        [
            LineEntry(1, "a", 0, 10),
            LineEntry(2, "b", 10, 10),
            LineEntry(3, "c", 20, 10, error={"message": "bad line"}),
        ],
        "runner",
    )
    store.record(batch.id, LineResult(1, "a", "completed", {"ok": True}, None))
    assert store.unfinished_lines() == {"pending": 1, "completed": 1, "failed": 1}
    store.transition(batch.id, "completed")
    assert store.unfinished_lines() == {}  # a finished batch's lines are history
    keys.database.dispose()


@pytest.fixture
def guarded(fake_settings: Settings) -> Iterator[TestClient]:
    settings = fake_settings.model_copy(update={"metrics_token": SecretStr("scrape-me")})
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        yield client


def test_metrics_token_is_asked_for_when_set(guarded: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me"}):
        refused = guarded.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert "scrape-me" not in refused.text
    scrape = _scrape(guarded, Authorization="Bearer scrape-me")
    assert scrape.value("fovea_http_requests_total", route="/metrics", status="401") == 3
