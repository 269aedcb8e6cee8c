"""Per-folder limits on concurrent generations (the cloud's default: 10 per folder)."""

from __future__ import annotations

from collections import Counter

from fovea.errors import RateLimitError


class FolderConcurrency:
    """Counts generations in flight per folder; one over the limit gets a 429 at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: Counter[str] = Counter()

    def acquire(self, folder_id: str) -> None:
        if self._active[folder_id] >= self.limit:
            raise RateLimitError(
                f"Quota exceeded: folder {folder_id} already has {self.limit} generations in "
                "flight (the limit for concurrent generations); retry when one finishes",
                headers={"Retry-After": "1"},
            )
        self._active[folder_id] += 1

    def release(self, folder_id: str) -> None:
        self._active[folder_id] -= 1
        if self._active[folder_id] <= 0:
            del self._active[folder_id]

    def in_flight(self, folder_id: str) -> int:
        return self._active[folder_id]
