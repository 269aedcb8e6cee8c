"""Chat completions: from an OpenAI request to an engine generation and back; and the tokens
such a request's prompt takes."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from fovea.engine.base import Engine
from fovea.engine.registry import EngineKey, EngineRegistry
from fovea.engine.types import (
    Capabilities,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    Priority,
    ResponseFormat,
    SamplingParams,
    TextPart,
    Token,
    ToolCall,
    Usage,
)
from fovea.errors import FoveaError, GenerationTimeoutError, InvalidRequestError
from fovea.iam.apikeys import GENERATION_SCOPES
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.media.images import check_image_count
from fovea.protocol import chat as wire
from fovea.services.access import AccessControl
from fovea.services.catalog import Catalog, ResolvedModel, parse_model_uri
from fovea.services.chat_events import (
    CompletionObserver,
    CompletionStatus,
    FinishedCompletion,
    RequestContext,
)
from fovea.services.chat_tools import CallsSoFar, tool_use, wire_deltas
from fovea.services.images import ImageIntake, ImageRequest
from fovea.services.quotas import Admission, RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatLimits:
    model_load_wait_s: float = 30.0
    generation_timeout_s: float = 600.0


class ChatRun:
    """A generation that has started: its first chunk is in hand, so the request was accepted.

    Consume it once, with ``collect`` or ``chunks``; either ends it (``aclose``), and so does a
    consumer that stops early. Ending it releases the folder's slot, stops the engine's work
    and tells the observers how the completion went.
    """

    def __init__(
        self,
        *,
        target: _Target,
        body: wire.ChatCompletionRequest,
        principal: Principal,
        context: RequestContext,
        first: GenerationChunk,
        rest: AsyncGenerator[GenerationChunk, None],
        admission: Admission,
        deadline: float,
        timing: _Timing,
        observers: Sequence[CompletionObserver],
    ) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model_uri = target.model_uri
        self.temperature = _temperature(body, target.model)  # what it samples at
        self._target = target
        self._body = body
        self._principal = principal
        self._context = context
        self._first = first
        self._rest = rest
        self._admission = admission
        # OpenAI's x-ratelimit-* headers for the response.
        self.headers = admission.headers
        self._deadline = deadline
        self._timing = timing
        self._observers = observers
        self._parts: list[str] = []
        self._calls = CallsSoFar()
        self._last = first
        self._status = CompletionStatus.CANCELLED  # until the model finishes
        self._error: str | None = None
        self._closed = False

    async def _all(self) -> AsyncGenerator[GenerationChunk, None]:
        try:
            self._seen(self._first)
            yield self._first
            while self._last.finish_reason is None:
                try:
                    # The deadline holds while no chunk arrives, not only when one does.
                    async with asyncio.timeout_at(self._deadline):
                        chunk = await anext(self._rest)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    self._status = CompletionStatus.TIMEOUT
                    raise _timeout() from None
                self._seen(chunk)
                yield chunk
        except FoveaError as error:
            if self._status != CompletionStatus.TIMEOUT:
                self._status, self._error = CompletionStatus.ERROR, error.message
            raise
        except Exception as error:
            self._status, self._error = CompletionStatus.ERROR, str(error)
            raise
        finally:
            await self.aclose()

    def _text(self) -> str:
        """The answer so far, joined once."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def _seen(self, chunk: GenerationChunk) -> None:
        self._last = chunk
        if chunk.text:
            self._parts.append(chunk.text)
        if chunk.tool_calls:
            self._calls.add(chunk.tool_calls)
        if chunk.finish_reason is not None:
            self._status = CompletionStatus.OK

    async def aclose(self) -> None:
        """End the run (idempotent): release the folder's slot, stop the engine's work if it is
        still going, and report the completion."""
        if self._closed:
            return
        self._closed = True
        self._admission.release()
        try:
            await self._rest.aclose()
        except Exception:
            log.exception("closing the generation of %s failed", self._context.request_id)
        notify(
            self._observers,
            self._timing.finished(
                target=self._target,
                body=self._body,
                principal=self._principal,
                context=self._context,
                status=self._status,
                usage=self._last.usage,
                text=self._text(),
                finish_reason=self._last.finish_reason,
                error=self._error,
            ),
        )

    async def collect(self) -> wire.ChatCompletion:
        async with aclosing(self._all()) as chunks:
            async for _ in chunks:
                pass
        calls = self._calls.wire()
        content = self._text()
        return wire.ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model_uri,
            choices=[
                wire.Choice(
                    message=wire.AssistantMessage(
                        content=None if calls and not content else content, tool_calls=calls
                    ),
                    finish_reason=self._last.finish_reason or "stop",
                )
            ],
            usage=_usage(self._last),
        )

    async def chunks(
        self, *, include_usage: bool
    ) -> AsyncGenerator[wire.ChatCompletionChunk, None]:
        """OpenAI's chunk sequence: role, content deltas, finish reason, then usage if asked."""
        try:
            yield self._chunk(wire.ChoiceDelta(role="assistant", content=""))
            async with aclosing(self._all()) as chunks:
                async for chunk in chunks:
                    if chunk.text:
                        yield self._chunk(wire.ChoiceDelta(content=chunk.text))
                    if chunk.tool_calls:
                        calls = wire_deltas(chunk.tool_calls)
                        yield self._chunk(wire.ChoiceDelta(tool_calls=calls))
                    if chunk.finish_reason is not None:
                        yield self._chunk(wire.ChoiceDelta(), finish_reason=chunk.finish_reason)
                        if include_usage:
                            usage_chunk = self._chunk(None)
                            usage_chunk.usage = _usage(chunk)
                            yield usage_chunk
        finally:
            # Closed before the first event was consumed: _all never started.
            await self.aclose()

    def _chunk(
        self, delta: wire.ChoiceDelta | None, finish_reason: str | None = None
    ) -> wire.ChatCompletionChunk:
        choices = (
            [] if delta is None else [wire.ChunkChoice(delta=delta, finish_reason=finish_reason)]  # type: ignore[arg-type]
        )
        return wire.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model_uri, choices=choices
        )


