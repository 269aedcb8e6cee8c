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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from fovea.media.images import ImageLimits

from . import hostile_files as files
from .builders import data_url, encode, png_bomb, webp_canvas_bomb
from .hostile_files import RED

CORPUS_LIMITS = ImageLimits(
    max_image_bytes=1024 * 1024, max_image_pixels=16_000_000, max_images_per_request=4
)
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


_FILES: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encode(files.noisy_picture(), "JPEG", quality=90),
    "png": lambda: encode(files.noisy_picture(), "PNG"),
    "gif": lambda: encode(files.noisy_picture(), "GIF"),
    "webp": lambda: encode(files.noisy_picture(), "WEBP", quality=90),
    "bmp": lambda: encode(files.noisy_picture(), "BMP"),
}


# (format, label, bytes kept: a count, a negative count dropped from the end, or "half").
_TRUNCATIONS: list[tuple[str, str, int | str, Decodes | Refused]] = [
    ("jpeg", "soi_only", 2, Refused(400, NOT_AN_IMAGE)),
    ("jpeg", "in_header", 100, Refused(400, CORRUPT)),
    ("jpeg", "mid_scan", "half", Refused(400, CORRUPT)),
    # Dropping only the EOI marker decodes about 2% of noise pictures in full: cut into the scan.
    ("jpeg", "end_of_scan", -40, Refused(400, CORRUPT)),
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


def _bombs() -> dict[str, Builder]:
    return {
        "bomb_png_20000_square": _file(lambda: png_bomb(20000, 20000), Refused(400, "20000x20000")),
        "bomb_png_zeros_8000_square": _file(
            lambda: files.grey_zeros_png(8000), Refused(400, "8000x8000 (64,000,000 pixels)")
        ),
        "bomb_png_zeros_4096_just_over_limit": _file(
            lambda: files.grey_zeros_png(4096), Refused(400, "4096x4096 (16,777,216 pixels)")
        ),
        "bomb_webp_canvas_16383": _file(webp_canvas_bomb, Refused(400, "16383x16383")),
        "bomb_gif_logical_screen_65535": _file(
            lambda: files.patched(files.small("GIF"), 6, struct.pack("<HH", 65535, 65535)),
            Refused(400, "65535x65535"),
        ),
        "bomb_bmp_header_100000_square": _file(
            lambda: files.patched(files.small("BMP"), 18, struct.pack("<ii", 100000, 100000)),
            Refused(400, "100000x100000"),
        ),
        "bomb_jpeg_sof_65500_square": _file(
            lambda: files.jpeg_sof(65500, 65500), Refused(400, "65500x65500 (4,290,250,000 pixels)")
        ),
        "bomb_png_ztxt_text_chunk": _file(
            lambda: files.with_chunk_after_ihdr(b"zTXt", b"Comment\x00\x00" + files.text_bomb()),
            Refused(400, CORRUPT),
        ),
        "bomb_png_iccp_profile": _file(
            lambda: files.with_chunk_after_ihdr(b"iCCP", b"icc\x00\x00" + files.text_bomb()),
            Refused(400, CORRUPT),
        ),
        "oversized_payload": lambda: Case(
            data_url(bytes(CORPUS_LIMITS.max_image_bytes + 1)), Refused(413, "max_image_bytes")
        ),
    }


def _not_images() -> dict[str, Builder]:
    png = partial(files.small, "PNG")
    return {
        "empty_payload": lambda: Case("data:image/png;base64,", Refused(400, "is empty (0 bytes)")),
        "png_zero_width": _file(lambda: png_bomb(0, 10), Refused(400, NOT_AN_IMAGE)),
        "png_zero_height": _file(lambda: png_bomb(10, 0), Refused(400, NOT_AN_IMAGE)),
        "jpeg_sof_zero_height": _file(lambda: files.jpeg_sof(10, 0), Refused(400, NOT_AN_IMAGE)),
        "png_wrong_magic": _file(lambda: b"\x88" + png()[1:], Refused(400, NOT_AN_IMAGE)),
        "png_bad_ihdr_crc": _file(
            lambda: files.patched(png(), 29, b"\x00\x00\x00\x00"), Refused(400, NOT_AN_IMAGE)
        ),
        "png_idat_bit_flipped": _file(
            lambda: files.flipped(png(), b"IDAT", 8), Refused(400, CORRUPT)
        ),
        "svg_document": _file(
            lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
            Refused(400, NOT_AN_IMAGE),
        ),
        "tiff_unsupported": _file(
            partial(files.small, "TIFF"), Refused(400, "Unsupported image format TIFF")
        ),
        "ico_unsupported": _file(
            partial(files.small, "ICO"), Refused(400, "Unsupported image format ICO")
        ),
    }


def _pixel_modes() -> dict[str, Builder]:
    grey16 = np.full((3, 4), 40000, dtype=np.uint16)  # 40000 / 65535 * 255 = 155.6
    return {
        "animated_gif_first_frame": _file(partial(files.animated, "GIF"), Decodes(10, 8, RED)),
        "animated_webp_first_frame": _file(
            partial(files.animated, "WEBP", lossless=True), Decodes(10, 8, RED)
        ),
        "animated_png_first_frame": _file(partial(files.animated, "PNG"), Decodes(10, 8, RED)),
        "cmyk_jpeg": _file(
            lambda: encode(Image.new("CMYK", (10, 8), (0, 255, 255, 0)), "JPEG"),
            Decodes(10, 8, RED),
        ),
        "png_rgb_16_bit": _file(files.rgb16_png, Decodes(4, 3, RED)),
        "png_grey_16_bit": _file(
            lambda: encode(Image.fromarray(grey16), "PNG"), Decodes(4, 3, (156, 156, 156))
        ),
        "png_palette_with_transparency": _file(
            files.palette_with_transparency, Decodes(4, 4, WHITE, at=(0, 0))
        ),
    }


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
            partial(files.exif_jpeg, n),
            Decodes(*((20, 40) if n >= 5 else (40, 20)), RED, at=corner),
        )
        for n, corner in _RED_CORNER_UPRIGHT.items()
    }
    cases["jpeg_exif_orientation_6_min_side"] = _file(
        partial(files.exif_jpeg, 6, (1600, 800)), Decodes(100, 200, RED, at=(90, 10)), min_side=100
    )
    return cases


