"""The request log: an operator's debugging record of request and response bodies
(``FOVEA_REQUEST_LOG``, off by default).

Only completions whose client allowed it are kept: a request sent with
``x-data-logging-enabled: false`` is dropped here, before anything is copied. Images are
stored as ``{"sha256", "bytes", "media_type"}`` of their decoded bytes, never as pixels or
base64. Completions wait in memory and are written together from a worker thread every
``flush_interval_s`` (sooner once ``max_batch`` wait) and at shutdown; a second task deletes
entries older than the retention every ``sweep_interval_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import sys
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from anyio import to_thread
from PIL import Image

from fovea.errors import FoveaError
from fovea.media.data_url import read_image_bytes
from fovea.services.background import BackgroundTasks
from fovea.services.chat_events import FinishedCompletion
from fovea.store.clock import Clock, utcnow
from fovea.store.request_log import RequestLogEntry, RequestLogStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestLogConfig:
    retention: timedelta
    flush_interval_s: float = 1.0
    max_batch: int = 64
    # Entries kept for another try while the database refuses them; past this the oldest go.
    max_unwritten: int = 10_000
    sweep_interval_s: float = 3600.0


class RequestLog:
    """The observer that stores the bodies of completions clients let it keep."""

    def __init__(
        self,
        store: RequestLogStore,
        config: RequestLogConfig,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        # Completions as they came: turned into entries (images hashed) on the writer's thread.
        self._pending: list[FinishedCompletion] = []
        self._unwritten: list[RequestLogEntry] = []
        self._wanted = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks = BackgroundTasks()

    def completion_finished(self, completion: FinishedCompletion) -> None:
        if not completion.context.data_logging:
            return
        self._pending.append(completion)
        if len(self._pending) >= self._config.max_batch:
            self._wanted.set()

    def start(self) -> None:
        """Start writing and sweeping (call on the event loop)."""
        self._tasks.spawn("request log writer", self._write_forever())
        self._tasks.spawn("request log sweep", self._sweep_forever())

    async def flush(self) -> None:
        """Write every completion taken so far."""
        async with self._lock:
            taken, self._pending = self._pending, []
            try:
                converted = await to_thread.run_sync(_entries, taken) if taken else []
            except BaseException:
                self._pending[:0] = taken
                raise
            entries, self._unwritten = self._unwritten + converted, []
            if not entries:
                return
            try:
                await to_thread.run_sync(self._store.add, entries)
            except BaseException:
                # Written or not, a retry is safe: an entry replaces one with its id.
                self._keep_for_retry(entries)
                raise

    async def sweep(self) -> int:
        """Delete the entries past their retention; returns how many went."""
        cutoff = self._clock() - self._config.retention
        return await to_thread.run_sync(self._store.delete_older_than, cutoff)

    async def aclose(self) -> None:
        await self._tasks.aclose()
        try:
            await self.flush()
        except Exception:
            log.exception("request log: the last entries could not be written")

    def _keep_for_retry(self, entries: list[RequestLogEntry]) -> None:
        dropped = len(entries) - self._config.max_unwritten
        if dropped > 0:
            log.warning("request log: the database refuses writes; dropped %d entries", dropped)
            entries = entries[dropped:]
        self._unwritten = entries

    async def _write_forever(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self._config.flush_interval_s):
                    await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing the request log failed; retrying")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                swept = await self.sweep()
            except Exception:
                log.exception("sweeping the request log failed; retrying")
            else:
                if swept:
                    log.info("request log: deleted %d entries past their retention", swept)
            await asyncio.sleep(self._config.sweep_interval_s)


def _entries(completions: list[FinishedCompletion]) -> list[RequestLogEntry]:
    entries = []
    for completion in completions:
        try:
            entries.append(entry(completion))
        except Exception as exc:
            # Named by id and error type only: an error's message might quote the body.
            log.error(
                "request log: could not store %s (%s)",
                completion.context.request_id,
                type(exc).__name__,
            )
    return entries


def entry(completion: FinishedCompletion) -> RequestLogEntry:
    """What is stored of a completion (hashes its images: call off the event loop)."""
    usage = completion.usage
    return RequestLogEntry(
        request_id=completion.context.request_id,
        created_at=datetime.fromtimestamp(completion.started_at, UTC),
        folder_id=completion.folder_id,
        key_id=completion.key_id,
        model_uri=completion.model_uri,
        status=completion.status.value,
        request=stored_request(completion),
        response={
            "status": completion.status.value,
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "usage": None
            if usage is None
            else {**asdict(usage), "total_tokens": usage.total_tokens},
            "error": completion.error,
            "ttft_s": completion.ttft_s,
            "duration_s": completion.duration_s,
        },
    )


def stored_request(completion: FinishedCompletion) -> dict[str, Any]:
    """The request body as the client sent it, with each image replaced by its digest."""
    body = completion.request.model_dump(mode="json", exclude_none=True, by_alias=True)
    for message in body["messages"]:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                image = part["image_url"]
                part["image_url"] = {**image_digest(image.pop("url")), **image}
    return body


def image_digest(url: str) -> dict[str, Any]:
    """``{"sha256", "bytes", "media_type"}`` of the image a data URL (or bare base64) holds,
    decoded as the server decodes it; a remote URL is kept as it is (it holds no pixels)."""
    url = url.strip()
    if url.startswith(("http://", "https://")):
        return {"url": url}
    declared = url.partition(",")[0].removeprefix("data:").split(";")[0] if "," in url else ""
    try:
        data = read_image_bytes(url, position="", max_bytes=sys.maxsize)
    except FoveaError:
        # Not an image the server could read (a request that failed before its images were):
        # the digest of the text identifies it as well, and holds no pixels either.
        digest = hashlib.sha256(url.encode()).hexdigest()
        return {"sha256": digest, "bytes": None, "media_type": declared or None}
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "media_type": _sniffed_type(data) or declared or None,
    }


def _sniffed_type(data: bytes) -> str | None:
    """The image's type from its header (Pillow reads no pixels to tell it)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "")
    except Exception:
        return None
