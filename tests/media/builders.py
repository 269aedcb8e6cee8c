"""Images and image URLs built in memory for the intake tests."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

from PIL import Image

POSITION = "messages[0].content[1]"


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels; tiny once compressed."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    rows_per_chunk = 1000
    body = b"".join(
        compressor.compress(row * rows_per_chunk) for _ in range(height // rows_per_chunk)
    )
    body += compressor.compress(row * (height % rows_per_chunk)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND")
    )


def png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def webp_canvas_bomb(side: int = 16383) -> bytes:
    """A ~140-byte animated WebP whose canvas is ``side`` x ``side``: gigabytes once decoded."""
    frames = [Image.new("RGBA", (1, 1), (255, 0, 0, 255)), Image.new("RGBA", (1, 1))]
    data = bytearray(
        encode(frames[0], "WEBP", lossless=True, save_all=True, append_images=frames[1:])
    )
    assert data[12:16] == b"VP8X"
    data[24:30] = (side - 1).to_bytes(3, "little") * 2
    return bytes(data)


def rgb_at(rgb: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    offset = (y * width + x) * 3
    return rgb[offset], rgb[offset + 1], rgb[offset + 2]


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 8) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
