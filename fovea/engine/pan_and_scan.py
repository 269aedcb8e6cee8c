"""``detail: "high"`` for Gemma 3: pan and scan, the model's own method for elongated images.

The image is shown whole (squashed to the encoder's square) and, when it is at least 1.2x longer
one way than the other, also as 2-4 crops along its long side, each an encoder view of its own
(256 tokens each on a real Gemma 3). The prompt text around the views is Gemma 3's processor's.
Parameters are Gemma 3's defaults.
"""

from __future__ import annotations

import math

import numpy as np

from fovea.engine.types import ImageInput, ImagePart, Message, TextPart

MIN_CROP_SIZE = 256
MAX_CROPS = 4
MIN_RATIO = 1.2


def crop_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """``(left, top, right, bottom)`` of each crop; empty when the image gets none."""
    long_side, short_side = max(width, height), min(width, height)
    if short_side == 0 or long_side / short_side < MIN_RATIO:
        return []
    count = min(math.floor(long_side / short_side + 0.5), math.floor(long_side / MIN_CROP_SIZE))
    count = min(MAX_CROPS, max(2, count))
    crop_long = math.ceil(long_side / count)
    if min(crop_long, short_side) < MIN_CROP_SIZE:
        return []
    if width >= height:
        return [(i * crop_long, 0, min(width, (i + 1) * crop_long), height) for i in range(count)]
    return [(0, i * crop_long, width, min(height, (i + 1) * crop_long)) for i in range(count)]


def expand_high_detail(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """Every ``detail="high"`` image that gets crops becomes the original plus its crops."""
    return tuple(Message(m.role, tuple(_expand_parts(m.parts))) for m in messages)


def _expand_parts(parts: tuple[TextPart | ImagePart, ...]) -> list[TextPart | ImagePart]:
    expanded: list[TextPart | ImagePart] = []
    for part in parts:
        boxes = (
            crop_boxes(part.image.width, part.image.height)
            if isinstance(part, ImagePart) and part.image.detail == "high"
            else []
        )
        if not boxes:
            expanded.append(part)
            continue
        assert isinstance(part, ImagePart)
        expanded += [TextPart("Here is the original image "), part]
        expanded.append(TextPart(" and here are some crops to help you see better "))
        for index, box in enumerate(boxes):
            if index:
                expanded.append(TextPart(" "))
            expanded.append(ImagePart(_crop(part.image, box, index, len(boxes))))
    return expanded


def _crop(image: ImageInput, box: tuple[int, int, int, int], index: int, count: int) -> ImageInput:
    left, top, right, bottom = box
    pixels = np.frombuffer(image.rgb, dtype=np.uint8).reshape(image.height, image.width, 3)
    crop = np.ascontiguousarray(pixels[top:bottom, left:right])
    return ImageInput(
        width=right - left,
        height=bottom - top,
        rgb=crop.tobytes(),
        digest=f"{image.digest}#crop{index + 1}of{count}",
        detail="high",
    )
