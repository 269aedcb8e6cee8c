"""Image URLs to encoded image bytes: base64 ``data:`` URLs and bare base64, within a byte limit.

Only the bytes are produced here; what they contain is sniffed later, so the MIME type a
``data:`` URL declares is read for nothing but its ``;base64`` flag.
"""

from __future__ import annotations

import binascii
import contextlib
import re

import pybase64

from fovea.errors import ImageError, PayloadTooLargeError

__all__ = ["check_image_url", "read_image_bytes"]

# Bounded so that a long run of letters before a ':' is not echoed back as a "scheme".
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}):")
_WHITESPACE = b" \t\r\n\f\v"
_WHITESPACE_CHARS = " \t\r\n\f\v"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_SEND_AS_DATA_URL = "send the image as a base64 data URL (data:image/png;base64,...)"


def read_image_bytes(url: str, *, position: str, max_bytes: int) -> bytes:
    """Return the encoded image a URL carries, at most ``max_bytes`` long.

    Accepts ``data:<any type>;base64,<payload>`` and bare base64 (what the cloud's batch datasets
    hold). The base64 may be wrapped, unpadded or URL-safe. Raises ``ImageError`` (400) for
    anything else and ``PayloadTooLargeError`` (413) over the limit; ``position`` names the
    message part in every error.
    """
    payload = _base64_payload(url.strip(), position)
    _check_encoded_size(payload, position, max_bytes)
    data = _decode_base64(payload, position)
    if not data:
        raise ImageError(f"The image at {position} is empty (0 bytes)", param=position)
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes, position)
    return data


def check_image_url(url: str, *, position: str, max_bytes: int) -> None:
    """What ``read_image_bytes`` refuses without decoding: the URL's form and an encoded size
    over ``max_bytes`` (cheap, so a request can be refused before it takes a quota)."""
    _check_encoded_size(_base64_payload(url.strip(), position), position, max_bytes)


def _base64_payload(url: str, position: str) -> str:
    if not url:
        raise ImageError(
            f"The image URL at {position} is empty; {_SEND_AS_DATA_URL}", param=position
        )
    match = _SCHEME.match(url)
    if match is None:
        # ':' is not in either base64 alphabet, so a string without a scheme is bare base64.
        return url
    scheme = match.group(1).lower()
    if scheme == "data":
        return _data_url_payload(url, position)
    if scheme in ("http", "https"):
        raise ImageError(
            f"Remote image URLs are disabled on this server (image at {position}); "
            f"{_SEND_AS_DATA_URL}",
            param=position,
        )
    raise ImageError(
        f"Unsupported image URL scheme '{scheme}:' at {position}; {_SEND_AS_DATA_URL}",
        param=position,
    )


def _data_url_payload(url: str, position: str) -> str:
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageError(
            f"The data URL at {position} has no ',' before its data; {_SEND_AS_DATA_URL}",
            param=position,
        )
    parameters = [part.strip().lower() for part in header[len("data:") :].split(";")[1:]]
    if "base64" not in parameters:
        raise ImageError(
            f"The data URL at {position} is not base64-encoded; {_SEND_AS_DATA_URL}",
            param=position,
        )
    return payload


def _check_encoded_size(payload: str, position: str, max_bytes: int) -> None:
    """Refuse an oversized payload before spending time and memory decoding it."""
    if len(payload) * 3 // 4 <= max_bytes:
        return
    # Line breaks and padding inflate the estimate; without them it is the exact decoded size.
    skipped = sum(payload.count(char) for char in _WHITESPACE_CHARS) + payload.count("=")
    decoded_size = (len(payload) - skipped) * 3 // 4
    if decoded_size > max_bytes:
        raise _too_large(decoded_size, max_bytes, position)


def _decode_base64(payload: str, position: str) -> bytes:
    try:
        text = payload.encode("ascii")
    except UnicodeEncodeError:
        raise _not_base64(position, "it contains non-ASCII characters") from None
    # pybase64's SIMD decoder is ~40x faster than binascii; with validate=True it accepts only
    # canonical base64 (standard alphabet, padded, unwrapped), which most clients send.
    with contextlib.suppress(binascii.Error):
        return pybase64.b64decode(text, validate=True)
    text = text.translate(_URLSAFE_TO_STANDARD, _WHITESPACE).rstrip(b"=")
    if len(text) % 4 == 1:
        raise _not_base64(position, "its length is not a whole number of bytes")
    text += b"=" * (-len(text) % 4)
    with contextlib.suppress(binascii.Error):
        return pybase64.b64decode(text, validate=True)
    # Invalid base64 only: binascii refuses what pybase64 refuses (tests/media/test_base64.py
    # holds the two to the same answers) and says what is wrong.
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise _not_base64(position, str(exc).rstrip(".").lower()) from None


def _not_base64(position: str, reason: str) -> ImageError:
    return ImageError(
        f"The image at {position} is not valid base64 ({reason}); {_SEND_AS_DATA_URL}",
        param=position,
    )


def _too_large(size: int, max_bytes: int, position: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The image at {position} is {_mib(size)} ({size} bytes); this server accepts images "
        f"up to {_mib(max_bytes)} ({max_bytes} bytes, max_image_bytes)",
        param=position,
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
