"""Loaded Pillow images to 8-bit RGB: transparency flattened on white, deep grays scaled."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["to_rgb"]

WHITE = (255, 255, 255)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_DEEP_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_MAX_16BIT = 65535


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as mode ``RGB`` (the same object when it already is, without alpha)."""
    if image.mode in _DEEP_GRAY_MODES:
        image = _gray_to_8bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten_on_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _gray_to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's own I;16 -> L conversion clips everything above 255 to white instead of scaling.
    # The formats Fovea accepts only store 16-bit grays here, so 0..65535 maps onto 0..255.
    values = np.clip(np.asarray(image), 0, _MAX_16BIT).astype(np.uint32)
    scaled = ((values * 255 + _MAX_16BIT // 2) // _MAX_16BIT).astype(np.uint8)
    return Image.fromarray(scaled)


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = rgba.getchannel("A")
    lowest_alpha, _ = alpha.getextrema()
    if lowest_alpha == 255:
        return rgba.convert("RGB")
    flattened = Image.new("RGB", rgba.size, WHITE)
    flattened.paste(rgba, mask=alpha)
    return flattened
