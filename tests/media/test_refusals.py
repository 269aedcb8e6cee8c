"""Images that must be refused: bombs, corrupt data, unsupported formats, too many images."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from fovea.errors import ImageError, TooManyImagesError
from fovea.media.images import ImageLimits, check_image_count, decode_image_url
from fovea.settings import Settings

from .builders import POSITION, data_url, encode, png_bomb, webp_canvas_bomb


def refuse(data: bytes, limits: ImageLimits) -> ImageError:
    with pytest.raises(ImageError) as caught:
        decode_image_url(data_url(data), position=POSITION, limits=limits)
    assert POSITION in caught.value.message
    assert caught.value.status_code == 400
    return caught.value


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the images whose pixels were decoded (none are, while this is in use)."""
    sizes: list[tuple[int, int]] = []
    for cls in (ImageFile.ImageFile, WebPImagePlugin.WebPImageFile):
        monkeypatch.setattr(cls, "load", lambda image: sizes.append(image.size))
    return sizes


def test_20000_square_png_bomb_is_refused_without_decoding(
    bomb_20000: bytes, decoded: list[tuple[int, int]]
) -> None:
    default = ImageLimits.from_settings(Settings())
    assert len(bomb_20000) < 200_000
    error = refuse(bomb_20000, default)
    assert decoded == []  # refused from the header: 1.2 GB of pixels never allocated
    assert "20000x20000" in error.message
    assert "50,000,000 pixels" in error.message


def test_webp_with_a_huge_canvas_is_refused_without_decoding(
    limits: ImageLimits, decoded: list[tuple[int, int]]
) -> None:
    error = refuse(webp_canvas_bomb(), limits)
    assert decoded == []
    assert "16383x16383" in error.message


def test_image_just_over_the_pixel_limit_is_refused() -> None:
    small = ImageLimits(max_image_bytes=10**6, max_image_pixels=99, max_images_per_request=1)
    assert "10x10 (100 pixels)" in refuse(png_bomb(10, 10), small).message
    assert decode_image_url(data_url(png_bomb(9, 11)), position=POSITION, limits=small).width == 9


def test_truncated_png_is_refused(limits: ImageLimits) -> None:
    data = encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG")
    error = refuse(data[: len(data) * 2 // 3], limits)
    assert error.message == f"Could not decode image at {POSITION}: truncated or corrupt data"


def test_truncated_jpeg_is_refused(limits: ImageLimits) -> None:
    data = encode(Image.effect_noise((64, 64), 80).convert("RGB"), "JPEG")
    assert "truncated or corrupt" in refuse(data[: len(data) // 2], limits).message


def test_png_with_a_mangled_chunk_is_refused(limits: ImageLimits) -> None:
    data = bytearray(encode(Image.effect_noise((256, 256), 80).convert("RGB"), "PNG"))
    second_idat = data.find(b"IDAT", data.find(b"IDAT") + 4)
    data[second_idat : second_idat + 4] = b"\x1c\xe5\xaf\xa8"  # Pillow raises SyntaxError
    assert "truncated or corrupt" in refuse(bytes(data), limits).message


def test_bmp_claiming_a_larger_palette_is_refused(limits: ImageLimits) -> None:
    data = bytearray(encode(Image.effect_noise((24, 16), 60), "BMP"))
    data[46:50] = (1000).to_bytes(4, "little")  # colours used; Pillow raises ValueError
    assert "truncated or corrupt" in refuse(bytes(data), limits).message


def test_pillow_still_refuses_truncated_images() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_tiff_is_an_unsupported_format(limits: ImageLimits) -> None:
    error = refuse(encode(Image.new("RGB", (4, 4)), "TIFF"), limits)
    assert error.message.startswith("Unsupported image format TIFF")
    assert "send JPEG, PNG, WebP, GIF or BMP" in error.message


def test_non_image_bytes_are_not_a_valid_image(limits: ImageLimits) -> None:
    error = refuse(b"%PDF-1.7 this is a document, not a picture", limits)
    assert "is not a valid image (could not identify the format)" in error.message


def test_png_with_zero_width_is_refused(limits: ImageLimits) -> None:
    refuse(png_bomb(0, 10), limits)


def test_limits_come_from_settings() -> None:
    settings = Settings(max_image_bytes=1, max_image_pixels=2, max_images_per_request=3)
    assert ImageLimits.from_settings(settings) == ImageLimits(1, 2, 3)


def test_image_count_within_limits_passes(limits: ImageLimits) -> None:
    check_image_count(8, limits=limits, model_max=8, model_name="gemma-3-demo")
    check_image_count(16, limits=limits, model_max=None, model_name="gemma-3-demo")


def test_too_many_images_for_the_server(limits: ImageLimits) -> None:
    with pytest.raises(TooManyImagesError) as caught:
        check_image_count(20, limits=limits, model_max=32, model_name="big")
    assert caught.value.message == (
        "Too many images: the request has 20 images; this server accepts at most 16 per request"
    )
    assert caught.value.status_code == 400


def test_too_many_images_for_the_model(limits: ImageLimits) -> None:
    with pytest.raises(TooManyImagesError) as caught:
        check_image_count(20, limits=limits, model_max=8, model_name="gemma-3-demo")
    assert caught.value.message == (
        "Too many images: the request has 20 images; "
        "model gemma-3-demo accepts at most 8 per request"
    )


def test_text_only_model_accepts_no_images(limits: ImageLimits) -> None:
    with pytest.raises(TooManyImagesError, match="1 image; model gemma-3-270m does not accept"):
        check_image_count(1, limits=limits, model_max=0, model_name="gemma-3-270m")
