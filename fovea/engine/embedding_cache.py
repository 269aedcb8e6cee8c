"""Vision-encoder outputs by image identity, in a byte-bounded LRU: a repeated image skips the
encoder (~38 s an image for a real Gemma 3 vision tower on 2 CPU cores)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes: int = 0
    entries: int = 0
    evictions: int = 0


class EmbeddingCache:
    """Least-recently-used embeddings up to ``max_bytes``; an entry larger than that is not kept.

    Used from the engine's worker thread only.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def get(self, key: bytes) -> np.ndarray | None:
        found = self._entries.get(key)
        if found is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return found

    def put(self, key: bytes, embeddings: np.ndarray) -> None:
        size = embeddings.nbytes
        if size > self.max_bytes or key in self._entries:
            return
        while self.stats.bytes + size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.stats.bytes -= evicted.nbytes
            self.stats.evictions += 1
        self._entries[key] = embeddings
        self.stats.bytes += size
        self.stats.entries = len(self._entries)
