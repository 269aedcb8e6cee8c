"""Hostile and unusual image files, made in memory for the corpus (``corpus.py``)."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
from PIL import Image

from .builders import encode, png_chunk

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def noisy_picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Noise (so every format compresses it into several blocks) with a red centre."""
    picture = Image.effect_noise(size, 60).convert("RGB")
    width, height = size
    half = max(4, min(size) // 16)
    picture.paste(
        RED, (width // 2 - half, height // 2 - half, width // 2 + half, height // 2 + half)
    )
    return picture


def png_with_header(
    width: int, height: int, bit_depth: int, colour_type: int, idat: bytes
) -> bytes:
    """A PNG with these header fields and this (deflated) image data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND")
    )


def grey_zeros_png(side: int) -> bytes:
    """``side`` x ``side`` 8-bit black: side**2 bytes of pixels in a file about 1000x smaller."""
    row = bytes(side + 1)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 100) for _ in range(side // 100))
    idat += compressor.compress(row * (side % 100)) + compressor.flush()
    return png_with_header(side, side, 8, 0, idat)


def with_chunk_after_ihdr(kind: bytes, payload: bytes) -> bytes:
    png = encode(Image.new("RGB", (10, 8), RED), "PNG")
    return png[:33] + png_chunk(kind, payload) + png[33:]


def patched(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement) :]


def flipped(data: bytes, marker: bytes, distance: int) -> bytes:
    """``data`` with the bits of one byte inverted, ``distance`` bytes after ``marker``."""
    offset = data.index(marker) + distance
    return patched(data, offset, bytes([data[offset] ^ 0xFF]))


def small(fmt: str, **options: object) -> bytes:
    return encode(Image.new("RGB", (10, 8), RED), fmt, **options)


def jpeg_sof(width: int, height: int) -> bytes:
    """A 10x8 JPEG whose frame header claims ``width`` x ``height``."""
    data = small("JPEG")
    sof = data.index(b"\xff\xc0")
    return patched(data, sof + 5, struct.pack(">HH", height, width))


def text_bomb() -> bytes:
    """20 MB of zeros deflated to about 20 KB, for a PNG text or ICC profile chunk."""
    return zlib.compress(bytes(20_000_000), 9)


def rgb16_png() -> bytes:
    red_pixel = b"\xff\xff\x00\x00\x00\x00"
    rows = b"".join(b"\x00" + red_pixel * 4 for _ in range(3))  # filter byte 0, then pixels
    return png_with_header(4, 3, 16, 2, zlib.compress(rows))


def palette_with_transparency() -> bytes:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((2, 2), 1)
    return encode(palette, "PNG", transparency=0)


def animated(fmt: str, **options: object) -> bytes:
    frames = [Image.new("RGB", (10, 8), RED), Image.new("RGB", (10, 8), BLUE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **options)


def exif_jpeg(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    """Blue, red in the stored top-left quarter-height square, tagged with ``orientation``."""
    stored = Image.new("RGB", size, BLUE)
    corner = size[1] // 2
    stored.paste(RED, (0, 0, corner, corner))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif)


def jpeg_with_comment(comment: bytes) -> bytes:
    data = small("JPEG")
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return data[:2] + segment + data[2:]


def gif_js_polyglot() -> bytes:
    """GIF89a followed by "/*": the width a browser's JS parser reads as a comment opener."""
    return patched(small("GIF"), 6, b"/*") + b"*/=1;alert(document.domain);"


def large_jpeg() -> bytes:
    """2000x1500, a grey ramp with a red centre: about 100 KB."""
    picture = Image.linear_gradient("L").resize((2000, 1500)).convert("RGB")
    picture.paste(RED, (900, 650, 1100, 850))
    return encode(picture, "JPEG", quality=90)


def base64_text() -> str:
    """Base64 of a 16x16 noisy PNG (plus 1-3 zero bytes after its end, so that the text needs
    padding) that uses '+' or '/'."""
    rng = np.random.default_rng(7)
    for extra in range(1, 4):
        picture = Image.frombytes("RGB", (16, 16), rng.bytes(16 * 16 * 3))
        text = base64.b64encode(encode(picture, "PNG") + bytes(extra)).decode()
        if ("+" in text or "/" in text) and text.endswith("="):
            return text
    raise AssertionError("no suitable picture")
