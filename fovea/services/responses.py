"""OpenAI's Responses API on the chat pipeline: a request becomes a chat completion (auth,
quotas, image intake and usage records are chat's), its output becomes output items or the
Responses event sequence, and stored responses let a conversation continue by id."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import timedelta

from anyio import to_thread

from fovea.engine.types import Priority
from fovea.errors import FoveaError, InvalidRequestError, NotFoundError
from fovea.iam.apikeys import GENERATION_SCOPES
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol import chat as chat_wire
from fovea.protocol import responses as wire
from fovea.services.access import AccessControl
from fovea.services.background import BackgroundTasks, every
from fovea.services.catalog import parse_model_uri
from fovea.services.chat import ChatRun, ChatService
from fovea.services.chat_events import RequestContext
from fovea.services.files import FileService
from fovea.services.response_events import EventStream, new_id
from fovea.services.response_files import inline_file_images
from fovea.services.response_items import (
    ChatMessage,
    input_messages,
    output_messages,
    plain_dict,
    stored_items,
)
from fovea.services.response_requests import chat_request, relocated
from fovea.store.clock import Clock, utcnow
from fovea.store.responses import ResponseStore, StoredTurn

log = logging.getLogger(__name__)


def response_not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")


class ResponsesService:
    """Creates responses through ``ChatService``; reads and deletes the stored ones."""

    def __init__(
        self,
        *,
        chat: ChatService,
        store: ResponseStore,
        access: AccessControl,
        files: FileService,
        max_image_bytes: int,
        retention: timedelta = timedelta(days=30),
        clock: Clock = utcnow,
    ) -> None:
        self._chat = chat
        self._store = store
        self._access = access
        self._files = files
        self._max_image_bytes = max_image_bytes
        self._retention = retention
        self._clock = clock
        self._tasks = BackgroundTasks()

    def start_sweeping(self) -> None:
        """Sweep expired responses hourly (call on the event loop)."""
        self._tasks.spawn("response sweep", every(3600.0, self.sweep, "sweeping old responses"))

    async def sweep(self) -> int:
        """Delete the stored responses past their retention; returns how many went."""
        cutoff = self._clock() - self._retention
        return await to_thread.run_sync(self._store.delete_older_than, cutoff)

    async def aclose(self) -> None:
        await self._tasks.aclose()

    async def start(
        self,
        principal: Principal,
        body: wire.CreateResponseRequest,
        header_folder: str | None,
        context: RequestContext,
        *,
        priority: Priority = Priority.INTERACTIVE,
    ) -> ResponseRun:
        """Check, translate and start the generation; returns once its first chunk is in hand."""
        if body.model_extra:
            names = ", ".join(sorted(body.model_extra)) if context.data_logging else "(withheld)"
            log.info("ignoring unknown response request fields: %s", names)
        folder_id = await self._folder(
            principal, header_folder, parse_model_uri(body.model).folder_id
        )
        body = await inline_file_images(body, self._files, folder_id, self._max_image_bytes)
        new_messages, where = _checked_input(body)
        history = await self._history(body.previous_response_id, folder_id)
        head = [{"role": "system", "content": body.instructions}] if body.instructions else []
        # The previous turns come first and unchanged: the engine's KV cache holds their prefix.
        messages = [*head, *history, *new_messages]
        where = ["instructions"] * len(head) + ["previous_response_id"] * len(history) + where
        chat_body = chat_request(body, messages, where)
        try:
            run = await self._chat.start(
                principal, chat_body, header_folder, priority=priority, context=context
            )
        except FoveaError as error:
            raise relocated(error, where) from None
        keep = body.store and context.data_logging
        return ResponseRun(run, body, new_messages, self._store if keep else None, folder_id)

    async def complete(
        self,
        principal: Principal,
        body: wire.CreateResponseRequest,
        *,
        priority: Priority,
        context: RequestContext,
    ) -> wire.ResponseObject:
        """A whole response: a batch line."""
        run = await self.start(principal, body, None, context, priority=priority)
        try:
            return await run.collect()
        finally:
            await run.aclose()

    async def _history(self, response_id: str | None, folder_id: str) -> list[ChatMessage]:
        """The messages of the conversation ``response_id`` ends, each turn's input and output
        (not its instructions: each response has its own)."""
        if response_id is None:
            return []
        turns = await to_thread.run_sync(self._store.conversation, response_id, folder_id)
        return [message for turn in turns for message in _replayed(turn)]

    async def retrieve(
        self, principal: Principal, header_folder: str | None, response_id: str
    ) -> wire.ResponseObject:
        folder_id = await self._folder(principal, header_folder)
        stored = await to_thread.run_sync(self._store.response, response_id, folder_id)
        if stored is None:
            raise response_not_found(response_id)
        return wire.ResponseObject.model_validate(stored)

    async def delete(
        self, principal: Principal, header_folder: str | None, response_id: str
    ) -> wire.ResponseDeleted:
        folder_id = await self._folder(principal, header_folder)
        if not await to_thread.run_sync(self._store.delete, response_id, folder_id):
            raise response_not_found(response_id)
        return wire.ResponseDeleted(id=response_id)

    async def input_items(
        self,
        principal: Principal,
        header_folder: str | None,
        response_id: str,
        params: wire.InputItemsParams,
    ) -> wire.InputItemList:
        """The items of the response's own input (not its earlier turns'), newest first unless
        ``order`` is ``asc``."""
        folder_id = await self._folder(principal, header_folder)
        turn = await to_thread.run_sync(self._store.turn, response_id, folder_id)
        if turn is None:
            raise response_not_found(response_id)
        items = stored_items(response_id, turn.messages)
        if params.order == "desc":
            items.reverse()
        if params.after is not None:
            ids = [item.id for item in items]
            if params.after not in ids:
                raise InvalidRequestError(
                    f"No input item with id '{params.after}' in response '{response_id}'",
                    param="after",
                )
            items = items[ids.index(params.after) + 1 :]
        page = items[: params.limit]
        return wire.InputItemList(
            data=page,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
            has_more=len(items) > len(page),
        )

    async def _folder(
        self, principal: Principal, header_folder: str | None, uri_folder: str | None = None
    ) -> str:
        """The caller's folder, where it may use models (and so read what it generated)."""
        self._access.require_scope(principal, GENERATION_SCOPES)
        folder_id = self._access.folder_for(
            principal, uri_folder=uri_folder, header_folder=header_folder
        )
        await self._access.require(principal, folder_id, Permission.MODELS_USE)
        return folder_id


