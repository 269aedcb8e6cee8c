"""The fast base64 path (pybase64) accepts and refuses exactly what the stdlib path did."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea.errors import ImageError
from fovea.media.data_url import read_image_bytes

from .builders import POSITION

_WHITESPACE = b" \t\r\n\f\v"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# Every character class that matters: both alphabets, padding, whitespace and a few invalid ones.
_CHARACTERS = st.sampled_from(list(b"ABCQRSTabz09+/=-_ \n\t\r\x0b\x0c.$\x00\x7f"))


def stdlib_decode(text: bytes) -> bytes | None:
    """The intake's base64 rules on the stdlib alone (the reference); None where it refuses."""
    text = text.translate(_URLSAFE_TO_STANDARD, _WHITESPACE).rstrip(b"=")
    if len(text) % 4 == 1:
        return None
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error:
        return None


def fovea_decode(text: bytes) -> bytes | None:
    try:
        return read_image_bytes(text.decode("ascii"), position=POSITION, max_bytes=1 << 20)
    except ImageError as error:
        assert "not valid base64" in error.message or "is empty" in error.message
        return None


def check_same(text: bytes) -> None:
    expected = stdlib_decode(text)
    assert fovea_decode(text) == (expected or None), text


@settings(max_examples=3000, deadline=None)
@given(st.lists(_CHARACTERS, max_size=40).map(bytes))
def test_any_mix_of_base64_characters_decodes_as_the_stdlib_does(text: bytes) -> None:
    check_same(text)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 100))
def test_encoded_bytes_with_damaged_padding_decode_as_the_stdlib_does(raw: bytes, cut: int) -> None:
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        middle = cut * len(encoded) // 100
        for variant in (
            encoded,
            encoded.rstrip(b"="),
            encoded + b"=",
            b"=" + encoded,
            encoded[:middle] + b"=" + encoded[middle:],
            encoded[:middle] + b"\n" + encoded[middle:],
        ):
            check_same(variant)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"QQ==QQ==", "excess data after padding"),
        (b"=QQ=", "leading padding not allowed"),
        (b"QUJ.", "only base64 data is allowed"),
        (b"QUJDR", "its length is not a whole number of bytes"),
    ],
)
def test_refusals_still_say_what_is_wrong(text: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        read_image_bytes(text.decode(), position=POSITION, max_bytes=100)
