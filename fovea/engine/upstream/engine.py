"""``UpstreamEngine``: the Engine interface over remote replicas.

A request is sent to the replica the balancer picks. Until its first chunk of text is in hand
(or, for a collected request, until its whole answer is), a failure of the replica sends it to
another one, at most ``max_attempts`` replicas in all; after that, the failure ends the stream
with an error. A consumer that stops iterating closes the upstream connection, which makes the
engine drop the request.

``tokenize`` asks a replica's ``/tokenize`` (vLLM's) for the tokens of the prompt it renders;
replicas without one (404) make it a 400, as there is nothing else to count with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from typing import Any

import aiohttp
import anyio
from anyio import to_thread

from fovea.engine.base import EngineState, require_text
from fovea.engine.pan_and_scan import MIN_CROP_SIZE, expand_high_detail
from fovea.engine.types import (
    Capabilities,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    ReplicaInfo,
    TextPart,
    Token,
)
from fovea.engine.upstream.balancer import Balancer, affinity_keys
from fovea.engine.upstream.config import UpstreamConfig
from fovea.engine.upstream.probes import Prober
from fovea.engine.upstream.replica import Clock, Replica
from fovea.engine.upstream.wire import (
    StreamAssembler,
    judge_status,
    parse_completion,
    request_body,
    sse_data,
)
from fovea.errors import FoveaError, InvalidRequestError, NoReplicaError, UpstreamError
from fovea.media.encode import jpeg_data_url

log = logging.getLogger(__name__)

# Images re-encoded at once per engine (each ~10 ms of a core at 896 px).
_ENCODE_THREADS = 2
_KEEPALIVE_S = 4.0


class _ReplicaFailed(Exception):
    """An attempt failed in a way another replica might not: try elsewhere if still allowed."""

    def __init__(self, error: FoveaError, *, unreachable: bool, fault: bool = True) -> None:
        super().__init__(error.message)
        self.error = error
        self.unreachable = unreachable
        self.fault = fault


class UpstreamEngine:
    """An upstream deployment branch: its replicas, their health, and the balancing."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.capabilities = Capabilities(
            vision=config.vision,
            max_images=config.max_images if config.vision else 0,
            context_length=config.context_length,
            image_size=config.image_size,
            high_detail_min_side=max(config.image_size, MIN_CROP_SIZE),
            tools=True,  # passed through: the upstream engine renders, constrains and parses
        )
        self.stats = EngineStats()
        self._replicas = [
            Replica(
                spec,
                max_failures=config.max_failures,
                cooldown_s=config.cooldown_s,
                clock=clock,
            )
            for spec in config.replicas
        ]
        self._balancer = Balancer(
            self._replicas, affinity=config.affinity, slack=config.affinity_slack
        )
        self._state: EngineState = "stopped"
        self._session: aiohttp.ClientSession | None = None
        self._probes: asyncio.Task[None] | None = None
        self._encoders = anyio.CapacityLimiter(_ENCODE_THREADS)

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def failure(self) -> str | None:
        return None

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        return tuple(replica.info() for replica in self._replicas)

    async def start(self) -> None:
        if self._session is not None:
            return
        config = self.config
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.max_connections * len(self._replicas),
                limit_per_host=config.max_connections,
                # Idle pooled connections are closed before the engines' own keep-alive
                # timeouts (uvicorn's 5 s) can close one under a new request.
                keepalive_timeout=_KEEPALIVE_S,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=config.connect_timeout_s, sock_read=config.read_timeout_s
            ),
            # Replicas are on the operator's network: no proxies or .netrc from the environment.
            trust_env=False,
        )
        self._state = "loading"
        prober = Prober(
            self._session,
            self._replicas,
            timeout_s=config.probe_timeout_s,
            read_metrics=config.metrics,
        )
        await prober.probe_all()
        self._probes = asyncio.create_task(
            prober.run(config.probe_interval_s), name=f"probes {config.name}"
        )
        self._state = "ready"

    async def aclose(self) -> None:
        if self._probes is not None:
            self._probes.cancel()
            with suppress(asyncio.CancelledError):
                await self._probes
            self._probes = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._state = "stopped"

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        messages = expand_high_detail(request.messages)
        image_urls = await self._encode_images(messages)
        views = sum(isinstance(p, ImagePart) for m in messages for p in m.parts)
        image_tokens = views * self.config.image_tokens
        keys = affinity_keys(request.messages)
        tried: list[Replica] = []
        failures: list[_ReplicaFailed] = []
        finished = False
        try:
            while len(tried) < self.config.max_attempts:
                replica = self._balancer.choose(keys, exclude=tried)
                if replica is None:
                    break
                tried.append(replica)
                body = request_body(request, messages, replica.spec.model, image_urls)
                with replica.track():
                    attempt = self._attempt(replica, body, image_tokens, request.streamed)
                    async with aclosing(attempt) as chunks:
                        try:
                            chunk = await anext(chunks)
                        except _ReplicaFailed as failure:
                            self._note(replica, failure, quote=request.data_logging)
                            failures.append(failure)
                            continue
                        self._balancer.remember(keys, replica)
                        try:
                            while not finished:
                                if chunk.finish_reason is not None:
                                    # Counted before the last yield: a collecting consumer
                                    # does not come back once it has the finish reason.
                                    finished = True
                                    self._count(replica, chunk)
                                yield chunk
                                if not finished:
                                    chunk = await anext(chunks)
                        except _ReplicaFailed as failure:
                            # Past the first byte: the client has part of the answer already.
                            self._note(replica, failure, quote=request.data_logging)
                            raise failure.error from None
                return
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer left (a client that disconnected): the upstream request is closed.
            if not finished:
                self.stats.cancelled += 1
            raise
        raise self._no_answer(failures)

    def _count(self, replica: Replica, last: GenerationChunk) -> None:
        replica.succeeded()
        self.stats.completed += 1
        if last.usage is not None:
            self.stats.prompt_tokens += last.usage.prompt_tokens
            self.stats.cached_prompt_tokens += last.usage.cached_tokens

    async def tokenize(self, prompt: tuple[Message, ...] | str) -> list[Token]:
        if not isinstance(prompt, str):
            require_text(prompt)
        keys = [] if isinstance(prompt, str) else affinity_keys(prompt)
        tried: list[Replica] = []
        failures: list[_ReplicaFailed] = []
        while len(tried) < self.config.max_attempts:
            replica = self._balancer.choose(keys, exclude=tried)
            if replica is None:
                break
            tried.append(replica)
            try:
                with replica.track(), self._failures(replica):
                    return await self._tokenize_on(replica, prompt)
            except _ReplicaFailed as failure:
                self._note(replica, failure)
                failures.append(failure)
        raise self._no_answer(failures)

    # -- one attempt on one replica -------------------------------------------------------

    async def _attempt(
        self, replica: Replica, body: bytes, image_tokens: int, streamed: bool
    ) -> AsyncGenerator[GenerationChunk, None]:
        """The replica's answer as chunks; its failures as ``_ReplicaFailed``."""
        with self._failures(replica):
            if streamed:
                async with aclosing(self._stream(replica, body, image_tokens)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            else:
                yield await self._complete(replica, body, image_tokens)

    @contextmanager
    def _failures(self, replica: Replica) -> Iterator[None]:
        """Failures talking to ``replica`` as ``_ReplicaFailed`` (aiohttp's, garbage answers)."""
        try:
            yield
        except UpstreamError as exc:  # garbage, or an error event from the replica
            raise _ReplicaFailed(exc, unreachable=False) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _ReplicaFailed(
                UpstreamError(f"The model's server {replica.label} is unreachable: {exc}"),
                unreachable=True,
            ) from None
        except (aiohttp.ServerTimeoutError, TimeoutError):
            raise _ReplicaFailed(
                UpstreamError(
                    f"The model's server {replica.label} sent nothing for "
                    f"{self.config.read_timeout_s:g} s"
                ),
                unreachable=False,
            ) from None
        except aiohttp.ClientError as exc:
            reason = str(exc) or type(exc).__name__
            raise _ReplicaFailed(
                UpstreamError(
                    f"The connection to the model's server {replica.label} broke: {reason}"
                ),
                unreachable=False,
            ) from None

    async def _stream(
        self, replica: Replica, body: bytes, image_tokens: int
    ) -> AsyncGenerator[GenerationChunk, None]:
        assert self._session is not None
        assembler = StreamAssembler(image_tokens)
        async with self._session.post(
            replica.chat_url, data=body, headers=replica.headers
        ) as response:
            await _check_status(replica, response)
            if response.content_type != "text/event-stream":
                raise UpstreamError(
                    f"The model's server {replica.label} did not answer with a stream "
                    f"({response.content_type or 'no content type'})"
                )
            async for data in sse_data(response.content.iter_any()):
                if data == "[DONE]":
                    break
                chunk = assembler.feed(data)
                if chunk is not None:
                    yield chunk
        yield assembler.final()

    async def _complete(self, replica: Replica, body: bytes, image_tokens: int) -> GenerationChunk:
        assert self._session is not None
        # No bytes come until the whole answer is ready: only Fovea's generation timeout
        # bounds the wait (a collected request is retried whole on failure).
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s)
        async with self._session.post(
            replica.chat_url, data=body, headers=replica.headers, timeout=timeout
        ) as response:
            await _check_status(replica, response)
            content = await response.read()
        return parse_completion(content, image_tokens)

    async def _tokenize_on(
        self, replica: Replica, prompt: tuple[Message, ...] | str
    ) -> list[Token]:
        assert self._session is not None
        async with self._session.post(
            _tokenize_url(replica),
            data=_tokenize_body(prompt, replica.spec.model),
            headers=replica.headers,
        ) as response:
            if response.status == 404:
                raise InvalidRequestError(
                    f"Tokenization is not available for model {self.config.name}: its server "
                    f"{replica.label} answered 404 to /tokenize (vLLM-style servers have it)",
                    code="tokenize_unavailable",
                )
            await _check_status(replica, response)
            return _parse_tokens(await response.read(), replica)

    # -- helpers -------------------------------------------------------------------------

    def _note(self, replica: Replica, failure: _ReplicaFailed, *, quote: bool = True) -> None:
        """Log a replica's failure and count it against the replica. A replica's message may
        quote the request: without ``quote`` (the client turned data logging off) only its
        kind is kept, in the log and in what /healthz shows."""
        error = failure.error
        message = error.message if quote else f"{type(error).__name__} (message withheld)"
        log.warning("replica %s failed a request: %s", replica.spec.url, message)
        if failure.fault:
            replica.failed(message, unreachable=failure.unreachable)

    def _no_answer(self, failures: list[_ReplicaFailed]) -> FoveaError:
        """The error when no replica answered: 503 when none was reachable, else the last."""
        if failures and not all(f.unreachable for f in failures):
            return failures[-1].error
        wait = min((r.seconds_until_retry() for r in self._replicas), default=0.0)
        retry_after = str(max(1, round(wait)))
        reason = f" (last error: {failures[-1].error.message})" if failures else ""
        return NoReplicaError(
            f"No healthy replica of model {self.config.name} is available{reason}; retry shortly",
            headers={"Retry-After": retry_after},
        )

    async def _encode_images(self, messages: Sequence[Message]) -> dict[str, str]:
        """Each distinct image view as a JPEG data URL at the size it was decoded to."""
        images = {
            part.image.digest: part.image
            for message in messages
            for part in message.parts
            if isinstance(part, ImagePart)
        }
        quality = self.config.jpeg_quality

        async def encode(digest: str) -> tuple[str, str]:
            image = images[digest]
            url = await to_thread.run_sync(
                lambda: jpeg_data_url(image.width, image.height, image.rgb, quality=quality),
                limiter=self._encoders,
            )
            return digest, url

        return dict(await asyncio.gather(*(encode(digest) for digest in images)))