class ResponseRun:
    """A response whose generation has started. Consume it once, with ``collect`` or
    ``events``; either ends the chat run (``aclose``), and stores the response when asked."""

    def __init__(
        self,
        chat: ChatRun,
        body: wire.CreateResponseRequest,
        messages: list[ChatMessage],
        store: ResponseStore | None,
        folder_id: str,
    ) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.chat = chat
        # OpenAI's x-ratelimit-* headers for the response.
        self.headers = chat.headers
        self._body = body
        self._messages = messages
        self._store = store
        self._folder_id = folder_id

    async def aclose(self) -> None:
        await self.chat.aclose()

    async def collect(self) -> wire.ResponseObject:
        completion = await self.chat.collect()
        choice = completion.choices[0]
        output: list[wire.OutputItem] = []
        incomplete = choice.finish_reason == "length"
        status: wire.ItemStatus = "incomplete" if incomplete else "completed"
        calls = [plain_dict(call) for call in choice.message.tool_calls or ()]
        if choice.message.content or not calls:
            text = wire.OutputText(text=choice.message.content or "")
            output.append(wire.OutputMessage(id=new_id("msg"), status=status, content=[text]))
        for call in calls:
            function = call["function"]
            output.append(
                wire.FunctionCall(
                    id=new_id("fc"),
                    status=status,
                    call_id=call["id"],
                    name=function["name"],
                    arguments=function["arguments"],
                )
            )
        response = self._response(output, incomplete, _usage(completion.usage))
        await self._save(response)
        return response

    async def events(self) -> AsyncGenerator[wire.ResponseEvent, None]:
        """The Responses event sequence: created, in progress, each output item opened, its
        deltas, each closed, then completed (or incomplete, when cut at max_output_tokens)."""
        stream = EventStream()
        started = self._response([], False, None, status="in_progress")
        yield stream.lifecycle("response.created", started)
        yield stream.lifecycle("response.in_progress", started)
        finish_reason: str | None = None
        usage: wire.ResponseUsage | None = None
        async with aclosing(self.chat.chunks(include_usage=True)) as chunks:
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    for event in stream.feed(choice.delta):
                        yield event
                    finish_reason = choice.finish_reason or finish_reason
        incomplete = finish_reason == "length"
        for event in stream.close("incomplete" if incomplete else "completed"):
            yield event
        response = self._response(stream.output, incomplete, usage)
        await self._save(response)
        yield stream.lifecycle(
            "response.incomplete" if incomplete else "response.completed", response
        )

    def _response(
        self,
        output: list[wire.OutputItem],
        incomplete: bool,
        usage: wire.ResponseUsage | None,
        *,
        status: wire.ResponseStatus | None = None,
    ) -> wire.ResponseObject:
        body = self._body
        return wire.ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=status or ("incomplete" if incomplete else "completed"),
            incomplete_details=(
                wire.IncompleteDetails(reason="max_output_tokens") if incomplete else None
            ),
            instructions=body.instructions,
            max_output_tokens=body.max_output_tokens,
            model=self.chat.model_uri,
            output=output,
            parallel_tool_calls=body.parallel_tool_calls,
            previous_response_id=body.previous_response_id,
            store=self._store is not None,
            temperature=self.chat.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            text=body.text,
            tool_choice=body.tool_choice,
            tools=body.tools,
            usage=usage,
            user=body.user,
            metadata=body.metadata or {},
        )

    async def _save(self, response: wire.ResponseObject) -> None:
        """Stored before the client hears the response is done: a continuation sent at once
        finds it."""
        if self._store is None:
            return
        turn = StoredTurn(
            id=response.id,
            previous_response_id=response.previous_response_id,
            messages=self._messages,
            response=response.model_dump(mode="json", by_alias=True),
        )
        await to_thread.run_sync(self._store.add, self._folder_id, turn)


def _replayed(turn: StoredTurn) -> list[ChatMessage]:
    """A stored turn as the next one's history: its input, then its output."""
    response = wire.ResponseObject.model_validate(turn.response)
    return [*turn.messages, *output_messages(response.output)]


def _checked_input(body: wire.CreateResponseRequest) -> tuple[list[ChatMessage], list[str]]:
    if not body.input:
        raise InvalidRequestError(
            "input is empty: send a string, or a list with at least one item", param="input"
        )
    return input_messages(body.input)


def _usage(usage: chat_wire.CompletionUsage) -> wire.ResponseUsage:
    return wire.ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=wire.InputTokensDetails(
            cached_tokens=usage.prompt_tokens_details.cached_tokens
        ),
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
