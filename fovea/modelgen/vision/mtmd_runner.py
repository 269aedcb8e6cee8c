"""The demo text GGUF plus an mmproj through llama.cpp's libmtmd, as Fovea serves them.

Used to check an exported projector (image embeddings against torch's), to read the exact
token layout libmtmd gives a prompt around its image, and for greedy answers on held-out
pictures. No torch here.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._logger import set_verbose as set_llama_verbose
from PIL import Image

from fovea.engine.chat_template import GEMMA3_TEMPLATE, ChatTemplate
from fovea.engine.mtmd_prompt import bitmap, chunk_tokens, mtmd_tokenize
from fovea.engine.types import ImageInput, ImagePart, Message, TextPart

Part = str | Image.Image  # a user turn's parts, in order: text or a picture


@dataclass(frozen=True)
class PromptLayout:
    """The text token ids around each image block (one more piece than images), and the
    length of an image block."""

    pieces: tuple[tuple[int, ...], ...]
    n_image_tokens: int

    @property
    def n_images(self) -> int:
        return len(self.pieces) - 1


def render_prompt(parts: list[Part], marker: str) -> str:
    """The user turn exactly as Fovea renders it for gemma-3-demo, parts in the order given."""
    template = ChatTemplate(GEMMA3_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    rendered = tuple(
        TextPart(part) if isinstance(part, str) else ImagePart(ImageInput(1, 1, b"\0\0\0", "x"))
        for part in parts
    )
    return template.render((Message("user", rendered),), marker)


def image_input(image: Image.Image) -> ImageInput:
    rgb = image.convert("RGB").tobytes()
    return ImageInput(image.width, image.height, rgb, hashlib.sha256(rgb).hexdigest())


class MtmdRunner:
    """One text model and one projector, loaded with the settings Fovea's engine uses."""

    def __init__(self, model_path: Path, mmproj_path: Path, n_threads: int = 2) -> None:
        set_llama_verbose(False)
        # libmtmd's own chatter (each prompt's chunks) through llama-cpp-python's filter.
        from llama_cpp._logger import llama_log_callback

        mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))
        self._llm = llama_cpp.Llama(
            str(model_path), n_ctx=512, n_threads=n_threads, verbose=False, flash_attn=True
        )
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self._mtmd = mtmd.mtmd_init_from_file(
            str(mmproj_path).encode(), self._llm._model.model, params
        )
        if self._mtmd is None:
            raise RuntimeError(f"libmtmd could not load {mmproj_path}")
        self._marker = mtmd.mtmd_default_marker().decode()
        self._n_embd = llama_cpp.llama_model_n_embd_inp(self._llm._model.model)

    def close(self) -> None:
        mtmd.mtmd_free(self._mtmd)
        self._llm.close()

    def _chunks(self, parts: list[Part]) -> object:
        text = render_prompt(parts, self._marker)
        bitmaps = [bitmap(image_input(p)) for p in parts if isinstance(p, Image.Image)]
        try:
            return mtmd_tokenize(self._mtmd, text, bitmaps, add_special=False)
        finally:
            for image_bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(image_bitmap)

    def layout(self, parts: list[Part]) -> PromptLayout:
        chunks = self._chunks(parts)
        try:
            pieces: list[list[int]] = [[]]
            n_image = 0
            for index in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, index)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    pieces[-1].extend(chunk_tokens(chunk))
                else:
                    n_image = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                    pieces.append([])
            return PromptLayout(tuple(tuple(piece) for piece in pieces), n_image)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def detokenize(self, tokens: list[int]) -> str:
        return self._llm.detokenize(tokens).decode("utf-8", errors="replace")

    def image_embeddings(self, image: Image.Image) -> np.ndarray:
        """The projector's soft tokens for ``image``: [n_image_tokens, n_embd]."""
        chunks = self._chunks([image, "x"])
        try:
            for index in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, index)
                if mtmd.mtmd_input_chunk_get_type(chunk) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    if mtmd.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                        raise RuntimeError("the vision encoder failed")
                    count = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                    output = mtmd.mtmd_get_output_embd(self._mtmd)
                    flat = np.ctypeslib.as_array(output, shape=(count * self._n_embd,))
                    return flat.copy().reshape(count, self._n_embd)
            raise RuntimeError("the prompt has no image chunk")
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def answer(self, parts: list[Part], max_tokens: int = 24) -> str:
        """Greedy answer, decoded as the engine decodes: chunks through libmtmd's helper."""
        ctx = self._llm._ctx.ctx
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        chunks = self._chunks(parts)
        n_past = llama_cpp.llama_pos(0)
        try:
            result = mtmd.mtmd_helper_eval_chunks(
                self._mtmd, ctx, chunks, 0, 0, 512, True, ctypes.byref(n_past)
            )
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
        if result != 0:
            raise RuntimeError(f"mtmd_helper_eval_chunks failed ({result})")
        vocab = self._llm._model.vocab
        pieces: list[bytes] = []
        position = int(n_past.value)
        for _ in range(max_tokens):
            logits = llama_cpp.llama_get_logits_ith(ctx, -1)
            row = np.ctypeslib.as_array(logits, shape=(self._llm.n_vocab(),))
            token = int(row.argmax())
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            pieces.append(self._llm.detokenize([token]))
            batch = llama_cpp.llama_batch_get_one((llama_cpp.llama_token * 1)(token), 1)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            position += 1
        return b"".join(pieces).decode("utf-8", errors="replace").strip()