def _polyglots() -> dict[str, Builder]:
    png = partial(files.small, "PNG")
    zip_end = b"PK\x03\x04" + bytes(26) + b"evil.txt" + b"PK\x05\x06" + bytes(18)
    return {
        "polyglot_png_then_zip": _file(lambda: png() + zip_end, Decodes(10, 8, RED)),
        "polyglot_png_then_html": _file(
            lambda: png() + b"<html><script>alert(1)</script></html>", Decodes(10, 8, RED)
        ),
        "polyglot_jpeg_then_php": _file(
            lambda: files.small("JPEG") + b"<?php system($_GET['c']); ?>" * 8, Decodes(10, 8, RED)
        ),
        "polyglot_jpeg_html_comment": _file(
            lambda: files.jpeg_with_comment(b"<script>alert(1)</script>"), Decodes(10, 8, RED)
        ),
        "polyglot_gif_js_header": _file(files.gif_js_polyglot, Decodes(10799, 8, RED, at=(5, 4))),
        "png_bad_idat_crc": _file(lambda: files.flipped(png(), b"IEND", -5), Decodes(10, 8, RED)),
    }


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
            files.large_jpeg,
            Decodes(1195, 896, RED),
            896,
        ),
    }


def _base64_case(edit: Callable[[str], str], expected: Decodes | Refused) -> Builder:
    return lambda: Case(edit(files.base64_text()), expected)


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
