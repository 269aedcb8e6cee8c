"""Writes a Gemma 3 vision projector (mmproj GGUF) with random weights, using numpy and ``gguf``.

No vision weights can be installed on an offline machine, so the demo model pairs the real Gemma 3
270M text model with a projector generated here. llama.cpp's libmtmd runs it exactly like a real
one: same preprocessing, same graph, same cost for the same shape. Only the weights are random.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


@dataclass(frozen=True)
class VisionTowerShape:
    """Shape of a SigLIP-style vision tower with a Gemma 3 projector."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 128
    feed_forward_size: int = 256
    block_count: int = 2
    head_count: int = 2
    text_embedding_size: int = 640  # n_embd of Gemma 3 270M

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# The real Gemma 3 vision tower (SigLIP-So400m at 896 px): same compute as the real projector.
FULL_SIZE_SHAPE = VisionTowerShape(
    image_size=896,
    patch_size=14,
    hidden_size=1152,
    feed_forward_size=4304,
    block_count=27,
    head_count=16,
)


def write_random_mmproj(
    path: Path, shape: VisionTowerShape = VisionTowerShape(), *, seed: int = 0, std: float = 1.0
) -> None:
    """Write a random Gemma 3 mmproj GGUF to ``path`` (atomically: a temp file, then rename).

    A projection std near 1.0 makes the text model's output visibly depend on the image.
    """
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(path.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "clip")
    write_metadata(writer, shape, "fovea-random-gemma3-mmproj")
    for name, array in _tensors(shape, rng, std):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)


def write_metadata(writer: gguf.GGUFWriter, shape: VisionTowerShape, name: str) -> None:
    """The keys libmtmd reads for a Gemma 3 projector of ``shape``."""
    writer.add_string("general.type", "mmproj")
    writer.add_string("general.name", name)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.projection_dim", shape.text_embedding_size)
    writer.add_uint32("clip.vision.image_size", shape.image_size)
    writer.add_uint32("clip.vision.patch_size", shape.patch_size)
    writer.add_uint32("clip.vision.embedding_length", shape.hidden_size)
    writer.add_uint32("clip.vision.feed_forward_length", shape.feed_forward_size)
    writer.add_uint32("clip.vision.block_count", shape.block_count)
    writer.add_uint32("clip.vision.attention.head_count", shape.head_count)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])


def _tensors(
    shape: VisionTowerShape, rng: np.random.Generator, std: float
) -> list[tuple[str, np.ndarray]]:
    hidden, ffn = shape.hidden_size, shape.feed_forward_size

    def weight(*dims: int, scale: float | None = None, dtype: type = np.float16) -> np.ndarray:
        # Scaled like a trained layer (1/sqrt(fan_in)) so activations stay finite in f16.
        fan_in = int(np.prod(dims[1:]))
        sigma = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        return (rng.standard_normal(dims) * sigma).astype(dtype)

    def ones() -> np.ndarray:
        return np.ones(hidden, dtype=np.float32)

    def zeros(size: int = hidden) -> np.ndarray:
        return np.zeros(size, dtype=np.float32)

    tensors: list[tuple[str, np.ndarray]] = [
        ("v.patch_embd.weight", weight(hidden, 3, shape.patch_size, shape.patch_size)),
        ("v.patch_embd.bias", zeros()),
        # ggml adds position embeddings elementwise, which needs f32.
        ("v.position_embd.weight", weight(shape.num_patches, hidden, scale=0.02, dtype=np.float32)),
    ]
    for block in range(shape.block_count):
        prefix = f"v.blk.{block}"
        tensors += [
            (f"{prefix}.ln1.weight", ones()),
            (f"{prefix}.ln1.bias", zeros()),
            (f"{prefix}.ln2.weight", ones()),
            (f"{prefix}.ln2.bias", zeros()),
        ]
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors += [
                (f"{prefix}.{proj}.weight", weight(hidden, hidden)),
                (f"{prefix}.{proj}.bias", zeros()),
            ]
        tensors += [
            (f"{prefix}.ffn_up.weight", weight(ffn, hidden)),
            (f"{prefix}.ffn_up.bias", zeros(ffn)),
            (f"{prefix}.ffn_down.weight", weight(hidden, ffn)),
            (f"{prefix}.ffn_down.bias", zeros()),
        ]
    tensors += [
        ("v.post_ln.weight", ones()),
        ("v.post_ln.bias", zeros()),
        ("mm.soft_emb_norm.weight", ones()),
        (
            "mm.input_projection.weight",
            weight(hidden, shape.text_embedding_size, scale=std),
        ),
    ]
    return tensors
