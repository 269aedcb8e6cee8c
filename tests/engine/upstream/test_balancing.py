"""Replica state and the balancer: least outstanding, affinity within a slack, ejection,
busy is not down, cool-down then re-admission by a passing probe."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from fovea.engine.types import ImageInput, ImagePart, Message, TextPart
from fovea.engine.upstream.balancer import Balancer, affinity_keys
from fovea.engine.upstream.config import ReplicaSpec
from fovea.engine.upstream.probes import Prober, parse_load_gauges
from fovea.engine.upstream.replica import Replica, ReplicaState
from tests.engine.upstream.scripted import ScriptedReplica

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replicas(count: int, clock: Clock, **options: float) -> list[Replica]:
    return [
        Replica(
            ReplicaSpec(url=f"http://r{i}.test/v1", model="m"),
            max_failures=int(options.get("max_failures", 3)),
            cooldown_s=options.get("cooldown_s", 10.0),
            clock=clock,
        )
        for i in range(count)
    ]


def user(text: str, image: str | None = None) -> Message:
    parts: list[TextPart | ImagePart] = [TextPart(text)]
    if image:
        parts.append(ImagePart(ImageInput(1, 1, b"\0\0\0", digest=image)))
    return Message("user", tuple(parts))


def test_the_least_loaded_replica_wins() -> None:
    pool = replicas(3, Clock())
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 4, 1, 2
    assert Balancer(pool, affinity=False, slack=0).choose([]) is pool[1]


def test_the_engines_own_gauges_count_when_they_say_more() -> None:
    pool = replicas(2, Clock())
    pool[0].running, pool[0].waiting = 10, 5  # busy with another gateway's requests
    pool[1].in_flight = 2
    assert Balancer(pool, affinity=False, slack=0).choose([]) is pool[1]


def test_ties_spread_over_replicas() -> None:
    pool = replicas(2, Clock())
    balancer = Balancer(pool, affinity=False, slack=0)
    assert {balancer.choose([]) for _ in range(200)} == set(pool)


def test_a_conversations_next_turn_and_a_repeated_image_go_back() -> None:
    pool = replicas(4, Clock())
    balancer = Balancer(pool, affinity=True, slack=2)
    turn_one = [Message("system", (TextPart("Be brief."),)), user("What is this?", "cat.jpg")]
    balancer.remember(affinity_keys(turn_one), pool[2])
    turn_two = [*turn_one, Message("assistant", (TextPart("A cat."),)), user("Its colour?")]
    other_question_same_image = [user("Is it cute?", "cat.jpg")]
    stranger = [Message("system", (TextPart("Be brief."),)), user("Hello")]
    pool[2].in_flight = 2  # busier than the others, but within the slack
    for _ in range(20):
        assert balancer.choose(affinity_keys(turn_two)) is pool[2]
        assert balancer.choose(affinity_keys(other_question_same_image)) is pool[2]
        assert (
            balancer.choose(affinity_keys(stranger)) is not pool[2]
        )  # a shared system prompt is no tie


def test_affinity_gives_way_when_its_replica_is_too_far_behind() -> None:
    pool = replicas(2, Clock())
    balancer = Balancer(pool, affinity=True, slack=2)
    keys = affinity_keys([user("hi", "x.png")])
    balancer.remember(keys, pool[0])
    pool[0].in_flight = 3
    assert balancer.choose(keys) is pool[1]


def test_failures_eject_then_cooldown_then_a_probe_readmits() -> None:
    clock = Clock()
    (replica,) = replicas(1, clock, max_failures=2, cooldown_s=5)
    balancer = Balancer([replica], affinity=True, slack=0)
    replica.failed("500")
    assert replica.state is ReplicaState.UP
    replica.failed("500")
    assert replica.state is ReplicaState.DOWN
    assert balancer.choose([]) is None
    replica.probe_passed()  # still cooling down
    assert replica.state is ReplicaState.DOWN
    assert replica.seconds_until_retry() == 5
    clock.now += 5
    replica.probe_passed()
    assert replica.state is ReplicaState.UP and replica.failures == 0
    assert balancer.choose([]) is replica
    # On probation: one more failure ejects it again, until a request succeeds there.
    replica.failed("500")
    assert replica.state is ReplicaState.DOWN
    clock.now += 5
    replica.probe_passed()
    replica.succeeded()
    replica.failed("500")
    assert replica.state is ReplicaState.UP


def test_passing_probes_do_not_clear_failing_requests() -> None:
    (replica,) = replicas(1, Clock(), max_failures=3)
    for _ in range(3):
        replica.failed("500 on every chat request")
        replica.probe_passed()  # /health is fine all along
    assert replica.state is ReplicaState.DOWN


def test_an_unreachable_replica_is_ejected_at_once() -> None:
    (replica,) = replicas(1, Clock(), max_failures=5)
    replica.failed("connection refused", unreachable=True)
    assert replica.state is ReplicaState.DOWN


async def test_probes_tell_busy_from_down_and_fall_back_to_models() -> None:
    clock = Clock()
    llama_cpp_server, dead, healthy = ScriptedReplica(), ScriptedReplica(), ScriptedReplica()
    asked: list[str] = []

    async def not_found(request: web.Request, body: dict[str, object]) -> web.StreamResponse:
        asked.append(request.path)
        return web.Response(status=404)

    llama_cpp_server.health = not_found  # no /health: falls back to /v1/models
    for replica in (llama_cpp_server, healthy):
        await replica.start()
    pool = [
        Replica(ReplicaSpec(url=r.url, model="m"), max_failures=3, cooldown_s=0, clock=clock)
        for r in (llama_cpp_server, dead, healthy)
    ]
    try:
        async with aiohttp.ClientSession() as session:
            prober = Prober(session, pool, timeout_s=1, read_metrics=False)
            await prober.probe_all()
            assert [r.state for r in pool] == [ReplicaState.UP, ReplicaState.DOWN, ReplicaState.UP]
            assert "unreachable" in (pool[1].last_error or "")
            assert pool[0].probe_url.endswith("/v1/models")
            await prober.probe_all()
            assert asked == ["/health"]  # asked once, then /v1/models only
    finally:
        for replica in (llama_cpp_server, healthy):
            await replica.stop()


VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="google/gemma-3-27b-it"} 7.0
vllm:num_requests_running{engine="1",model_name="google/gemma-3-27b-it"} 3.0
vllm:num_requests_running{engine="0",model_name="other"} 50.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="google/gemma-3-27b-it"} 2.0
"""


def test_vllm_load_gauges_are_read_for_the_served_model() -> None:
    assert parse_load_gauges(VLLM_METRICS, "google/gemma-3-27b-it") == (10, 2)
    assert parse_load_gauges("# nothing here\n", "m") == (None, None)
