"""min_side: images decode only as large as the engine needs, upright and with their colours."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fovea.errors import ImageError
from fovea.media.images import DecodedImage, ImageLimits, decode_image_bytes
from fovea.media.resize import draft, reduced_size

from .builders import POSITION, close_to, encode, png_bomb, rgb_at

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
# Where the stored top-left corner shows once each EXIF orientation is applied.
CORNER_AFTER_ORIENTATION = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


def decode(data: bytes, limits: ImageLimits, min_side: int | None) -> DecodedImage:
    return decode_image_bytes(data, position=POSITION, limits=limits, min_side=min_side)


def marked(width: int, height: int) -> Image.Image:
    """Blue, with a red square in the top-left corner and a green one in the bottom-right."""
    image = Image.new("RGB", (width, height), BLUE)
    corner = min(width, height) // 4
    image.paste(RED, (0, 0, corner, corner))
    image.paste(GREEN, (width - corner, height - corner, width, height))
    return image


def corner_colour(image: DecodedImage, corner: str) -> tuple[int, int, int]:
    inset = min(image.width, image.height) // 16
    x = inset if corner.endswith("left") else image.width - 1 - inset
    y = inset if corner.startswith("top") else image.height - 1 - inset
    return rgb_at(image.rgb, image.width, x, y)


@pytest.mark.parametrize(
    ("size", "min_side", "expected"),
    [
        ((4000, 3000), 896, (1195, 896)),
        ((3000, 4000), 896, (896, 1195)),
        ((1000, 1000), 896, (896, 896)),
        ((897, 5000), 896, (896, 4994)),
        ((896, 5000), 896, None),
        ((500, 400), 896, None),
        ((1, 30000), 896, None),
        ((4000, 3000), None, None),
    ],
)
def test_reduced_size(
    size: tuple[int, int], min_side: int | None, expected: tuple[int, int] | None
) -> None:
    assert reduced_size(size, min_side) == expected


@given(st.integers(1, 20000), st.integers(1, 20000), st.integers(1, 2000))
def test_reduced_size_keeps_min_side_and_aspect_and_never_grows(
    width: int, height: int, min_side: int
) -> None:
    reduced = reduced_size((width, height), min_side)
    if reduced is None:
        assert min(width, height) <= min_side
        return
    new_width, new_height = reduced
    assert min(new_width, new_height) == min_side
    assert new_width <= width and new_height <= height
    assert abs(new_width / new_height - width / height) <= 1 / min(new_width, new_height)
    assert reduced_size((height, width), min_side) == (new_height, new_width)


@pytest.mark.parametrize(
    ("fmt", "target", "loaded"),
    [
        ("JPEG", (200, 120), (250, 150)),  # 1/4: 1/8 would leave 125x75
        ("JPEG", (600, 360), (1000, 600)),  # no scale keeps 600 of 1000
        ("PNG", (200, 120), (1000, 600)),  # only JPEG decodes at a scale
    ],
)
def test_draft_decodes_jpeg_at_the_smallest_scale_still_over_target(
    fmt: str, target: tuple[int, int], loaded: tuple[int, int]
) -> None:
    with Image.open(io.BytesIO(encode(marked(1000, 600), fmt))) as image:
        draft(image, target)
        image.load()
        assert image.size == loaded


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {"quality": 92}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("BMP", {}),
    ],
)
def test_each_format_is_scaled_down_to_min_side(
    limits: ImageLimits, fmt: str, options: dict[str, object]
) -> None:
    data = encode(marked(1000, 600), fmt, **options)
    image = decode(data, limits, min_side=120)
    assert (image.width, image.height) == (200, 120)
    assert (image.original_width, image.original_height) == (1000, 600)
    assert len(image.rgb) == 200 * 120 * 3
    assert image.digest == hashlib.sha256(data).hexdigest()
    assert close_to(corner_colour(image, "top-left"), RED, 40)
    assert close_to(corner_colour(image, "bottom-right"), GREEN, 40)
    assert close_to(rgb_at(image.rgb, 200, 100, 60), BLUE, 40)


@pytest.mark.parametrize(
    ("mode", "options"),
    [("L", {}), ("CMYK", {}), ("RGB", {"progressive": True}), ("RGB", {"subsampling": 0})],
)
def test_jpeg_variants_are_drafted_and_scaled(
    limits: ImageLimits, mode: str, options: dict[str, object]
) -> None:
    data = encode(marked(1000, 600).convert(mode), "JPEG", quality=92, **options)
    image = decode(data, limits, min_side=120)
    assert (image.width, image.height) == (200, 120)
    expected = RED if mode != "L" else (76, 76, 76)  # red's luma
    assert close_to(corner_colour(image, "top-left"), expected, 40)


def test_min_side_under_one_is_a_programming_error(limits: ImageLimits) -> None:
    with pytest.raises(ValueError, match="min_side must be at least 1"):
        decode(encode(marked(10, 10), "PNG"), limits, min_side=0)


@pytest.mark.parametrize("orientation", sorted(CORNER_AFTER_ORIENTATION))
def test_exif_rotated_jpeg_is_scaled_down_upright(limits: ImageLimits, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(marked(1600, 800), "JPEG", quality=92, exif=exif)
    image = decode(data, limits, min_side=100)
    quarter_turn = orientation >= 5
    assert (image.width, image.height) == ((100, 200) if quarter_turn else (200, 100))
    expected_original = (800, 1600) if quarter_turn else (1600, 800)
    assert (image.original_width, image.original_height) == expected_original
    assert close_to(corner_colour(image, CORNER_AFTER_ORIENTATION[orientation]), RED, 40)


def test_drafted_jpeg_looks_like_a_full_decode_scaled_down(limits: ImageLimits) -> None:
    picture = Image.linear_gradient("L").resize((1200, 900)).convert("RGB")
    picture.paste(marked(400, 300), (700, 500))
    data = encode(picture, "JPEG", quality=92)
    image = decode(data, limits, min_side=225)
    assert (image.width, image.height) == (300, 225)
    full = decode(data, limits, min_side=None)
    reference = Image.frombytes("RGB", (1200, 900), full.rgb).resize((300, 225), Image.LANCZOS)
    ours = np.frombuffer(image.rgb, dtype=np.uint8).astype(int)
    assert np.abs(ours - np.asarray(reference).reshape(-1).astype(int)).mean() < 2.0


def test_images_at_or_under_min_side_are_never_scaled(limits: ImageLimits) -> None:
    for size in ((50, 40), (896, 2000), (2000, 896)):
        image = decode(encode(marked(*size), "PNG"), limits, min_side=896)
        assert (image.width, image.height) == (image.original_width, image.original_height) == size


def test_without_min_side_every_pixel_is_kept(limits: ImageLimits) -> None:
    image = decode(encode(marked(1000, 600), "JPEG"), limits, min_side=None)
    assert (image.width, image.height) == (1000, 600)
    assert (image.original_width, image.original_height) == (1000, 600)


def test_the_pixel_limit_applies_to_the_file_not_the_reduced_size() -> None:
    small = ImageLimits(max_image_bytes=10**6, max_image_pixels=1_000_000, max_images_per_request=1)
    with pytest.raises(ImageError, match=r"2000x1000 \(2,000,000 pixels\)"):
        decode(png_bomb(2000, 1000), small, min_side=100)
