"""A hostile image corpus, generated in code: each case is an image URL and what must happen.

``CORPUS`` maps a case name to a builder, so names are known when tests are collected and the
bytes are made only when a test asks (``build_corpus``). Every case either decodes to a known
size (and a known colour at one pixel) or is refused with a status and a message fragment.
Limits are ``CORPUS_LIMITS``, small enough that bombs are cheap to build and refuse.

Decisions the corpus pins down:
- a PNG missing only its IEND, or a GIF missing its trailer, has every pixel: it decodes;
- a PNG whose IDAT CRC is wrong decodes (Pillow checks IDAT with zlib's own checksum, which a
  flipped data bit still fails), while a bad IHDR CRC is refused;
- data after the end of a PNG or JPEG (ZIP, HTML, PHP: polyglots) is ignored, never executed;
- a GIF/JS polyglot's logical screen ("/*" = 10799 wide) is its size: decoded, within limits;
- a 1x30000 strip decodes as is and, with ``min_side``, is never scaled up (nor down).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from fovea.media.images import ImageLimits

from .builders import data_url, encode, png_bomb, png_chunk, webp_canvas_bomb

CORPUS_LIMITS = ImageLimits(
    max_image_bytes=1024 * 1024, max_image_pixels=16_000_000, max_images_per_request=4
)
RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
NOT_AN_IMAGE = "is not a valid image (could not identify the format)"
CORRUPT = "truncated or corrupt data"
NOT_BASE64 = "is not valid base64"


@dataclass(frozen=True)
class Decodes:
    """Decoded to ``width`` x ``height``, with ``colour`` (within 40) at ``at`` or the centre."""

    width: int
    height: int
    colour: tuple[int, int, int] | None = None
    at: tuple[int, int] | None = None


@dataclass(frozen=True)
class Refused:
    """Refused with ``status`` and a message holding ``fragment`` (and the part's position)."""

    status: int
    fragment: str


@dataclass(frozen=True)
class Case:
    url: str
    expected: Decodes | Refused
    min_side: int | None = None


Builder = Callable[[], Case]


def _picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Noise (so every format compresses it into several blocks) with a red centre."""
    picture = Image.effect_noise(size, 60).convert("RGB")
    width, height = size
    half = max(4, min(size) // 16)
    picture.paste(
        RED, (width // 2 - half, height // 2 - half, width // 2 + half, height // 2 + half)
    )
    return picture


_FILES: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encode(_picture(), "JPEG", quality=90),
    "png": lambda: encode(_picture(), "PNG"),
    "gif": lambda: encode(_picture(), "GIF"),
    "webp": lambda: encode(_picture(), "WEBP", quality=90),
    "bmp": lambda: encode(_picture(), "BMP"),
}


# (format, label, bytes kept: a count, a negative count dropped from the end, or "half").
_TRUNCATIONS: list[tuple[str, str, int | str, Decodes | Refused]] = [
    ("jpeg", "soi_only", 2, Refused(400, NOT_AN_IMAGE)),
    ("jpeg", "in_header", 100, Refused(400, CORRUPT)),
    ("jpeg", "mid_scan", "half", Refused(400, CORRUPT)),
    ("jpeg", "before_eoi", -2, Refused(400, CORRUPT)),
    ("png", "signature_only", 8, Refused(400, NOT_AN_IMAGE)),
    ("png", "in_ihdr", 20, Refused(400, CORRUPT)),
    ("png", "mid_idat", "half", Refused(400, CORRUPT)),
    ("png", "no_iend", -12, Decodes(64, 48, RED)),
    ("gif", "in_header", 8, Refused(400, NOT_AN_IMAGE)),
    ("gif", "mid_data", "half", Refused(400, CORRUPT)),
    ("gif", "in_last_block", -12, Refused(400, CORRUPT)),
    ("gif", "no_trailer", -1, Decodes(64, 48, RED)),
    ("webp", "riff_only", 12, Refused(400, NOT_AN_IMAGE)),
    ("webp", "in_header", 30, Refused(400, CORRUPT)),
    ("webp", "mid_data", "half", Refused(400, CORRUPT)),
    ("webp", "last_byte", -1, Refused(400, CORRUPT)),
    ("bmp", "file_header_only", 14, Refused(400, NOT_AN_IMAGE)),
    ("bmp", "in_info_header", 30, Refused(400, CORRUPT)),
    ("bmp", "mid_pixels", "half", Refused(400, CORRUPT)),
    ("bmp", "last_byte", -1, Refused(400, CORRUPT)),
]


def _truncated(fmt: str, keep: int | str, expected: Decodes | Refused) -> Case:
    data = _FILES[fmt]()
    end = len(data) // 2 if keep == "half" else int(keep)
    return Case(data_url(data[:end]), expected)


def _truncations() -> dict[str, Builder]:
    return {
        f"{fmt}_truncated_{label}": partial(_truncated, fmt, keep, expected)
        for fmt, label, keep, expected in _TRUNCATIONS
    }


def _file(
    build: Callable[[], bytes], expected: Decodes | Refused, min_side: int | None = None
) -> Builder:
    return lambda: Case(data_url(build()), expected, min_side)


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG with these header fields and this (deflated) image data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND")
    )


def _grey_zeros_png(side: int) -> bytes:
    """``side`` x ``side`` 8-bit black: side**2 bytes of pixels in a file about 1000x smaller."""
    row = bytes(side + 1)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row * 100) for _ in range(side // 100))
    idat += compressor.compress(row * (side % 100)) + compressor.flush()
    return _png(side, side, 8, 0, idat)


def _with_chunk_after_ihdr(kind: bytes, payload: bytes) -> bytes:
    png = encode(Image.new("RGB", (10, 8), RED), "PNG")
    return png[:33] + png_chunk(kind, payload) + png[33:]


def _patched(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement) :]


def _flipped(data: bytes, marker: bytes, distance: int) -> bytes:
    """``data`` with the bits of one byte inverted, ``distance`` bytes after ``marker``."""
    offset = data.index(marker) + distance
    return _patched(data, offset, bytes([data[offset] ^ 0xFF]))


def _small(fmt: str, **options: object) -> bytes:
    return encode(Image.new("RGB", (10, 8), RED), fmt, **options)


def _jpeg_sof(width: int, height: int) -> bytes:
    """A 10x8 JPEG whose frame header claims ``width`` x ``height``."""
    data = _small("JPEG")
    sof = data.index(b"\xff\xc0")
    return _patched(data, sof + 5, struct.pack(">HH", height, width))


def _text_bomb() -> bytes:
    """20 MB of zeros deflated to about 20 KB, for a PNG text or ICC profile chunk."""
    return zlib.compress(bytes(20_000_000), 9)


def _bombs() -> dict[str, Builder]:
    return {
        "bomb_png_20000_square": _file(lambda: png_bomb(20000, 20000), Refused(400, "20000x20000")),
        "bomb_png_zeros_8000_square": _file(
            lambda: _grey_zeros_png(8000), Refused(400, "8000x8000 (64,000,000 pixels)")
        ),
        "bomb_png_zeros_4096_just_over_limit": _file(
            lambda: _grey_zeros_png(4096), Refused(400, "4096x4096 (16,777,216 pixels)")
        ),
        "bomb_webp_canvas_16383": _file(webp_canvas_bomb, Refused(400, "16383x16383")),
        "bomb_gif_logical_screen_65535": _file(
            lambda: _patched(_small("GIF"), 6, struct.pack("<HH", 65535, 65535)),
            Refused(400, "65535x65535"),
        ),
        "bomb_bmp_header_100000_square": _file(
            lambda: _patched(_small("BMP"), 18, struct.pack("<ii", 100000, 100000)),
            Refused(400, "100000x100000"),
        ),
        "bomb_jpeg_sof_65500_square": _file(
            lambda: _jpeg_sof(65500, 65500), Refused(400, "65500x65500 (4,290,250,000 pixels)")
        ),
        "bomb_png_ztxt_text_chunk": _file(
            lambda: _with_chunk_after_ihdr(b"zTXt", b"Comment\x00\x00" + _text_bomb()),
            Refused(400, CORRUPT),
        ),
        "bomb_png_iccp_profile": _file(
            lambda: _with_chunk_after_ihdr(b"iCCP", b"icc\x00\x00" + _text_bomb()),
            Refused(400, CORRUPT),
        ),
        "oversized_payload": lambda: Case(
            data_url(bytes(CORPUS_LIMITS.max_image_bytes + 1)), Refused(413, "max_image_bytes")
        ),
    }


def _not_images() -> dict[str, Builder]:
    png = partial(_small, "PNG")
    return {
        "empty_payload": lambda: Case("data:image/png;base64,", Refused(400, "is empty (0 bytes)")),
        "png_zero_width": _file(lambda: png_bomb(0, 10), Refused(400, NOT_AN_IMAGE)),
        "png_zero_height": _file(lambda: png_bomb(10, 0), Refused(400, NOT_AN_IMAGE)),
        "jpeg_sof_zero_height": _file(lambda: _jpeg_sof(10, 0), Refused(400, NOT_AN_IMAGE)),
        "png_wrong_magic": _file(lambda: b"\x88" + png()[1:], Refused(400, NOT_AN_IMAGE)),
        "png_bad_ihdr_crc": _file(
            lambda: _patched(png(), 29, b"\x00\x00\x00\x00"), Refused(400, NOT_AN_IMAGE)
        ),
        "png_idat_bit_flipped": _file(lambda: _flipped(png(), b"IDAT", 8), Refused(400, CORRUPT)),
        "svg_document": _file(
            lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
            Refused(400, NOT_AN_IMAGE),
        ),
        "tiff_unsupported": _file(
            partial(_small, "TIFF"), Refused(400, "Unsupported image format TIFF")
        ),
        "ico_unsupported": _file(
            partial(_small, "ICO"), Refused(400, "Unsupported image format ICO")
        ),
    }


def _rgb16_png() -> bytes:
    red_pixel = b"\xff\xff\x00\x00\x00\x00"
    rows = b"".join(b"\x00" + red_pixel * 4 for _ in range(3))  # filter byte 0, then pixels
    return _png(4, 3, 16, 2, zlib.compress(rows))


def _palette_with_transparency() -> bytes:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((2, 2), 1)
    return encode(palette, "PNG", transparency=0)


def _animated(fmt: str, **options: object) -> bytes:
    frames = [Image.new("RGB", (10, 8), RED), Image.new("RGB", (10, 8), BLUE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **options)


def _pixel_modes() -> dict[str, Builder]:
    grey16 = np.full((3, 4), 40000, dtype=np.uint16)  # 40000 / 65535 * 255 = 155.6
    return {
        "animated_gif_first_frame": _file(partial(_animated, "GIF"), Decodes(10, 8, RED)),
        "animated_webp_first_frame": _file(
            partial(_animated, "WEBP", lossless=True), Decodes(10, 8, RED)
        ),
        "animated_png_first_frame": _file(partial(_animated, "PNG"), Decodes(10, 8, RED)),
        "cmyk_jpeg": _file(
            lambda: encode(Image.new("CMYK", (10, 8), (0, 255, 255, 0)), "JPEG"),
            Decodes(10, 8, RED),
        ),
        "png_rgb_16_bit": _file(_rgb16_png, Decodes(4, 3, RED)),
        "png_grey_16_bit": _file(
            lambda: encode(Image.fromarray(grey16), "PNG"), Decodes(4, 3, (156, 156, 156))
        ),
        "png_palette_with_transparency": _file(
            _palette_with_transparency, Decodes(4, 4, WHITE, at=(0, 0))
        ),
    }


def _exif_jpeg(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    """Blue, red in the stored top-left quarter-height square, tagged with ``orientation``."""
    stored = Image.new("RGB", size, BLUE)
    corner = size[1] // 2
    stored.paste(RED, (0, 0, corner, corner))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif)


# Where the stored top-left corner shows once the orientation is applied, on a 40x20 JPEG.
_RED_CORNER_UPRIGHT = {
    1: (2, 2),  # as stored
    2: (37, 2),  # mirrored left-right
    3: (37, 17),  # turned half
    4: (2, 17),  # mirrored top-bottom
    5: (2, 2),  # transposed: 20x40 from here on
    6: (17, 2),  # turned a quarter clockwise
    7: (17, 37),  # transversed
    8: (2, 37),  # turned a quarter anticlockwise
}


def _orientations() -> dict[str, Builder]:
    cases = {
        f"jpeg_exif_orientation_{n}": _file(
            partial(_exif_jpeg, n), Decodes(*((20, 40) if n >= 5 else (40, 20)), RED, at=corner)
        )
        for n, corner in _RED_CORNER_UPRIGHT.items()
    }
    cases["jpeg_exif_orientation_6_min_side"] = _file(
        partial(_exif_jpeg, 6, (1600, 800)), Decodes(100, 200, RED, at=(90, 10)), min_side=100
    )
    return cases


def _jpeg_with_comment(comment: bytes) -> bytes:
    data = _small("JPEG")
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return data[:2] + segment + data[2:]


def _gif_js_polyglot() -> bytes:
    """GIF89a followed by "/*": the width a browser's JS parser reads as a comment opener."""
    return _patched(_small("GIF"), 6, b"/*") + b"*/=1;alert(document.domain);"


def _polyglots() -> dict[str, Builder]:
    png = partial(_small, "PNG")
    zip_end = b"PK\x03\x04" + bytes(26) + b"evil.txt" + b"PK\x05\x06" + bytes(18)
    return {
        "polyglot_png_then_zip": _file(lambda: png() + zip_end, Decodes(10, 8, RED)),
        "polyglot_png_then_html": _file(
            lambda: png() + b"<html><script>alert(1)</script></html>", Decodes(10, 8, RED)
        ),
        "polyglot_jpeg_then_php": _file(
            lambda: _small("JPEG") + b"<?php system($_GET['c']); ?>" * 8, Decodes(10, 8, RED)
        ),
        "polyglot_jpeg_html_comment": _file(
            lambda: _jpeg_with_comment(b"<script>alert(1)</script>"), Decodes(10, 8, RED)
        ),
        "polyglot_gif_js_header": _file(_gif_js_polyglot, Decodes(10799, 8, RED, at=(5, 4))),
        "png_bad_idat_crc": _file(lambda: _flipped(png(), b"IEND", -5), Decodes(10, 8, RED)),
    }


def _large_jpeg() -> bytes:
    """2000x1500, a grey ramp with a red centre: about 100 KB."""
    picture = Image.linear_gradient("L").resize((2000, 1500)).convert("RGB")
    picture.paste(RED, (900, 650, 1100, 850))
    return encode(picture, "JPEG", quality=90)


def _sizes() -> dict[str, Builder]:
    def solid(size: tuple[int, int]) -> Callable[[], bytes]:
        return lambda: encode(Image.new("RGB", size, RED), "PNG")

    return {
        "one_by_one": _file(solid((1, 1)), Decodes(1, 1, RED)),
        "one_by_one_min_side_not_upscaled": _file(solid((1, 1)), Decodes(1, 1, RED), 896),
        "strip_1x30000": _file(solid((1, 30000)), Decodes(1, 30000, RED)),
        "strip_1x30000_min_side_kept": _file(solid((1, 30000)), Decodes(1, 30000, RED), 896),
        "strip_30000x1_min_side_kept": _file(solid((30000, 1)), Decodes(30000, 1, RED), 896),
        "jpeg_2000x1500_min_side_896": _file(
            _large_jpeg,
            Decodes(1195, 896, RED),
            896,
        ),
    }


def _base64_text() -> str:
    """Base64 of a 16x16 noisy PNG (plus 1-3 zero bytes after its end, so that the text needs
    padding) that uses '+' or '/'."""
    rng = np.random.default_rng(7)
    for extra in range(1, 4):
        picture = Image.frombytes("RGB", (16, 16), rng.bytes(16 * 16 * 3))
        text = base64.b64encode(encode(picture, "PNG") + bytes(extra)).decode()
        if ("+" in text or "/" in text) and text.endswith("="):
            return text
    raise AssertionError("no suitable picture")


def _base64_case(edit: Callable[[str], str], expected: Decodes | Refused) -> Builder:
    return lambda: Case(edit(_base64_text()), expected)


def _base64_forms() -> dict[str, Builder]:
    decodes = Decodes(16, 16)
    wrap = "\r\n".join
    return {
        "b64_bare_no_data_prefix": _base64_case(lambda t: t, decodes),
        "b64_wrapped_at_76": _base64_case(
            lambda t: "data:image/png;base64," + wrap(t[i : i + 76] for i in range(0, len(t), 76)),
            decodes,
        ),
        "b64_spaces_and_tabs": _base64_case(
            lambda t: " \t".join(t[i : i + 5] for i in range(0, len(t), 5)), decodes
        ),
        "b64_url_safe_unpadded": _base64_case(
            lambda t: t.translate(str.maketrans("+/", "-_")).rstrip("="), decodes
        ),
        "b64_extra_padding": _base64_case(lambda t: t + "==", decodes),
        "b64_mime_says_gif": _base64_case(lambda t: "data:image/gif;base64," + t, decodes),
        "b64_padding_in_the_middle": _base64_case(
            lambda t: t[:20] + "==" + t[20:], Refused(400, NOT_BASE64)
        ),
        "b64_one_character_too_many": _base64_case(
            lambda t: t.rstrip("=") + "A" * ((1 - len(t.rstrip("="))) % 4),
            Refused(400, "not a whole number of bytes"),
        ),
        "b64_invalid_character": _base64_case(
            lambda t: t[:10] + "*" + t[10:], Refused(400, NOT_BASE64)
        ),
        "b64_nul_byte": _base64_case(lambda t: t[:10] + "\x00" + t[10:], Refused(400, NOT_BASE64)),
        "b64_non_ascii_letter": _base64_case(
            lambda t: t[:10] + "é" + t[10:], Refused(400, "non-ASCII")
        ),
        "b64_fullwidth_digit": _base64_case(
            lambda t: t[:10] + "\uff10" + t[10:], Refused(400, "non-ASCII")
        ),
        "b64_of_base64": _base64_case(
            lambda t: base64.b64encode(t.encode()).decode(), Refused(400, NOT_AN_IMAGE)
        ),
        "data_url_not_base64": _base64_case(
            lambda t: "data:image/png," + t, Refused(400, "is not base64-encoded")
        ),
    }


CORPUS: dict[str, Builder] = {
    **_truncations(),
    **_bombs(),
    **_not_images(),
    **_pixel_modes(),
    **_orientations(),
    **_polyglots(),
    **_sizes(),
    **_base64_forms(),
}


def build_corpus(names: list[str] | None = None) -> dict[str, Case]:
    """Make the cases named (all when None)."""
    return {name: CORPUS[name]() for name in names or CORPUS}
