"""The llama.cpp model itself: loading, multimodal prompt evaluation and sampling.

Everything here runs on the engine's one worker thread (see ``llamacpp.py``): with this build's
OpenMP runtime a model called from a second thread runs ~1.6x slower, so loading, image encoding
and decoding all stay on the thread that loaded the model.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import random
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp import Llama
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from fovea.engine.base import require_text
from fovea.engine.chat_template import ChatTemplate, resolve_template
from fovea.engine.embedding_cache import EmbeddingCache
from fovea.engine.mtmd_prompt import (
    Prompt,
    bitmap,
    chunk_tokens,
    measure,
    mmproj_image_size,
    mtmd_tokenize,
)
from fovea.engine.pan_and_scan import expand_high_detail
from fovea.engine.prefix_cache import KvPrefix, Segment
from fovea.engine.text import StopFilter, TokenTextDecoder
from fovea.engine.types import (
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    ResponseFormat,
    Token,
    Usage,
)
from fovea.errors import ContextLengthError, EngineError, InvalidRequestError

log = logging.getLogger(__name__)

_NO_CALLBACK = mtmd.mtmd_helper_post_decode_callback()  # a NULL function pointer


@dataclass(frozen=True)
class LlamaCppConfig:
    """What the llama.cpp backend needs to load one deployment branch."""

    name: str
    model_path: Path
    mmproj_path: Path | None
    context_length: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    flash_attn: bool = True
    chat_template: str | None = None
    max_images: int = 8
    image_cache_bytes: int = 256 * 1024 * 1024
    prefix_cache: bool = True
    pan_and_scan: bool = True


class LlamaModel:
    """A loaded GGUF (plus its vision projector) and the generation loop over it."""

    def __init__(self, config: LlamaCppConfig, stats: EngineStats | None = None) -> None:
        self.config = config
        self.stats = stats or EngineStats()
        self._images = EmbeddingCache(config.image_cache_bytes)
        self._kv = KvPrefix()
        self._llm = Llama(
            str(config.model_path),
            n_ctx=config.context_length,
            # llama-cpp-python defaults to half the cores; decoding is fastest on all of them.
            n_threads=config.n_threads or os.cpu_count(),
            n_gpu_layers=config.n_gpu_layers,
            flash_attn=config.flash_attn,
            verbose=False,
        )
        self._vocab = self._llm._model.vocab
        self._n_embd_input = llama_cpp.llama_model_n_embd_inp(self._llm.model)
        try:
            self._template = self._load_template()
            self._mtmd = self._load_mmproj() if config.mmproj_path else None
        except Exception:
            self._llm.close()
            raise
        self._marker = mtmd.mtmd_default_marker().decode()
        self.image_size = mmproj_image_size(config.mmproj_path) if config.mmproj_path else 0
        self._piece_buffer = ctypes.create_string_buffer(256)

    @property
    def has_vision(self) -> bool:
        return self._mtmd is not None

    def close(self) -> None:
        if self._mtmd is not None:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        self._llm.close()

    def _load_template(self) -> ChatTemplate:
        source = resolve_template(
            self.config.chat_template, self._llm.metadata.get("tokenizer.chat_template")
        )
        return ChatTemplate(
            source=source,
            bos_token=self._piece(self._llm.token_bos()),
            eos_token=self._piece(self._llm.token_eos()),
        )

    def _load_mmproj(self) -> object:
        # Route libmtmd's chatter through llama-cpp-python's filter (errors only unless verbose).
        from llama_cpp._logger import llama_log_callback

        mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.config.n_gpu_layers != 0
        params.print_timings = False
        params.n_threads = self._llm.n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.config.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx = mtmd.mtmd_init_from_file(
            str(self.config.mmproj_path).encode(), self._llm.model, params
        )
        if ctx is None:
            raise RuntimeError(f"could not load the vision projector {self.config.mmproj_path}")
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise RuntimeError(f"{self.config.mmproj_path} has no vision encoder")
        return ctx

    def _piece(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    # -- generation -------------------------------------------------------------------------

    def generate(
        self, request: GenerationRequest, cancelled: threading.Event
    ) -> Generator[GenerationChunk, None, None]:
        """Evaluate the prompt, then yield text as it is sampled; the last chunk has usage."""
        grammar = _grammar_for(request.response_format)
        prompt = self._tokenize(request.messages)
        try:
            max_tokens = self._max_tokens(request, prompt)
            cached = self._evaluate(prompt, cancelled)
        finally:
            prompt.free()
        self.stats.prompt_tokens += prompt.n_tokens
        self.stats.cached_prompt_tokens += cached
        yield from self._sample(request, prompt, max_tokens, grammar, cancelled, cached)

    def tokenize(self, prompt: tuple[Message, ...] | str) -> list[Token]:
        """The tokens ``generate`` feeds the model for these messages (or this text, as is)."""
        if isinstance(prompt, str):
            ids = self._text_tokens(prompt)
        else:
            require_text(prompt)
            tokenized = self._tokenize(prompt)
            tokenized.free()
            ids = [unit for unit in tokenized.units if isinstance(unit, int)]  # text: token ids
        return [
            Token(
                id=token,
                text=self._token_bytes(token, special=True).decode("utf-8", errors="replace"),
                special=llama_cpp.llama_vocab_is_control(self._vocab, token),
            )
            for token in ids
        ]

    def _tokenize(self, messages: tuple[Message, ...]) -> Prompt:
        images = [p.image for m in messages for p in m.parts if isinstance(p, ImagePart)]
        if images and self._mtmd is None:
            raise InvalidRequestError(
                f"Model {self.config.name} does not accept images", param="messages"
            )
        if self.config.pan_and_scan and any(i.detail == "high" for i in images):
            messages = expand_high_detail(messages)
            images = [p.image for m in messages for p in m.parts if isinstance(p, ImagePart)]
        text = self._template.render(messages, self._marker)
        if self._mtmd is None:
            tokens = self._text_tokens(text)
            segments = [Segment(0, len(tokens), is_image=False)]
            return Prompt(None, tokens, len(tokens), units=list(tokens), segments=segments)
        bitmaps = [bitmap(image) for image in images]
        try:
            chunks = mtmd_tokenize(self._mtmd, text, bitmaps, self._adds_bos(text))
        finally:
            for each in bitmaps:
                mtmd.mtmd_bitmap_free(each)
        return measure(chunks)

    def _adds_bos(self, text: str) -> bool:
        # Templates that write the BOS themselves (Gemma's) must not get a second one.
        return not text.startswith(self._template.bos_token)

    def _text_tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=self._adds_bos(text), special=True)

    def _max_tokens(self, request: GenerationRequest, prompt: Prompt) -> int:
        n_ctx = self._llm.n_ctx()
        room = n_ctx - prompt.n_tokens
        requested = request.sampling.max_tokens
        if room < 1 or (requested is not None and requested > room):
            wanted = prompt.n_tokens + (requested or 1)
            raise ContextLengthError(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{wanted} tokens ({prompt.n_tokens} in the messages, of which "
                f"{prompt.n_image_tokens} for images, and {requested or 1} in the completion). "
                "Please reduce the length of the messages, the number of images or max_tokens.",
                param="messages",
            )
        return requested if requested is not None else min(request.default_max_tokens, room)

    def _evaluate(self, prompt: Prompt, cancelled: threading.Event) -> int:
        """Bring the KV cache to the prompt, reusing its common prefix; return positions reused."""
        llm = self._llm
        reuse = self._kv.reusable(prompt.units, prompt.segments) if self.config.prefix_cache else 0
        if reuse == 0 or not llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
            reuse = 0
            llm.reset()
            llm._ctx.kv_cache_clear()
        llm.n_tokens = reuse
        self._kv.truncate(reuse)
        for index, segment in enumerate(prompt.segments):
            if segment.end <= reuse:
                continue
            if cancelled.is_set():
                break
            if prompt.chunks is None:
                llm.eval(prompt.tokens[reuse:])
            else:
                chunk = mtmd.mtmd_input_chunks_get(prompt.chunks, index)
                if segment.is_image:
                    self._eval_image(chunk)
                else:
                    llm.eval(chunk_tokens(chunk)[max(0, reuse - segment.start) :])
            self._kv.extend(prompt.units[max(reuse, segment.start) : segment.end])
        return reuse

    def _eval_image(self, chunk: object) -> None:
        """Decode an image's embeddings into the context; the encoder runs only on a cache miss."""
        llm = self._llm
        embeddings = self._image_embeddings(chunk)
        new_n_past = llama_cpp.llama_pos(0)
        result = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd,
            llm._ctx.ctx,
            chunk,
            embeddings.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            llama_cpp.llama_pos(llm.n_tokens),
            llama_cpp.llama_seq_id(0),
            llm.n_batch,
            ctypes.byref(new_n_past),
            _NO_CALLBACK,
            None,
        )
        if result != 0:
            raise EngineError(f"decoding an image's embeddings failed (mtmd error {result})")
        # Image positions hold no token id; mark them so no token-level prefix match uses them.
        llm.input_ids[llm.n_tokens : new_n_past.value] = -1
        llm.n_tokens = new_n_past.value

    def _image_embeddings(self, chunk: object) -> np.ndarray:
        key = mtmd.mtmd_input_chunk_get_id(chunk)
        cached = self._images.get(key) if key else None
        if cached is None:
            if mtmd.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                raise EngineError("the vision encoder failed on an image")
            size = mtmd.mtmd_input_chunk_get_n_tokens(chunk) * self._n_embd_input
            output = mtmd.mtmd_get_output_embd(self._mtmd)
            cached = np.ctypeslib.as_array(output, shape=(size,)).copy()
            if key:
                self._images.put(key, cached)
        self._update_image_stats()
        return cached

    def _update_image_stats(self) -> None:
        cache, stats = self._images.stats, self.stats
        stats.image_cache_hits, stats.image_cache_misses = cache.hits, cache.misses
        stats.image_cache_bytes, stats.image_cache_entries = cache.bytes, cache.entries

    def _sample(
        self,
        request: GenerationRequest,
        prompt: Prompt,
        max_tokens: int,
        grammar: LlamaGrammar | None,
        cancelled: threading.Event,
        cached: int,
    ) -> Generator[GenerationChunk, None, None]:
        llm, params = self._llm, request.sampling
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        sampler = llm._sampler = llm._init_sampler(
            temp=params.temperature,
            top_p=params.top_p,
            top_k=0,
            min_p=0.0,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            grammar=grammar,
        )
        decoder, stops = TokenTextDecoder(), StopFilter(params.stop)
        n_generated, finish = 0, "length"
        while n_generated < max_tokens and not cancelled.is_set():
            token = sampler.sample(llm._ctx, -1)
            if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
                finish = "stop"
                break
            n_generated += 1
            text = stops.push(decoder.push(self._token_bytes(token)))
            if text:
                yield GenerationChunk(text)
            if stops.stopped:
                finish = "stop"
                break
            if llm.n_tokens >= llm.n_ctx():
                break
            llm.eval([token])
            self._kv.extend((token,))
        tail = "" if stops.stopped else stops.push(decoder.flush()) + stops.flush()
        usage = Usage(
            prompt_tokens=prompt.n_tokens,
            completion_tokens=n_generated,
            image_tokens=prompt.n_image_tokens,
            cached_tokens=cached,
        )
        yield GenerationChunk(tail, finish_reason=finish, usage=usage)  # type: ignore[arg-type]

    def _token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The token's text as bytes; control tokens (BOS, end of turn) are empty unless
        ``special``."""
        buffer = self._piece_buffer
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, special)
        if size < 0:  # the buffer is too small: -size bytes are needed
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(
                self._vocab, token, buffer, len(buffer), 0, special
            )
        return buffer.raw[:size] if size > 0 else b""


def _grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    if response_format.kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if response_format.kind == "json_schema":
        try:
            return LlamaGrammar.from_json_schema(json.dumps(response_format.schema), verbose=False)
        except Exception as exc:  # the converter raises bare Exceptions for unsupported schemas
            raise InvalidRequestError(
                f"response_format.json_schema.schema is not supported: {exc}",
                param="response_format",
            ) from exc
    return None