async def _check_status(replica: Replica, response: aiohttp.ClientResponse) -> None:
    if response.status == 200:
        return
    verdict = judge_status(response.status, await response.read(), replica.label)
    if not verdict.retry_elsewhere:
        raise verdict.error
    raise _ReplicaFailed(verdict.error, unreachable=False, fault=verdict.replica_fault)


def _tokenize_url(replica: Replica) -> str:
    # vLLM serves /tokenize at the server's root, beside /health, not under /v1.
    return replica.health_url.removesuffix("/health") + "/tokenize"


def _tokenize_body(prompt: tuple[Message, ...] | str, model: str) -> bytes:
    body: dict[str, Any] = {"model": model, "return_token_strs": True}
    if isinstance(prompt, str):
        body["prompt"] = prompt
    else:
        # As generate sends them; the replica renders its chat template (generation prompt on).
        body["messages"] = [{"role": m.role, "content": _text(m)} for m in prompt]
    return json.dumps(body, ensure_ascii=False).encode()


def _text(message: Message) -> str:
    return "".join(p.text for p in message.parts if isinstance(p, TextPart))


def _parse_tokens(content: bytes, replica: Replica) -> list[Token]:
    """vLLM's ``{"tokens": [ids], "token_strs": [texts]}``; it does not say which are special."""
    try:
        answer = json.loads(content)
        ids = [int(token) for token in answer["tokens"]]
        texts = answer.get("token_strs") or [""] * len(ids)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UpstreamError(
            f"The model's server {replica.label} answered /tokenize with {content[:200]!r}"
        ) from None
    return [Token(id=i, text=str(t), special=False) for i, t in zip(ids, texts, strict=False)]
