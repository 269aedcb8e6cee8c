"""Usage: one record per finished completion or embeddings request, written off the request's
path; and the reports read back from them (``fovea usage``,
``GET /v1/organization/usage/completions`` and ``.../embeddings``).

Records wait in memory and are written together every ``flush_interval_s`` (one transaction
for many), and at shutdown. A process killed with SIGKILL loses at most the records of its last
interval (one second by default); a clean stop loses none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from anyio import to_thread

from fovea.errors import InvalidRequestError
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol import usage as wire
from fovea.services.access import AccessControl
from fovea.services.background import BackgroundTasks, every
from fovea.services.chat_events import FinishedCompletion
from fovea.store.usage import (
    UsageFilter,
    UsageGroup,
    UsageKind,
    UsageRow,
    UsageStore,
    UsageTotals,
)

log = logging.getLogger(__name__)


def usage_row(completion: FinishedCompletion) -> UsageRow:
    usage = completion.usage
    principal = completion.principal
    return UsageRow(
        created_at=datetime.fromtimestamp(completion.started_at + completion.duration_s, UTC),
        request_id=completion.context.request_id,
        folder_id=completion.folder_id,
        service_account_id=principal.service_account_id,
        key_id=completion.key_id,
        model_uri=completion.model_uri,
        model=completion.model,
        branch=completion.branch,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        image_tokens=usage.image_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        images=completion.images,
        ttft_ms=None if completion.ttft_s is None else completion.ttft_s * 1000,
        duration_ms=completion.duration_s * 1000,
        status=completion.status.value,
        batch_id=completion.context.batch_id,
    )


class UsageRecorder:
    """The observer that writes usage records, in batches, from a task of its own."""

    def __init__(self, store: UsageStore, flush_interval_s: float = 1.0) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._pending: list[UsageRow] = []
        self._tasks = BackgroundTasks()
        self._lock = asyncio.Lock()

    def completion_finished(self, completion: FinishedCompletion) -> None:
        self._pending.append(usage_row(completion))

    def record(self, row: UsageRow) -> None:
        """Take a record of another kind of request (an embeddings request)."""
        self._pending.append(row)

    def start(self) -> None:
        """Start flushing (call on the event loop)."""
        self._tasks.spawn(
            "usage records", every(self._interval, self.flush, "writing usage records")
        )

    async def flush(self) -> None:
        """Write every record taken so far."""
        async with self._lock:
            taken, self._pending = self._pending, []
            if not taken:
                return
            try:
                await to_thread.run_sync(self._store.add, taken)
            except BaseException:
                self._pending[:0] = taken  # kept for the next try
                raise

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await self.flush()


class UsageService:
    """Usage reports for API callers: a caller sees the folders it may read usage of."""

    def __init__(self, store: UsageStore, recorder: UsageRecorder, access: AccessControl) -> None:
        self._store = store
        self._recorder = recorder
        self._access = access

    async def completions_page(
        self, principal: Principal, params: wire.UsageParams, now: float | None = None
    ) -> wire.UsagePage[wire.CompletionsResult]:
        """One page of completions' time buckets; a caller sees the folders it has
        ``ai.viewer`` on (its own unless ``project_ids`` names others)."""
        return await self._page(principal, params, UsageKind.COMPLETION, _completions, now)

    async def embeddings_page(
        self, principal: Principal, params: wire.UsageParams, now: float | None = None
    ) -> wire.UsagePage[wire.EmbeddingsResult]:
        """One page of embeddings requests' time buckets, seen as completions' are."""
        return await self._page(principal, params, UsageKind.EMBEDDING, _embeddings, now)

    async def _page(
        self,
        principal: Principal,
        params: wire.UsageParams,
        kind: UsageKind,
        result: Callable[[UsageTotals], wire.Result],
        now: float | None,
    ) -> wire.UsagePage[wire.Result]:
        width = wire.BUCKET_SECONDS[params.bucket_width]
        default_limit, max_limit = wire.BUCKET_LIMITS[params.bucket_width]
        limit = params.limit or default_limit
        if limit > max_limit:
            raise InvalidRequestError(
                f"limit {limit} is too large for bucket_width {params.bucket_width}: at most "
                f"{max_limit} buckets per page",
                param="limit",
            )
        end = params.end_time if params.end_time is not None else int(now or time.time()) + 1
        if end <= params.start_time:
            raise InvalidRequestError(
                f"end_time ({end}) must be after start_time ({params.start_time})",
                param="end_time",
            )
        start = _page_start(params)
        page_end = min(end, start + limit * width)
        folders = tuple(params.project_ids or (principal.folder_id,))
        for folder_id in folders:
            await self._access.require(principal, folder_id, Permission.USAGE_READ)
        # What this replica has taken but not written yet is part of the answer.
        await self._recorder.flush()
        where = UsageFilter(
            start=datetime.fromtimestamp(start, UTC),
            end=datetime.fromtimestamp(page_end, UTC),
            folder_ids=folders,
            service_account_ids=params.user_ids,
            key_ids=params.api_key_ids,
            models=params.models,
            batch=params.batch,
            kind=kind,
        )
        group_by = tuple(_GROUPS[name] for name in dict.fromkeys(params.group_by or ()))
        totals = await to_thread.run_sync(partial(self._store.totals, where, group_by, width))
        buckets = [
            wire.UsageBucket[wire.Result](
                start_time=bucket_start,
                end_time=min(bucket_start + width, page_end),
                results=[],
            )
            for bucket_start in range(start, page_end, width)
        ]
        for total in totals:
            assert total.bucket is not None
            buckets[total.bucket].results.append(result(total))
        has_more = page_end < end
        return wire.UsagePage[wire.Result](
            data=buckets, has_more=has_more, next_page=str(page_end) if has_more else None
        )


_GROUPS = {
    "project_id": UsageGroup.FOLDER,
    "user_id": UsageGroup.SERVICE_ACCOUNT,
    "api_key_id": UsageGroup.KEY,
    "model": UsageGroup.MODEL,
    "batch": UsageGroup.BATCH,
}


def _page_start(params: wire.UsageParams) -> int:
    if params.page is None:
        return params.start_time
    if not params.page.isdigit() or int(params.page) < params.start_time:
        raise InvalidRequestError(
            "page is not a next_page value of this query; send the next_page of the previous "
            "page, with the same start_time",
            param="page",
        )
    return int(params.page)


def _group(total: UsageTotals) -> dict[str, Any]:
    """The result's group fields, by their wire names."""
    return {name: total.group.get(group.value) for name, group in _GROUPS.items()}


def _completions(total: UsageTotals) -> wire.CompletionsResult:
    return wire.CompletionsResult(
        input_tokens=total.prompt_tokens,
        output_tokens=total.completion_tokens,
        input_cached_tokens=total.cached_tokens,
        input_image_tokens=total.image_tokens,
        num_model_requests=total.requests,
        num_images=total.images,
        num_failed_requests=total.errors,
        **_group(total),
    )


def _embeddings(total: UsageTotals) -> wire.EmbeddingsResult:
    return wire.EmbeddingsResult(
        input_tokens=total.prompt_tokens,
        num_model_requests=total.requests,
        num_failed_requests=total.errors,
        **_group(total),
    )
