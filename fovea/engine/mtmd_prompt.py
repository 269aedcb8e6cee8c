"""Multimodal prompts through libmtmd: bitmaps in, text and image chunks out, each position named
for the prefix cache."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import llama_cpp.mtmd_cpp as mtmd

from fovea.engine.prefix_cache import Segment, Unit
from fovea.engine.types import ImageInput
from fovea.errors import EngineError, InvalidRequestError


@dataclass
class Prompt:
    """A tokenized prompt: mtmd chunks (text and images) or, for text-only models, tokens.

    ``units`` names every position (see ``prefix_cache``); ``segments`` maps chunks to them.
    """

    chunks: object | None  # mtmd_input_chunks_p, freed by the caller
    tokens: list[int]
    n_tokens: int
    n_image_tokens: int = 0
    units: list[Unit] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    def free(self) -> None:
        if self.chunks is not None:
            mtmd.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


def mtmd_tokenize(ctx: object, text: str, bitmaps: list[Any], add_special: bool) -> object:
    encoded = text.encode("utf-8")
    input_text = mtmd.mtmd_input_text()
    input_text.text = encoded
    input_text.text_len = len(encoded)
    input_text.add_special = add_special
    input_text.parse_special = True
    chunks = mtmd.mtmd_input_chunks_init()
    array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
    result = mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(input_text), array, len(bitmaps))
    if result != 0:
        mtmd.mtmd_input_chunks_free(chunks)
        raise InvalidRequestError(
            f"The prompt could not be tokenized with its images (mtmd error {result}); "
            "the number of image parts must match the images sent",
            param="messages",
        )
    return chunks


def measure(chunks: object) -> Prompt:
    prompt = Prompt(chunks=chunks, tokens=[], n_tokens=0)
    for index in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, index)
        count = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        is_image = mtmd.mtmd_input_chunk_get_type(chunk) != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT
        if is_image:
            prompt.n_image_tokens += count
            # An image without an id (never the case here) matches nothing.
            image_id = mtmd.mtmd_input_chunk_get_id(chunk) or object()
            prompt.units.extend((image_id, k) for k in range(count))
        else:
            prompt.units.extend(chunk_tokens(chunk))
        prompt.segments.append(Segment(prompt.n_tokens, prompt.n_tokens + count, is_image))
        prompt.n_tokens += count
    return prompt


def mmproj_image_size(path: Path) -> int:
    field = gguf.GGUFReader(str(path)).fields.get("clip.vision.image_size")
    return int(field.contents()) if field is not None else 0


def chunk_tokens(chunk: object) -> list[int]:
    count = ctypes.c_size_t()
    pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
    return [pointer[i] for i in range(count.value)]


def bitmap(image: ImageInput) -> object:
    buffer = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
    bitmap = mtmd.mtmd_bitmap_init(image.width, image.height, buffer)
    if bitmap is None:
        raise EngineError("could not hand an image to the vision encoder")
    # The id travels to the image's chunk: the key of the embedding and prefix caches.
    mtmd.mtmd_bitmap_set_id(bitmap, image.digest.encode())
    return bitmap
