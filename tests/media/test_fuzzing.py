"""Whatever a client sends, only Fovea's own errors come out of the image intake."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fovea.errors import FoveaError
from fovea.media.images import DecodedImage, ImageLimits, decode_image_url

from .builders import POSITION, data_url, encode

LIMITS = ImageLimits(
    max_image_bytes=256 * 1024, max_image_pixels=1_000_000, max_images_per_request=4
)

_PICTURE = Image.effect_noise((24, 16), 60).convert("RGB")
_PICTURE.putpixel((0, 0), (255, 0, 0))
VALID_FILES = [
    encode(_PICTURE, "PNG"),
    encode(_PICTURE.convert("P"), "PNG", transparency=3),
    encode(_PICTURE, "JPEG", quality=80),
    encode(_PICTURE, "WEBP", quality=80),
    encode(_PICTURE, "GIF"),
    encode(_PICTURE, "BMP"),
]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_fovea_error(url: str) -> DecodedImage | None:
    try:
        image = decode_image_url(url, position=POSITION, limits=LIMITS)
    except FoveaError as error:
        assert POSITION in error.message
        return None
    assert len(image.rgb) == image.width * image.height * 3
    return image


@SETTINGS
@given(st.text())
def test_any_text_raises_only_fovea_errors(text: str) -> None:
    decode_or_fovea_error(text)
    decode_or_fovea_error("data:image/png;base64," + text)


@SETTINGS
@given(st.binary(max_size=2048), st.sampled_from(["image/png", "image/jpeg", "text/plain"]))
def test_any_bytes_raise_only_fovea_errors(data: bytes, mime: str) -> None:
    decode_or_fovea_error(data_url(data, mime))
    decode_or_fovea_error(base64.urlsafe_b64encode(data).decode().rstrip("="))


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_FILES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@SETTINGS
@given(damaged_files())
def test_damaged_images_raise_only_fovea_errors(data: bytes) -> None:
    decode_or_fovea_error(data_url(data))
