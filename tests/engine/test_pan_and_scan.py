"""``detail: "high"``: Gemma 3's pan and scan adds crops for elongated images only."""

from __future__ import annotations

import numpy as np

from fovea.engine.pan_and_scan import crop_boxes, expand_high_detail
from fovea.engine.types import ImageInput, ImagePart, Message, TextPart


def _image(width: int, height: int, detail: str = "high") -> ImageInput:
    pixels = np.arange(width * height * 3, dtype=np.uint32).astype(np.uint8)
    return ImageInput(width, height, pixels.tobytes(), "d", detail=detail)


def test_square_and_nearly_square_images_get_no_crops() -> None:
    assert crop_boxes(896, 896) == []
    assert crop_boxes(1000, 900) == []  # ratio 1.11 < 1.2


def test_elongated_images_get_crops_along_the_long_side() -> None:
    assert crop_boxes(1792, 896) == [(0, 0, 896, 896), (896, 0, 1792, 896)]
    assert len(crop_boxes(4000, 1000)) == 4
    assert len(crop_boxes(10_000, 1000)) == 4  # at most four
    tall = crop_boxes(600, 1800)
    assert tall == [(0, 0, 600, 600), (0, 600, 600, 1200), (0, 1200, 600, 1800)]


def test_crops_smaller_than_the_minimum_are_not_made() -> None:
    assert crop_boxes(400, 200) == []


def test_high_detail_becomes_original_plus_crops_with_gemma_text() -> None:
    image = _image(1200, 400)
    (message,) = expand_high_detail((Message("user", (TextPart("look"), ImagePart(image))),))
    images = [p.image for p in message.parts if isinstance(p, ImagePart)]
    assert [(i.width, i.height) for i in images] == [
        (1200, 400),
        (400, 400),
        (400, 400),
        (400, 400),
    ]
    assert len({i.digest for i in images}) == 4  # each view is cached on its own
    text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
    assert "Here is the original image" in text and "crops to help you see better" in text
    full = np.frombuffer(image.rgb, np.uint8).reshape(400, 1200, 3)
    second = np.frombuffer(images[2].rgb, np.uint8).reshape(400, 400, 3)
    assert np.array_equal(second, full[:, 400:800])


def test_auto_and_low_detail_are_one_view() -> None:
    for detail in ("auto", "low"):
        messages = (Message("user", (ImagePart(_image(1200, 400, detail)),)),)
        assert expand_high_detail(messages) == messages
