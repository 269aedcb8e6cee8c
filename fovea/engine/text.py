"""Turning generated token bytes into streamed text: UTF-8 boundaries and stop sequences."""

from __future__ import annotations

import codecs


class StopFilter:
    """Streams text while holding back any tail that could still become a stop sequence.

    ``push`` returns the text that is safe to emit now; once a stop sequence appears,
    ``stopped`` is true and the text up to (not including) it has been emitted.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        if not self._stops:
            return text
        self._pending += text
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            emitted, self._pending = self._pending[:cut], ""
            return emitted
        keep = self._held_back()
        emitted = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return emitted

    def flush(self) -> str:
        emitted, self._pending = self._pending, ""
        return emitted

    def _first_stop(self) -> int | None:
        positions = [p for p in (self._pending.find(s) for s in self._stops) if p >= 0]
        return min(positions) if positions else None

    def _held_back(self) -> int:
        # The longest suffix of the pending text that is a proper prefix of some stop sequence.
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class TokenTextDecoder:
    """Decodes token pieces as they come; a multi-byte character split across tokens waits."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
