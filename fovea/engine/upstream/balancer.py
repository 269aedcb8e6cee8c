"""Which replica serves a request: least outstanding requests, with prefix and image affinity.

A replica's KV prefix cache and its vision-encoder cache hold what it last saw. A request is
described by affinity keys, most specific first: the conversation up to each user message
(newest first), then the digests of its images. The first key that a healthy replica served
sends the request back there, unless that replica has more than ``slack`` requests in flight
beyond the least loaded one: cache hits are worth a little queueing, not a hot spot. Without
an affinity the least loaded replica wins; ties are broken at random so load spreads.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from fovea.engine.types import ImagePart, Message, TextPart
from fovea.engine.upstream.replica import Replica

# Keys remembered per deployment (a few MB at most): old conversations are forgotten first.
MAX_AFFINITY_KEYS = 100_000


def affinity_keys(messages: Sequence[Message]) -> list[bytes]:
    """Keys for ``messages``, most specific first (see the module docstring)."""
    running = hashlib.blake2b(digest_size=16)
    prefixes: list[bytes] = []
    images: list[bytes] = []
    for message in messages:
        running.update(b"\x00" + message.role.encode())
        for part in message.parts:
            if isinstance(part, TextPart):
                running.update(b"\x01" + part.text.encode())
            elif isinstance(part, ImagePart):
                digest = part.image.digest.encode()
                running.update(b"\x02" + digest)
                images.append(b"image:" + digest)
        if message.role == "user":
            prefixes.append(running.digest())
    return prefixes[::-1] + images[::-1]


class Balancer:
    def __init__(self, replicas: Sequence[Replica], *, affinity: bool, slack: int) -> None:
        self.replicas = list(replicas)
        self._affinity = affinity
        self._slack = slack
        self._owners: OrderedDict[bytes, Replica] = OrderedDict()

    def choose(self, keys: Sequence[bytes], exclude: Iterable[Replica] = ()) -> Replica | None:
        """The replica for a request, or None when no healthy one is left to try."""
        excluded = set(exclude)
        candidates = [r for r in self.replicas if r.is_available and r not in excluded]
        if not candidates:
            return None
        least = min(r.load for r in candidates)
        if self._affinity:
            for key in keys:
                owner = self._owners.get(key)
                if owner in candidates and owner is not None and owner.load <= least + self._slack:
                    return owner
        return random.choice([r for r in candidates if r.load == least])

    def remember(self, keys: Sequence[bytes], replica: Replica) -> None:
        """``replica`` now holds these prefixes and images in its caches."""
        if not self._affinity:
            return
        for key in keys:
            self._owners[key] = replica
            self._owners.move_to_end(key)
        while len(self._owners) > MAX_AFFINITY_KEYS:
            self._owners.popitem(last=False)
