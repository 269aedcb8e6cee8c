"""A flood of bad keys: past the limit an address's failures are 429 with Retry-After, while
valid keys keep working from that address and every other, so nobody sharing an address with
an attacker is locked out."""

from __future__ import annotations

import pytest

from fovea.errors import RateLimitError
from fovea.services.auth_throttle import AuthThrottle
from tests.security.conftest import FAILURES_PER_MINUTE, Server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(throttle: AuthThrottle, address: str) -> RateLimitError | None:
    try:
        throttle.failed(address)
    except RateLimitError as error:
        return error
    return None


def test_failures_past_the_limit_are_refused_until_the_window_passes() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, 60.0, timer=clock)
    assert [refused(throttle, "203.0.113.7") for _ in range(3)] == [None] * 3
    clock.now += 20
    error = refused(throttle, "203.0.113.7")
    assert error is not None and error.status_code == 429
    assert error.headers == {"Retry-After": "40"}  # when the first failure leaves the window
    assert refused(throttle, "198.51.100.9") is None  # another address is not concerned
    clock.now += 60
    assert refused(throttle, "203.0.113.7") is None


def test_an_ipv6_host_counts_as_its_64_and_mapped_ipv4_as_itself() -> None:
    throttle = AuthThrottle(2, 60.0, timer=Clock())
    throttle.failed("2001:db8:1:2::1")
    throttle.failed("2001:db8:1:2:ffff::9")  # the same /64
    assert refused(throttle, "2001:db8:1:2::3") is not None
    assert refused(throttle, "2001:db8:1:3::1") is None  # the next /64
    throttle.failed("192.0.2.1")
    throttle.failed("::ffff:192.0.2.1")
    assert refused(throttle, "192.0.2.1") is not None


def _key_status(server: Server, key: str, address: str) -> tuple[int, dict[str, str]]:
    # uvicorn takes the client's address from X-Forwarded-For sent by a trusted proxy
    # (127.0.0.1 by default): these requests come from the addresses a proxy would name.
    response = server.get("/v1/models", key, **{"X-Forwarded-For": address})
    return response.status_code, dict(response.headers)


@pytest.mark.slow
def test_a_flood_of_bad_keys_is_throttled_without_locking_out_good_keys(server: Server) -> None:
    attacker, neighbour = "203.0.113.7", "198.51.100.9"
    key_id = server.api_key.split(".")[1]
    wrong_secret = f"fva.{key_id}.{'A' * 40}"
    unknown_id = f"fva.{'0' * 20}.{'A' * 40}"
    statuses = [
        _key_status(server, key, attacker)[0]
        for key in [wrong_secret, unknown_id] * FAILURES_PER_MINUTE
    ]
    assert statuses[:FAILURES_PER_MINUTE] == [401] * FAILURES_PER_MINUTE
    assert set(statuses[FAILURES_PER_MINUTE:]) == {429}
    status, headers = _key_status(server, wrong_secret, attacker)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60

    # The user's valid key works from the attacker's address and from anywhere else.
    assert _key_status(server, server.api_key, attacker)[0] == 200
    assert _key_status(server, server.api_key, neighbour)[0] == 200
    assert _key_status(server, wrong_secret, neighbour)[0] == 401


@pytest.mark.slow
def test_malformed_keys_are_not_counted_as_guesses(server: Server) -> None:
    address = "192.0.2.44"
    statuses = {
        _key_status(server, "not-a-key", address)[0] for _ in range(3 * FAILURES_PER_MINUTE)
    }
    assert statuses == {401}
