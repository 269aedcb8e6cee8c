"""The engine's caches as data structures: LRU by bytes, prefix matching by content."""

from __future__ import annotations

import numpy as np

from fovea.engine.embedding_cache import EmbeddingCache
from fovea.engine.prefix_cache import KvPrefix, Segment


def _array(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)  # 4 bytes an element


def test_embedding_cache_evicts_least_recently_used_by_bytes() -> None:
    cache = EmbeddingCache(max_bytes=100)
    cache.put(b"a", _array(10))
    cache.put(b"b", _array(10))
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", _array(10))  # 120 bytes > 100: b goes
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None and cache.get(b"c") is not None
    assert cache.stats.bytes == 80
    assert cache.stats.evictions == 1


def test_embedding_cache_skips_entries_larger_than_itself() -> None:
    cache = EmbeddingCache(max_bytes=16)
    cache.put(b"big", _array(10))
    assert cache.get(b"big") is None
    assert cache.stats.bytes == 0
    disabled = EmbeddingCache(max_bytes=0)
    disabled.put(b"x", _array(1))
    assert disabled.get(b"x") is None


def test_prefix_reuse_keeps_one_position_to_evaluate() -> None:
    prefix = KvPrefix()
    prefix.extend([1, 2, 3])
    segments = [Segment(0, 3, is_image=False)]
    assert prefix.reusable([1, 2, 3], segments) == 2
    assert prefix.reusable([1, 2, 9], segments) == 2
    assert prefix.reusable([7, 2, 3], segments) == 0


def test_prefix_reuse_takes_an_image_whole_or_not_at_all() -> None:
    prefix = KvPrefix()
    image = [(b"img", k) for k in range(4)]
    prefix.extend([1, *image, 5])
    segments = [Segment(0, 1, False), Segment(1, 5, True), Segment(5, 7, False)]
    assert prefix.reusable([1, *image, 5, 6], segments) == 6
    other = [(b"other", k) for k in range(4)]
    assert prefix.reusable([1, *other, 5, 6], segments) == 1
    # A prompt whose match would end inside an image falls back to the image's start.
    assert prefix.reusable([1, *image], [Segment(0, 1, False), Segment(1, 5, True)]) == 1
