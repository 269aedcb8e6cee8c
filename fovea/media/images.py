"""Fovea's one image intake: an ``image_url`` from a request to checked, decoded RGB pixels.

``decode_image_url`` is synchronous and CPU-bound (callers run it in a thread pool). It accepts
base64 ``data:`` URLs and bare base64 holding JPEG, PNG, WebP, GIF (first frame) or BMP, sniffed
from the bytes whatever MIME type the URL declares; ``decode_image_bytes`` decodes a file already
in hand (fetched from an http URL by ``fovea.media.fetch``). It refuses, before any pixel is
decoded, images over the byte or pixel limits. Every failure leaves as ``ImageError`` (400) or
``PayloadTooLargeError`` (413) naming the message part; no Pillow exception escapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import ExifTags, Image, ImageFile, ImageOps

from fovea.errors import FoveaError, ImageError, TooManyImagesError
from fovea.media.data_url import read_image_bytes
from fovea.media.pixels import to_rgb
from fovea.media.resize import draft, reduced_size, resize_to

if TYPE_CHECKING:
    from fovea.settings import Settings

__all__ = [
    "DETAILS",
    "DecodedImage",
    "ImageLimits",
    "check_image_count",
    "decode_image_bytes",
    "decode_image_url",
]

DETAILS = ("auto", "low", "high")

# Pillow's names; a JPEG carrying extra pictures (multi-picture format) opens as "MPO".
_ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
_ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF or BMP"
# EXIF orientations 5 to 8 store the picture turned a quarter: its upright width is the height.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

# Every image is checked against the operator's max_image_pixels right after Image.open (which
# reads only the header) and before load(), with its dimensions in the error. Pillow's own fixed,
# process-wide guard would get there first: warning between 89 and 179 Mpx, refusing above
# without naming the dimensions. Opening allocates nothing large, so the check here suffices.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    """The operator's limits on the images of one request."""

    max_image_bytes: int
    max_image_pixels: int
    max_images_per_request: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        return cls(
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            max_images_per_request=settings.max_images_per_request,
        )


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded, upright image: packed RGB888 rows, top to bottom.

    ``digest`` is the SHA-256 (hex) of the encoded file as the client sent it, for caching;
    ``source_format`` is what the bytes turned out to be (``"JPEG"``, ``"PNG"``, ``"WEBP"``,
    ``"GIF"`` or ``"BMP"``). ``width`` and ``height`` are those of ``rgb``, scaled down when the
    caller asked for ``min_side``; ``original_width`` and ``original_height`` are the file's
    own, upright.
    """

    width: int
    height: int
    rgb: bytes
    digest: str
    source_format: str
    original_width: int
    original_height: int
    detail: str = "auto"


def decode_image_url(
    url: str,
    *,
    position: str,
    limits: ImageLimits,
    detail: str = "auto",
    min_side: int | None = None,
) -> DecodedImage:
    """Decode the image an ``image_url.url`` carries; ``position`` (``messages[0].content[2]``)
    names the part in errors. Raises ``ImageError`` or ``PayloadTooLargeError`` only."""
    _check_detail(detail, position)
    encoded = read_image_bytes(url, position=position, max_bytes=limits.max_image_bytes)
    return decode_image_bytes(
        encoded, position=position, limits=limits, detail=detail, min_side=min_side
    )


def decode_image_bytes(
    encoded: bytes,
    *,
    position: str,
    limits: ImageLimits,
    detail: str = "auto",
    min_side: int | None = None,
) -> DecodedImage:
    """Decode an encoded image file already read within ``limits.max_image_bytes`` (from a
    data URL or fetched). Raises ``ImageError`` or ``PayloadTooLargeError`` only.

    ``min_side`` is what the engine needs on each side: a larger image comes back scaled down
    (aspect kept) until its shorter side is ``min_side``; None keeps every pixel.
    """
    _check_detail(detail, position)
    with _open(encoded, position) as image:
        source_format = _accepted_format(image, position)
        _check_dimensions(image.size, limits.max_image_pixels, position)
        upright, original = _decode_pixels(image, position, min_side)
        # Closing the opened image invalidates it, and ``upright`` may be that same object.
        width, height, rgb = upright.width, upright.height, upright.tobytes()
    return DecodedImage(
        width=width,
        height=height,
        rgb=rgb,
        digest=hashlib.sha256(encoded).hexdigest(),
        source_format=source_format,
        original_width=original[0],
        original_height=original[1],
        detail=detail,
    )


def check_image_count(
    n: int, *, limits: ImageLimits, model_max: int | None, model_name: str
) -> None:
    """Raise ``TooManyImagesError`` (400) when ``n`` images exceed the server's or the model's
    per-request limit, naming the stricter one."""
    server_max = limits.max_images_per_request
    if model_max is not None and model_max <= server_max and n > model_max:
        accepts = (
            "does not accept images"
            if model_max == 0
            else f"accepts at most {model_max} per request"
        )
        raise TooManyImagesError(
            f"Too many images: the request has {_images(n)}; model {model_name} {accepts}",
            param="messages",
        )
    if n > server_max:
        raise TooManyImagesError(
            f"Too many images: the request has {_images(n)}; "
            f"this server accepts at most {server_max} per request",
            param="messages",
        )


def _check_detail(detail: str, position: str) -> None:
    if detail not in DETAILS:
        raise ImageError(
            f"Invalid detail {detail[:20]!r} for the image at {position}; "
            "use 'auto', 'low' or 'high'",
            param=position,
        )


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


@contextlib.contextmanager
def _open(encoded: bytes, position: str) -> Iterator[ImageFile.ImageFile]:
    """Identify the image and read its header only; no pixel data is decoded yet."""
    try:
        image = Image.open(io.BytesIO(encoded))
    except Image.UnidentifiedImageError:
        raise ImageError(
            f"The data at {position} is not a valid image (could not identify the format); "
            f"send {_ACCEPTED_NAMES}",
            param=position,
        ) from None
    except Exception as exc:
        raise _pillow_error(exc, position) from exc
    with image:
        yield image


def _accepted_format(image: ImageFile.ImageFile, position: str) -> str:
    found = image.format or "unknown"
    if found not in _ACCEPTED_FORMATS:
        raise ImageError(
            f"Unsupported image format {found} at {position}; send {_ACCEPTED_NAMES}",
            param=position,
        )
    return "JPEG" if found == "MPO" else found


def _check_dimensions(size: tuple[int, int], max_pixels: int, position: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(
            f"The image at {position} has zero size ({width}x{height})", param=position
        )
    if width * height > max_pixels:
        raise ImageError(
            f"The image at {position} is {width}x{height} ({width * height:,} pixels); "
            f"this server accepts images up to {max_pixels:,} pixels (max_image_pixels)",
            param=position,
        )


def _decode_pixels(
    image: ImageFile.ImageFile, position: str, min_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame upright and as RGB, scaled down to ``min_side`` if given; return
    it with the file's own upright size."""
    stored = image.size
    draft_size = reduced_size(stored, min_side)  # outside the try: a bad min_side is no 400
    try:
        draft(image, draft_size)
        image.load()
        original = (stored[1], stored[0]) if _turn_upright(image) else stored
        rgb = resize_to(to_rgb(image), reduced_size(original, min_side))
    except Exception as exc:
        raise _pillow_error(exc, position) from exc
    return rgb, original


def _turn_upright(image: Image.Image) -> bool:
    """Apply the EXIF orientation in place; return whether the picture turned a quarter."""
    before = image.size
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        # Broken EXIF metadata does not make the pixels wrong: keep them as they are.
        return image.size != before
    return orientation in _QUARTER_TURNS


def _pillow_error(exc: Exception, position: str) -> FoveaError:
    """Translate what Pillow raised (OSError, SyntaxError, ValueError, struct.error, ...)."""
    if isinstance(exc, FoveaError):
        return exc
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        # Only if something reset Image.MAX_IMAGE_PIXELS; Pillow's message has the pixel count.
        return ImageError(f"The image at {position} has too many pixels: {exc}", param=position)
    return ImageError(
        f"Could not decode image at {position}: truncated or corrupt data", param=position
    )
