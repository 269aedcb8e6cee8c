"""Decoded pixels back to a compact file, for engines that take images as data URLs."""

from __future__ import annotations

import base64
import io

from PIL import Image

__all__ = ["jpeg_data_url"]


def jpeg_data_url(width: int, height: int, rgb: bytes, *, quality: int = 90) -> str:
    """Packed RGB888 pixels as a ``data:image/jpeg;base64,...`` URL.

    Blocking and CPU-bound (~10 ms for 1195x896): run it in a worker thread.
    """
    buffer = io.BytesIO()
    Image.frombuffer("RGB", (width, height), rgb, "raw", "RGB", 0, 1).save(
        buffer, format="JPEG", quality=quality
    )
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getbuffer()).decode("ascii")
