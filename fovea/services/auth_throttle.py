"""Failed authentications counted per client address, so a flood of bad keys is told to back off.

Only failures count and only failures are refused: once an address has ``max_failures`` failed
keys within ``window_s``, its next failure is a 429 with ``Retry-After`` instead of a 401, while
a valid key from that address (or any other) still works. Someone sharing an address with a
user (a NAT, a proxy) can therefore never lock the user out; and as a key's secret has 240
random bits, throttling is not what stops guessing: it tells a misbehaving client to stop and
keeps it visible. Only keys shaped like keys count (a malformed one is refused without a
database read, and is no guess). IPv6 clients count per /64, the block one host usually holds.

The counts live in this process's memory: each replica throttles on its own, so a client
spread over ``n`` replicas gets ``n`` times ``max_failures`` before its first 429.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable

from cachetools import TTLCache

from fovea.errors import RateLimitError

# Addresses tracked at most: an attacker spreading over more only evicts its own oldest ones.
_ADDRESSES = 100_000
_IPV6_PREFIX = 64


class AuthThrottle:
    """``failed(address)`` after each refused key; it raises once the address is over."""

    def __init__(
        self,
        max_failures: int,
        window_s: float = 60.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._timer = timer
        self._failures: TTLCache[str, deque[float]] = TTLCache(_ADDRESSES, window_s, timer)

    def failed(self, address: str) -> None:
        """Count a refused key from ``address``; ``RateLimitError`` if it is over its limit."""
        client = client_block(address)
        now = self._timer()
        recent = self._failures.get(client) or deque(maxlen=self.max_failures)
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        is_over = len(recent) >= self.max_failures
        recent.append(now)
        self._failures[client] = recent  # re-set: its time to live starts again
        if is_over:
            retry_after = max(1, math.ceil(recent[0] + self.window_s - now))
            raise RateLimitError(
                f"Too many failed authentications from {client}: over {self.max_failures} "
                f"unknown, revoked or expired API keys in {self.window_s:g} s. Check the key "
                f"and retry in {retry_after} s; valid keys are not affected.",
                code="too_many_auth_failures",
                headers={"Retry-After": str(retry_after)},
            )


def client_block(address: str) -> str:
    """The address a client is counted under: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a test client, a Unix socket): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{_IPV6_PREFIX}", strict=False))
    return str(ip)
