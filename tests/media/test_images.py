"""Every accepted format and pixel mode decodes to upright, packed RGB888."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from fovea.media.images import DecodedImage, ImageLimits, decode_image_url

from .builders import POSITION, close_to, data_url, encode, rgb_at

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def decode(data: bytes, limits: ImageLimits, mime: str = "image/png") -> DecodedImage:
    return decode_image_url(data_url(data, mime), position=POSITION, limits=limits)


def two_colour_image(mode: str = "RGB") -> Image.Image:
    """8x6: red on the left half, blue on the right."""
    image = Image.new("RGB", (8, 6), RED)
    image.paste(BLUE, (4, 0, 8, 6))
    return image.convert(mode)


def test_png_decodes_to_packed_rgb_with_digest_of_the_file(limits: ImageLimits) -> None:
    data = encode(two_colour_image(), "PNG")
    image = decode_image_url(data_url(data), position=POSITION, limits=limits, detail="low")
    assert (image.width, image.height, image.source_format) == (8, 6, "PNG")
    assert len(image.rgb) == 8 * 6 * 3
    assert rgb_at(image.rgb, 8, 0, 0) == RED
    assert rgb_at(image.rgb, 8, 7, 5) == BLUE
    assert image.digest == hashlib.sha256(data).hexdigest()
    assert image.detail == "low"


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("JPEG", {"quality": 95}, 40),
        ("WEBP", {"lossless": True}, 0),
        ("GIF", {}, 0),
        ("BMP", {}, 0),
    ],
)
def test_each_accepted_format_decodes(
    limits: ImageLimits, fmt: str, options: dict[str, object], tolerance: int
) -> None:
    image = decode(encode(two_colour_image(), fmt, **options), limits)
    assert (image.width, image.height, image.source_format) == (8, 6, fmt)
    assert close_to(rgb_at(image.rgb, 8, 0, 0), RED, tolerance)
    assert close_to(rgb_at(image.rgb, 8, 7, 5), BLUE, tolerance)


def test_png_labelled_as_jpeg_is_sniffed_as_png(limits: ImageLimits) -> None:
    image = decode(encode(two_colour_image(), "PNG"), limits, mime="image/jpeg")
    assert image.source_format == "PNG"
    assert rgb_at(image.rgb, 8, 0, 0) == RED


def test_transparent_png_is_flattened_on_white(limits: ImageLimits) -> None:
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    rgba.putpixel((2, 0), (255, 0, 0, 255))
    image = decode(encode(rgba, "PNG"), limits)
    assert rgb_at(image.rgb, 4, 0, 0) == WHITE
    assert close_to(rgb_at(image.rgb, 4, 1, 0), (127, 127, 127), 1)
    assert rgb_at(image.rgb, 4, 2, 0) == RED


def test_grey_with_alpha_is_flattened_on_white(limits: ImageLimits) -> None:
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    image = decode(encode(la, "PNG"), limits)
    assert rgb_at(image.rgb, 2, 0, 0) == WHITE
    assert rgb_at(image.rgb, 2, 1, 0) == (0, 0, 0)


def test_palette_png_with_transparent_index_is_flattened_on_white(limits: ImageLimits) -> None:
    palette = Image.new("P", (3, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    palette.putpixel((1, 0), 1)
    palette.putpixel((2, 0), 2)
    image = decode(encode(palette, "PNG", transparency=0), limits)
    assert rgb_at(image.rgb, 3, 0, 0) == WHITE
    assert rgb_at(image.rgb, 3, 1, 0) == RED
    assert rgb_at(image.rgb, 3, 2, 0) == BLUE


def test_transparent_webp_is_flattened_on_white(limits: ImageLimits) -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 255, 0, 0))
    rgba.putpixel((1, 0), (0, 255, 0, 255))
    image = decode(encode(rgba, "WEBP", lossless=True, exact=True), limits)
    assert rgb_at(image.rgb, 2, 0, 0) == WHITE
    assert rgb_at(image.rgb, 2, 1, 0) == (0, 255, 0)


def test_cmyk_jpeg_converts_to_rgb(limits: ImageLimits) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    image = decode(encode(cmyk, "JPEG", quality=95), limits)
    assert image.source_format == "JPEG"
    assert close_to(rgb_at(image.rgb, 16, 8, 8), RED, 12)


def test_16_bit_grey_gradient_spans_the_full_8_bit_range(limits: ImageLimits) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    gray16 = Image.fromarray(np.repeat(ramp[None, :], 2, axis=0))
    assert gray16.mode == "I;16"
    image = decode(encode(gray16, "PNG"), limits)
    pixels = np.frombuffer(image.rgb, dtype=np.uint8).reshape(2, 256, 3)
    first_row = pixels[0, :, 0]
    assert first_row[0] == 0 and first_row[-1] == 255
    assert abs(int(first_row[128]) - 128) <= 1
    assert np.all(np.diff(first_row.astype(int)) >= 0)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


@pytest.mark.parametrize(("mode", "value", "expected"), [("L", 77, (77, 77, 77)), ("1", 1, WHITE)])
def test_grey_and_bilevel_pngs_become_rgb(
    limits: ImageLimits, mode: str, value: int, expected: tuple[int, int, int]
) -> None:
    image = decode(encode(Image.new(mode, (3, 3), value), "PNG"), limits)
    assert rgb_at(image.rgb, 3, 1, 1) == expected


def test_exif_orientation_6_jpeg_is_turned_upright(limits: ImageLimits) -> None:
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 10, 10))  # the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode(encode(stored, "JPEG", quality=95, exif=exif), limits)
    assert (image.width, image.height) == (20, 40)
    assert close_to(rgb_at(image.rgb, 20, 17, 2), RED, 40)  # now top-right
    assert close_to(rgb_at(image.rgb, 20, 2, 2), BLUE, 40)


def test_animated_gif_gives_its_first_frame(limits: ImageLimits) -> None:
    frames = [Image.new("RGB", (5, 5), RED), Image.new("RGB", (5, 5), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    image = decode(data, limits, mime="image/gif")
    assert (image.width, image.height, image.source_format) == (5, 5, "GIF")
    assert rgb_at(image.rgb, 5, 2, 2) == RED


def test_multi_picture_jpeg_is_reported_as_jpeg(limits: ImageLimits) -> None:
    frames = [Image.new("RGB", (6, 4), RED), Image.new("RGB", (6, 4), BLUE)]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    image = decode(data, limits, mime="image/jpeg")
    assert (image.width, image.height, image.source_format) == (6, 4, "JPEG")
    assert close_to(rgb_at(image.rgb, 6, 3, 2), RED, 12)
