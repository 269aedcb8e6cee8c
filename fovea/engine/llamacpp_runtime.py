"""The llama.cpp model itself: loading, multimodal prompts, decoding into slots, sampling.

Everything here runs on the engine's one worker thread (see ``llamacpp.py``): with this build's
OpenMP runtime a model called from a second thread runs ~1.6x slower, so loading, image encoding
and decoding all stay on the thread that loaded the model.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llama_cpp._internals as internals
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._logger import set_verbose as set_llama_verbose

from fovea.engine.base import require_text
from fovea.engine.chat_template import ChatTemplate, resolve_template
from fovea.engine.embedding_cache import EmbeddingCache
from fovea.engine.llamacpp_sampling import Sampler, build_sampler
from fovea.engine.model_files import check_gguf, unloadable
from fovea.engine.mtmd_prompt import (
    Prompt,
    bitmap,
    measure,
    mmproj_image_size,
    mtmd_tokenize,
)
from fovea.engine.pan_and_scan import expand_high_detail
from fovea.engine.prefix_cache import Segment
from fovea.engine.types import (
    EngineStats,
    GenerationRequest,
    ImagePart,
    Message,
    Token,
    ToolUse,
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
    # Sequences decoded together, each with its own context_length positions of KV cache.
    parallel: int = 1
    # Prompt tokens decoded at once: also the most a long prompt holds up the others per step.
    n_batch: int = 512


class LlamaModel:
    """A loaded GGUF (plus its vision projector) and one context whose KV cache holds a sequence
    per slot (``parallel`` of them, ``context_length`` positions each), allocated at load.

    The slot scheduler (``llamacpp_slots``) drives it: prompts are tokenized and measured here,
    text is decoded into a slot's sequence in chunks, images through libmtmd, and every
    generating slot's next token in one ``llama_decode``.
    """

    def __init__(self, config: LlamaCppConfig, stats: EngineStats | None = None) -> None:
        self.config = config
        self.stats = stats or EngineStats()
        self._images = EmbeddingCache(config.image_cache_bytes)
        self.n_threads = config.n_threads or os.cpu_count() or 1
        self.n_batch = config.n_batch
        self.parallel = config.parallel
        # llama.cpp's and libmtmd's own log, errors only: its filter passes every level until
        # one is set, and libmtmd's debug lines print each prompt ("add_text: ...").
        set_llama_verbose(False)
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = config.n_gpu_layers
        # Repacked weights make a token's arithmetic depend on how many tokens share its
        # decode; without them a sequence decoded beside up to 5 others gives what it gives
        # alone. From 8 at once ggml switches kernels anyway: then take the faster weights.
        model_params.use_extra_bufts = config.parallel == 1 or config.parallel > 6
        check_gguf(config.model_path)
        if config.mmproj_path is not None:
            check_gguf(config.mmproj_path, "vision projector")
        try:
            self._model = internals.LlamaModel(
                path_model=str(config.model_path), params=model_params, verbose=False
            )
        except ValueError:
            raise unloadable(config.model_path) from None
        self.vocab = self._model.vocab
        self.n_vocab = self._model.n_vocab()
        self._piece_buffer = ctypes.create_string_buffer(256)
        try:
            self.ctx = self._new_context()
            self._template = self._load_template()
            self._mtmd = self._load_mmproj() if config.mmproj_path else None
        except Exception:
            self._model.close()
            raise
        self._n_embd_input = llama_cpp.llama_model_n_embd_inp(self._model.model)
        self._marker = mtmd.mtmd_default_marker().decode()
        self.image_size = mmproj_image_size(config.mmproj_path) if config.mmproj_path else 0
        self.batch = internals.LlamaBatch(
            n_tokens=max(self.n_batch, self.parallel), embd=0, n_seq_max=1, verbose=False
        )

    def _new_context(self) -> internals.LlamaContext:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.config.context_length * self.config.parallel
        params.n_seq_max = self.config.parallel
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_threads = params.n_threads_batch = self.n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.config.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        # Prefix reuse truncates a sequence anywhere: sliding-window layers must keep it all.
        params.swa_full = True
        return internals.LlamaContext(model=self._model, params=params, verbose=False)

    @property
    def has_vision(self) -> bool:
        return self._mtmd is not None

    @property
    def slot_context(self) -> int:
        """Positions each slot's sequence holds."""
        return self.config.context_length

    def close(self) -> None:
        if self._mtmd is not None:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        self.batch.close()
        self.ctx.close()
        self._model.close()

    def _load_template(self) -> ChatTemplate:
        source = resolve_template(
            self.config.chat_template, self._model.metadata().get("tokenizer.chat_template")
        )
        return ChatTemplate(
            source=source,
            bos_token=self._piece(self._model.token_bos()),
            eos_token=self._piece(self._model.token_eos()),
        )

    def _load_mmproj(self) -> object:
        # Route libmtmd's chatter through llama-cpp-python's filter (errors only unless verbose).
        from llama_cpp._logger import llama_log_callback

        mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.config.n_gpu_layers != 0
        params.print_timings = False
        params.n_threads = self.n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.config.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        mmproj_path = self.config.mmproj_path
        assert mmproj_path is not None  # only called when the catalog names one
        ctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self._model.model, params)
        if ctx is None:
            raise unloadable(mmproj_path, "vision projector")
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise RuntimeError(f"{self.config.mmproj_path} has no vision encoder")
        return ctx

    def _piece(self, token: int) -> str:
        return self.token_bytes(token, special=True).decode("utf-8", errors="replace")

    # -- prompts ------------------------------------------------------------------------------

    def prompt(self, request: GenerationRequest) -> tuple[Prompt, int]:
        """The request's prompt, tokenized and measured, and its max_tokens; raises the 400s
        (images to a text model, over the slot's context)."""
        prompt = self._tokenize(request.messages, request.tools)
        try:
            return prompt, self._max_tokens(request, prompt)
        except BaseException:
            prompt.free()
            raise

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
                text=self.token_bytes(token, special=True).decode("utf-8", errors="replace"),
                special=llama_cpp.llama_vocab_is_control(self.vocab, token),
            )
            for token in ids
        ]

    def _tokenize(self, messages: tuple[Message, ...], tools: ToolUse | None = None) -> Prompt:
        images = [p.image for m in messages for p in m.parts if isinstance(p, ImagePart)]
        if images and self._mtmd is None:
            raise InvalidRequestError(
                f"Model {self.config.name} does not accept images", param="messages"
            )
        if self.config.pan_and_scan and any(i.detail == "high" for i in images):
            messages = expand_high_detail(messages)
            images = [p.image for m in messages for p in m.parts if isinstance(p, ImagePart)]
        text = self._template.render(messages, self._marker, tools)
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
        tokens: list[int] = self._model.tokenize(
            text.encode("utf-8"), add_bos=self._adds_bos(text), special=True
        )
        return tokens

    def _max_tokens(self, request: GenerationRequest, prompt: Prompt) -> int:
        n_ctx = self.slot_context
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

    # -- the KV cache ---------------------------------------------------------------------------

    def keep(self, seq: int, length: int) -> bool:
        """Drop sequence ``seq`` past ``length`` positions; False if the cache cannot (then the
        whole sequence is dropped)."""
        if length > 0 and self.ctx.kv_cache_seq_rm(seq, length, -1):
            return True
        self.ctx.kv_cache_seq_rm(seq, 0, -1)
        return False

    def decode_text(self, seq: int, tokens: list[int], position: int, *, last: bool) -> None:
        """Decode a prompt chunk into ``seq`` at ``position``; the logits of its last token
        only when it ends the prompt (the output layer is a third of a small model's work)."""
        batch = self.batch.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = position + i
            batch.seq_id[i][0] = seq
            batch.n_seq_id[i] = 1
            batch.logits[i] = False
        batch.logits[len(tokens) - 1] = last
        self._decode()

    def decode_next(self, entries: list[tuple[int, int, int]]) -> None:
        """One decode of ``(seq, token, position)`` per generating slot; logits for each, at its
        index in ``entries``."""
        batch = self.batch.batch
        batch.n_tokens = len(entries)
        for i, (seq, token, position) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.seq_id[i][0] = seq
            batch.n_seq_id[i] = 1
            batch.logits[i] = True
        self._decode()

    def _decode(self) -> None:
        result = llama_cpp.llama_decode(self.ctx.ctx, self.batch.batch)
        if result != 0:
            raise EngineError(f"llama_decode failed ({result})")

    def decode_image(self, seq: int, chunk: object, position: int) -> int:
        """Decode an image's embeddings into ``seq`` at ``position``; the encoder runs only on a
        cache miss. Returns the position after it."""
        embeddings = self._image_embeddings(chunk)
        new_n_past = llama_cpp.llama_pos(0)
        result = mtmd.mtmd_helper_decode_image_chunk(
            self._mtmd,
            self.ctx.ctx,
            chunk,
            embeddings.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            llama_cpp.llama_pos(position),
            llama_cpp.llama_seq_id(seq),
            self.n_batch,
            ctypes.byref(new_n_past),
            _NO_CALLBACK,
            None,
        )
        if result != 0:
            raise EngineError(f"decoding an image's embeddings failed (mtmd error {result})")
        return int(new_n_past.value)

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

    # -- sampling -------------------------------------------------------------------------------

    def sampler(self, request: GenerationRequest) -> Sampler:
        """A slot's sampler for ``request``: its own seed, penalties and grammar."""
        return build_sampler(self._model, self.ctx, self.n_vocab, request)

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The token's text as bytes; control tokens (BOS, end of turn) are empty unless
        ``special``."""
        buffer = self._piece_buffer
        size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, special)
        if size < 0:  # the buffer is too small: -size bytes are needed
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(
                self.vocab, token, buffer, len(buffer), 0, special
            )
        return buffer.raw[:size] if size > 0 else b""
