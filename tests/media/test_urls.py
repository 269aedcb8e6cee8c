"""Image URL forms: data URLs and bare base64 accepted, everything else refused clearly."""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from fovea.errors import ImageError, PayloadTooLargeError
from fovea.media.images import ImageLimits, decode_image_url

from .builders import POSITION, encode


@pytest.fixture
def png() -> bytes:
    return encode(Image.new("RGB", (7, 5), (10, 200, 30)), "PNG")


def test_bare_base64_without_data_prefix_is_accepted(png: bytes, limits: ImageLimits) -> None:
    image = decode_image_url(base64.b64encode(png).decode(), position=POSITION, limits=limits)
    assert (image.width, image.height) == (7, 5)


def test_wrapped_unpadded_base64_is_accepted(limits: ImageLimits) -> None:
    data = encode(Image.new("RGB", (9, 9), "navy"), "PNG")
    text = base64.b64encode(data).decode().rstrip("=")
    assert len(text) % 4 != 0, "pick an image whose base64 needs padding"
    wrapped = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    url = f"  data:image/png;base64,\n{wrapped}\n"
    assert decode_image_url(url, position=POSITION, limits=limits).width == 9


def test_url_safe_base64_is_accepted(limits: ImageLimits) -> None:
    data = encode(Image.effect_noise((32, 32), 64).convert("RGB"), "PNG")
    text = base64.urlsafe_b64encode(data).decode()
    assert "-" in text or "_" in text
    url = f"data:image/png;base64,{text}"
    assert decode_image_url(url, position=POSITION, limits=limits).width == 32


def test_mime_parameters_and_case_do_not_matter(png: bytes, limits: ImageLimits) -> None:
    url = f"DATA:application/octet-stream;name=x.png;BASE64,{base64.b64encode(png).decode()}"
    assert decode_image_url(url, position=POSITION, limits=limits).height == 5


@pytest.mark.parametrize("scheme", ["http", "https", "HTTPS"])
def test_remote_urls_are_refused(scheme: str, limits: ImageLimits) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image_url(f"{scheme}://example.com/cat.png", position=POSITION, limits=limits)
    message = caught.value.message
    assert "Remote image URLs are disabled on this server" in message
    assert "base64 data URL" in message and POSITION in message
    assert caught.value.status_code == 400
    assert caught.value.param == POSITION


def test_file_urls_are_refused(limits: ImageLimits) -> None:
    with pytest.raises(ImageError, match=r"Unsupported image URL scheme 'file:'") as caught:
        decode_image_url("file:///etc/passwd", position=POSITION, limits=limits)
    assert POSITION in caught.value.message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("data:image/png;base64,", "is empty (0 bytes)"),
        ("data:image/png,iVBORw0KGgo", "is not base64-encoded"),
        ("data:image/png;base64", "has no ','"),
        ("data:image/png;base64,iVBOR$$$", "is not valid base64"),
        ("data:image/png;base64,iVBORw0KGgoé", "non-ASCII"),
        ("data:image/png;base64,iVBORw0KG", "not valid base64"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "is not a valid image"),
    ],
)
def test_malformed_urls_are_image_errors_naming_the_position(
    url: str, expected: str, limits: ImageLimits
) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image_url(url, position=POSITION, limits=limits)
    assert expected in caught.value.message
    assert POSITION in caught.value.message
    assert caught.value.status_code == 400


def test_oversized_payload_is_refused_before_decoding(limits: ImageLimits) -> None:
    payload = "A" * (limits.max_image_bytes * 2)
    with pytest.raises(PayloadTooLargeError) as caught:
        decode_image_url(f"data:image/png;base64,{payload}", position=POSITION, limits=limits)
    error = caught.value
    assert error.status_code == 413
    assert POSITION in error.message
    assert str(limits.max_image_bytes) in error.message
    assert str(limits.max_image_bytes * 3 // 2) in error.message


def test_image_one_byte_over_the_limit_is_refused(png: bytes) -> None:
    tight = ImageLimits(
        max_image_bytes=len(png) - 1, max_image_pixels=100, max_images_per_request=1
    )
    with pytest.raises(PayloadTooLargeError, match=f"{len(png)} bytes"):
        decode_image_url(base64.b64encode(png).decode(), position=POSITION, limits=tight)


def test_line_breaks_do_not_count_against_the_byte_limit(png: bytes) -> None:
    exact = ImageLimits(max_image_bytes=len(png), max_image_pixels=100, max_images_per_request=1)
    text = base64.b64encode(png).decode()
    wrapped = "\n\n".join(text[i : i + 8] for i in range(0, len(text), 8))
    assert len(wrapped) * 3 // 4 > len(png)
    assert decode_image_url(wrapped, position=POSITION, limits=exact).width == 7


def test_invalid_detail_is_refused(png: bytes, limits: ImageLimits) -> None:
    url = base64.b64encode(png).decode()
    with pytest.raises(ImageError, match="Invalid detail 'ultra'"):
        decode_image_url(url, position=POSITION, limits=limits, detail="ultra")
