"""What the model's KV cache holds, position by position, so a new prompt that starts the same
way (same system prompt, same images, same earlier turns) only processes what is new.

A position is a token id, or ``(image id, k)`` for the k-th position of an image: images match by
content hash, never by the placeholder tokens that stand for them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

Unit = Hashable


@dataclass(frozen=True, slots=True)
class Segment:
    """Positions ``start:end`` of a prompt come from one chunk (text or one image)."""

    start: int
    end: int
    is_image: bool


class KvPrefix:
    """The units now in the KV cache (sequence 0), in order."""

    def __init__(self) -> None:
        self.units: list[Unit] = []

    def reusable(self, units: Sequence[Unit], segments: Sequence[Segment]) -> int:
        """How many leading positions of ``units`` the cache already holds and can keep.

        At least one position is left to evaluate (its logits start the answer), and an image
        is reused whole or not at all.
        """
        common = 0
        for cached, new in zip(self.units, units, strict=False):
            if cached != new:
                break
            common += 1
        common = min(common, len(units) - 1)
        for segment in segments:
            if segment.is_image and segment.start < common < segment.end:
                return segment.start
        return max(common, 0)

    def truncate(self, length: int) -> None:
        del self.units[length:]

    def extend(self, units: Sequence[Unit]) -> None:
        self.units.extend(units)

    def clear(self) -> None:
        self.units.clear()