@dataclass
class _Timing:
    """When a request was accepted and when its first chunk came."""

    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None
    images: int = 0

    def finished(
        self,
        *,
        target: _Target,
        body: wire.ChatCompletionRequest,
        principal: Principal,
        context: RequestContext,
        status: CompletionStatus,
        usage: Usage | None = None,
        text: str = "",
        finish_reason: str | None = None,
        error: str | None = None,
    ) -> FinishedCompletion:
        now = time.monotonic()
        return FinishedCompletion(
            context=context,
            principal=principal,
            folder_id=target.folder_id,
            model_uri=target.model_uri,
            model=target.model.deployment.name,
            branch=target.model.branch,
            request=body,
            status=status,
            usage=usage,
            images=self.images,
            started_at=self.started_at,
            ttft_s=None if self.first_at is None else self.first_at - self.started,
            duration_s=now - self.started,
            text=text,
            finish_reason=finish_reason,
            error=error,
        )


def notify(observers: Sequence[CompletionObserver], completion: FinishedCompletion) -> None:
    for observer in observers:
        try:
            observer.completion_finished(completion)
        except Exception:
            log.exception("%s failed on a finished completion", type(observer).__name__)


@dataclass(frozen=True)
class _Target:
    """Where an allowed request goes: its folder, model and started engine."""

    model_uri: str  # canonical, with the folder
    folder_id: str
    model: ResolvedModel
    engine: Engine


