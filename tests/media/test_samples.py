"""The sample pictures shipped in examples/images decode as the reference client sends them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fovea.media.images import ImageLimits, decode_image_url

from .builders import POSITION, rgb_at

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"


@pytest.mark.parametrize(
    ("name", "point", "colour"),
    [
        ("sunset.png", (320, 260), (220, 30, 20)),
        ("house.png", (340, 150), (190, 30, 30)),
        ("red-circle.png", (320, 240), (220, 30, 30)),
        ("blue-star.png", (320, 240), (30, 60, 220)),
    ],
)
def test_shipped_sample_decodes_labelled_as_jpeg(
    name: str, point: tuple[int, int], colour: tuple[int, int, int], limits: ImageLimits
) -> None:
    data = (EXAMPLES / name).read_bytes()
    assert len(data) <= 60 * 1024
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()  # as the client labels it
    image = decode_image_url(url, position=POSITION, limits=limits)
    assert (image.width, image.height, image.source_format) == (640, 480, "PNG")
    assert rgb_at(image.rgb, image.width, *point) == colour
