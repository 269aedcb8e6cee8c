"""Trained tower weights (numpy, named as in the GGUF) to an mmproj GGUF libmtmd loads. No torch."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from fovea.modelgen.mmproj import VisionTowerShape, write_metadata

# ggml adds these elementwise or normalises with them: they stay f32 in any case.
_F32_ALWAYS = ("v.position_embd.weight", ".bias", "ln1.weight", "ln2.weight", "post_ln.weight")


def write_mmproj(
    path: Path,
    shape: VisionTowerShape,
    tensors: list[tuple[str, np.ndarray]],
    *,
    f16: bool = False,
    name: str = "fovea-demo-gemma3-mmproj",
) -> None:
    """Write a Gemma 3 mmproj GGUF to ``path`` atomically (a temp file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "clip")
    write_metadata(writer, shape, name)
    for tensor_name, array in tensors:
        keep_f32 = not f16 or array.ndim == 1 or tensor_name.endswith(_F32_ALWAYS)
        writer.add_tensor(tensor_name, array.astype(np.float32 if keep_f32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
