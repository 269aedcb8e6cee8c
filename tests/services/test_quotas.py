"""The rate limiter on a fake clock: buckets refill, headers say when, batch lines take tokens
but no concurrency, a key's own quota applies next to its folder's."""

from __future__ import annotations

import pytest

from fovea.engine.types import Usage
from fovea.errors import RateLimitError
from fovea.iam.types import Principal
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.chat_events import CompletionStatus, FinishedCompletion, RequestContext
from fovea.services.quotas import RateLimiter
from fovea.store.quotas import Quota

ALICE = Principal("key-alice", "sa", "folder", frozenset())
BOB = Principal("key-bob", "sa", "folder", frozenset())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limiter(*quotas: Quota, default_concurrent: int = 10) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    limiter = RateLimiter(None, default_concurrent, clock=clock)
    limiter.apply(quotas)
    return limiter, clock


def _finished(principal: Principal, tokens: int, batch: bool = False) -> FinishedCompletion:
    return FinishedCompletion(
        context=RequestContext(batch_id="batch_1" if batch else None),
        principal=principal,
        folder_id=principal.folder_id,
        model_uri="gpt://folder/m",
        model="m",
        branch="latest",
        request=ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        ),
        status=CompletionStatus.OK,
        usage=Usage(prompt_tokens=tokens - 1, completion_tokens=1),
        images=0,
        started_at=0.0,
        ttft_s=0.1,
        duration_s=0.2,
        text="",
    )


def test_requests_per_minute_refill_and_headers_say_when() -> None:
    limiter, clock = _limiter(Quota("folder", requests_per_minute=2))
    first = limiter.admit(ALICE, "folder", interactive=True)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"] == "30s"
    limiter.admit(BOB, "folder", interactive=True)  # the folder's limit holds for all its keys
    with pytest.raises(RateLimitError) as refused:
        limiter.admit(ALICE, "folder", interactive=True)
    assert refused.value.headers["Retry-After"] == "30"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert "2 requests per minute" in refused.value.message
    assert limiter.refusals[("folder", "requests")] == 1

    clock.now += 30  # one request's worth refilled
    again = limiter.admit(ALICE, "folder", interactive=True)
    assert again.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 60
    assert (
        limiter.admit(ALICE, "folder", interactive=True).headers["x-ratelimit-remaining-requests"]
        == "1"
    )


def test_tokens_are_counted_when_completions_end() -> None:
    limiter, clock = _limiter(Quota("folder", tokens_per_minute=100))
    limiter.admit(ALICE, "folder", interactive=True).release()
    limiter.completion_finished(_finished(ALICE, 150))  # one request may overshoot
    with pytest.raises(RateLimitError) as refused:
        limiter.admit(ALICE, "folder", interactive=True)
    assert "100 tokens per minute" in refused.value.message
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    # Out of debt (50 tokens) and one more: 51 tokens at 100 a minute, ~31 s.
    assert refused.value.headers["Retry-After"] == "31"
    clock.now += 31
    admitted = limiter.admit(ALICE, "folder", interactive=True)
    assert admitted.headers["x-ratelimit-limit-tokens"] == "100"


def test_batch_lines_take_tokens_but_no_concurrency() -> None:
    limiter, _ = _limiter(Quota("folder", tokens_per_minute=100, concurrent=1))
    line = limiter.admit(ALICE, "folder", interactive=False)
    assert limiter.in_flight("folder") == 0
    interactive = limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError, match="concurrent generations"):
        limiter.admit(BOB, "folder", interactive=True)
    interactive.release()
    interactive.release()  # twice is once
    assert limiter.in_flight("folder") == 0
    line.release()
    limiter.completion_finished(_finished(ALICE, 120, batch=True))
    with pytest.raises(RateLimitError, match="tokens per minute"):
        limiter.admit(BOB, "folder", interactive=False)  # batch lines wait for tokens too


def test_a_key_has_its_own_quota_inside_its_folder() -> None:
    limiter, _ = _limiter(
        Quota("folder", requests_per_minute=100),
        Quota("folder", "key-alice", requests_per_minute=1),
    )
    limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError, match="API key key-alice"):
        limiter.admit(ALICE, "folder", interactive=True)
    limiter.admit(BOB, "folder", interactive=True)  # the folder still has room for others


def test_a_changed_quota_applies_to_the_next_request() -> None:
    limiter, _ = _limiter(Quota("folder", requests_per_minute=1))
    limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError):
        limiter.admit(ALICE, "folder", interactive=True)
    limiter.apply([])  # the quota was removed
    admitted = limiter.admit(ALICE, "folder", interactive=True)
    assert "x-ratelimit-limit-requests" not in admitted.headers
    limiter.apply([Quota("folder", concurrent=1)])
    with pytest.raises(RateLimitError, match="1 generations in flight"):
        limiter.admit(BOB, "folder", interactive=True)


def test_a_quota_of_rates_alone_keeps_the_default_concurrency() -> None:
    """`fovea quota set --rpm 100` on a folder does not lift the server's concurrency limit."""
    limiter, _ = _limiter(Quota("folder", requests_per_minute=100), default_concurrent=1)
    limiter.admit(ALICE, "folder", interactive=True)
    with pytest.raises(RateLimitError, match="1 generations in flight"):
        limiter.admit(BOB, "folder", interactive=True)