class ChatService:
    """Checks access and capabilities, decodes images, and starts the generation (or counts
    the prompt's tokens)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        engines: EngineRegistry,
        access: AccessControl,
        images: ImageIntake,
        quotas: RateLimiter,
        limits: ChatLimits,
        observers: Sequence[CompletionObserver] = (),
    ) -> None:
        self._observers = observers
        self._catalog = catalog
        self._engines = engines
        self._access = access
        self._images = images
        self._quotas = quotas
        self._limits = limits

    async def complete(
        self,
        principal: Principal,
        body: wire.ChatCompletionRequest,
        header_folder: str | None = None,
        *,
        priority: Priority = Priority.INTERACTIVE,
        context: RequestContext | None = None,
    ) -> wire.ChatCompletion:
        """A whole completion: a non-streaming request, or a batch line."""
        run = await self.start(principal, body, header_folder, priority=priority, context=context)
        return await run.collect()

    async def start(
        self,
        principal: Principal,
        body: wire.ChatCompletionRequest,
        header_folder: str | None,
        *,
        priority: Priority = Priority.INTERACTIVE,
        context: RequestContext | None = None,
    ) -> ChatRun:
        """Check, decode and start a generation; returns once its first chunk is in hand.

        Interactive requests count against the folder's concurrency quota; batch lines have
        their own concurrency (the runner's) and queue behind interactive work in the engine.
        """
        timing = _Timing()
        context = context or RequestContext()
        if body.model_extra:
            # The names are the client's text too: withheld when it asked not to be logged.
            names = ", ".join(sorted(body.model_extra)) if context.data_logging else "(withheld)"
            log.info("ignoring unknown request fields: %s", names)
        target = await self._target(principal, body.model, header_folder)
        model, engine, folder_id = target.model, target.engine, target.folder_id
        # A malformed request is refused for what it is (400), before it takes any quota.
        timing.images = _check_request(body, model, engine.capabilities, self._images)
        admission = await self._quotas.admit(
            principal, folder_id, interactive=priority == Priority.INTERACTIVE
        )
        deadline = asyncio.get_running_loop().time() + self._limits.generation_timeout_s
        try:
            request = await self._build_request(
                body, model, engine.capabilities, priority, context.data_logging
            )
            stream = engine.generate(request)
            async with asyncio.timeout_at(deadline):
                first = await anext(stream)
            timing.first_at = time.monotonic()
        except BaseException as error:
            admission.release()
            status = _failed_status(error)
            if status is not None:
                notify(
                    self._observers,
                    timing.finished(
                        target=target,
                        body=body,
                        principal=principal,
                        context=context,
                        status=status,
                        error=str(error),
                    ),
                )
            if isinstance(error, TimeoutError):
                raise _timeout() from None
            raise
        return ChatRun(
            target=target,
            body=body,
            principal=principal,
            context=context,
            first=first,
            rest=stream,
            admission=admission,
            deadline=deadline,
            timing=timing,
            observers=self._observers,
        )

    async def tokenize(
        self,
        principal: Principal,
        body: wire.ChatCompletionRequest,
        header_folder: str | None = None,
    ) -> tuple[list[Token], str]:
        """The tokens of the prompt a completion of ``body`` feeds the model (chat template
        applied: as many as its ``usage.prompt_tokens``), and the model URI. Checked as a
        completion is; takes no generation slot. Text only."""
        target = await self._target(principal, body.model, header_folder)
        messages = await self._messages(body.messages, target.engine.capabilities)
        return await target.engine.tokenize(messages), target.model_uri

    async def tokenize_text(
        self, principal: Principal, model: str, text: str, header_folder: str | None = None
    ) -> tuple[list[Token], str]:
        """The tokens of ``text`` as it is (no chat template), and the model URI."""
        target = await self._target(principal, model, header_folder)
        return await target.engine.tokenize(text), target.model_uri

    async def check(self, principal: Principal, body: wire.ChatCompletionRequest) -> None:
        """The checks a completion of ``body`` passes before it starts (key, folder, role,
        model, capabilities), for work that runs later: a deferred completion."""
        target = await self._target(principal, body.model, None)
        _check_request(body, target.model, target.engine.capabilities, self._images)

    async def _target(
        self, principal: Principal, model_name: str, header_folder: str | None
    ) -> _Target:
        """Checks the key, folder and role, resolves the model and starts its engine."""
        self._access.require_scope(principal, GENERATION_SCOPES)
        uri = parse_model_uri(model_name)
        folder_id = self._access.folder_for(
            principal, uri_folder=uri.folder_id, header_folder=header_folder
        )
        await self._access.require(principal, folder_id, Permission.MODELS_USE)
        model = self._catalog.resolve(uri, folder_id)
        # Before the engine starts: an embedding model is never loaded for a chat request.
        self._catalog.require_kind(uri, model, "chat")
        engine = await self._engines.get(
            EngineKey(model.deployment.name, model.branch), self._limits.model_load_wait_s
        )
        return _Target(uri.canonical(folder_id), folder_id, model, engine)

    async def _build_request(
        self,
        body: wire.ChatCompletionRequest,
        model: ResolvedModel,
        capabilities: Capabilities,
        priority: Priority,
        data_logging: bool = True,
    ) -> GenerationRequest:
        deployment = model.deployment
        messages = await self._messages(body.messages, capabilities)
        max_tokens = _max_tokens(body, model)
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        sampling = SamplingParams(
            temperature=_temperature(body, model),
            top_p=1.0 if body.top_p is None else body.top_p,
            max_tokens=max_tokens,
            stop=stop,
            seed=body.seed,
            frequency_penalty=body.frequency_penalty,
            presence_penalty=body.presence_penalty,
            ignore_eos=body.ignore_eos,
        )
        return GenerationRequest(
            request_id=uuid.uuid4().hex,
            messages=messages,
            sampling=sampling,
            response_format=_response_format(body.response_format),
            default_max_tokens=min(deployment.default_max_tokens, deployment.max_output_tokens),
            priority=priority,
            streamed=body.stream,
            tools=tool_use(body),
            data_logging=data_logging,
        )

    async def _messages(
        self, messages: list[wire.ChatMessage], capabilities: Capabilities
    ) -> tuple[Message, ...]:
        parts_of = [_parts(message, i) for i, message in enumerate(messages)]
        wanted: list[ImageRequest] = []
        for i, message_parts in enumerate(parts_of):
            for j, part in enumerate(message_parts):
                if isinstance(part, wire.ImageContentPart):
                    detail = part.image_url.detail
                    wanted.append(
                        ImageRequest(
                            url=part.image_url.url,
                            position=f"messages[{i}].content[{j}]",
                            detail=detail,
                            min_side=_min_side(capabilities, detail),
                        )
                    )
        decoded = iter(await self._images.decode_all(wanted))
        result = []
        for message, message_parts in zip(messages, parts_of, strict=True):
            parts = tuple(
                TextPart(p.text)
                if isinstance(p, wire.TextContentPart)
                else ImagePart(next(decoded))
                for p in message_parts
            )
            role = "system" if message.role in ("system", "developer") else message.role
            calls = tuple(
                ToolCall(call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or ()
            )
            result.append(Message(role, parts, calls, message.tool_call_id))  # type: ignore[arg-type]
        return tuple(result)


def _failed_status(error: BaseException) -> CompletionStatus | None:
    """How a start that failed after the request was accepted is reported; None for refusals
    (a client's error, a quota), which are not completions."""
    if isinstance(error, TimeoutError | GenerationTimeoutError):
        return CompletionStatus.TIMEOUT
    if isinstance(error, asyncio.CancelledError):
        return CompletionStatus.CANCELLED
    if isinstance(error, FoveaError) and error.status_code < 500:
        return None
    if isinstance(error, Exception):
        return CompletionStatus.ERROR
    return None


def _count_images(body: wire.ChatCompletionRequest) -> int:
    return sum(
        isinstance(part, wire.ImageContentPart)
        for message in body.messages
        if isinstance(message.content, list)
        for part in message.content
    )


def _min_side(capabilities: Capabilities, detail: str) -> int | None:
    """Pixels the engine needs on each side: decoding more would be thrown away."""
    size = capabilities.high_detail_min_side if detail == "high" else capabilities.image_size
    return size or None


def _timeout() -> GenerationTimeoutError:
    return GenerationTimeoutError(
        "The generation took longer than this server allows (FOVEA_GENERATION_TIMEOUT_S); "
        "ask for fewer tokens or smaller images"
    )


def _parts(
    message: wire.ChatMessage, index: int
) -> list[wire.TextContentPart | wire.ImageContentPart]:
    if message.role == "tool" and not message.tool_call_id:
        raise InvalidRequestError(
            f"messages[{index}]: a message with role 'tool' needs the tool_call_id of the call "
            "it answers",
            param=f"messages[{index}].tool_call_id",
        )
    if message.tool_calls and message.role != "assistant":
        raise InvalidRequestError(
            f"messages[{index}]: only assistant messages carry tool_calls",
            param=f"messages[{index}].tool_calls",
        )
    content = message.content
    if content is None:
        if message.role == "assistant":
            return []
        raise InvalidRequestError(
            f"messages[{index}].content is required for role {message.role!r}",
            param=f"messages[{index}].content",
        )
    if isinstance(content, str):
        return [wire.TextContentPart(type="text", text=content)]
    for j, part in enumerate(content):
        if isinstance(part, wire.ImageContentPart) and message.role != "user":
            raise InvalidRequestError(
                f"messages[{index}].content[{j}]: images are accepted in user messages only",
                param=f"messages[{index}].content[{j}]",
            )
    return list(content)


def _check_request(
    body: wire.ChatCompletionRequest,
    model: ResolvedModel,
    capabilities: Capabilities,
    images: ImageIntake,
) -> int:
    """Refuses a malformed request and what the model cannot do, without decoding images;
    returns the number of images."""
    _max_tokens(body, model)
    _response_format(body.response_format)
    name = model.deployment.name
    if body.n > capabilities.max_n:
        raise InvalidRequestError(
            f"n={body.n} is not supported: model {name} returns {capabilities.max_n} choice",
            param="n",
        )
    if body.tools and body.tool_choice != "none" and not capabilities.tools:
        raise InvalidRequestError(
            f"Model {name} does not support tools; remove 'tools' or set tool_choice to 'none'",
            param="tools",
        )
    n_images = _count_images(body)
    if n_images and not capabilities.vision:
        raise InvalidRequestError(f"Model {name} does not accept images", param="messages")
    check_image_count(
        n_images, limits=images.limits, model_max=capabilities.max_images, model_name=name
    )
    for i, message in enumerate(body.messages):
        for j, part in enumerate(_parts(message, i)):
            if isinstance(part, wire.ImageContentPart):
                images.check(part.image_url.url, position=f"messages[{i}].content[{j}]")
    return n_images


def _temperature(body: wire.ChatCompletionRequest, model: ResolvedModel) -> float:
    """The request's temperature, or its deployment's default when it sends none."""
    if body.temperature is None:
        return model.deployment.default_temperature
    return body.temperature


def _max_tokens(body: wire.ChatCompletionRequest, model: ResolvedModel) -> int | None:
    deployment = model.deployment
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > deployment.max_output_tokens:
        raise InvalidRequestError(
            f"max_tokens is too large: {max_tokens}. Model {deployment.name} generates at "
            f"most {deployment.max_output_tokens} tokens per request.",
            param="max_completion_tokens" if body.max_completion_tokens else "max_tokens",
        )
    return max_tokens


def _response_format(value: wire.ResponseFormat | None) -> ResponseFormat:
    if value is None or value.type == "text":
        return ResponseFormat()
    if value.type == "json_object":
        return ResponseFormat(kind="json_object")
    if value.json_schema is None:
        raise InvalidRequestError(
            "response_format of type json_schema needs a json_schema object with a schema",
            param="response_format.json_schema",
        )
    return ResponseFormat(kind="json_schema", schema=value.json_schema.schema_)


def _usage(chunk: GenerationChunk) -> wire.CompletionUsage:
    usage = chunk.usage
    if usage is None:
        return wire.CompletionUsage(
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            prompt_tokens_details=wire.PromptTokensDetails(),
        )
    return wire.CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=wire.PromptTokensDetails(
            cached_tokens=usage.cached_tokens, image_tokens=usage.image_tokens
        ),
    )
