"""Decode no more pixels than the engine needs: the reduced size, JPEG draft decoding, resizing.

An engine that declares ``min_side`` needs at least that many pixels on each side (Gemma 3's
preprocessor squashes every image to a 896x896 square, so each side must keep 896). A larger
image is scaled down, aspect kept, until its shorter side is ``min_side``; an image with a side
already at or under ``min_side`` is never scaled, up or down: a 1x30000 strip stays 1x30000.
"""

from __future__ import annotations

from PIL import Image

__all__ = ["draft", "reduced_size", "resize_to"]

Size = tuple[int, int]

# JPEG (and MPO, a JPEG with extra pictures) can be decoded at 1/2, 1/4 or 1/8 scale by libjpeg.
_DRAFTABLE = frozenset({"JPEG", "MPO"})
# Pillow first shrinks by the largest integer factor (a box filter: fast, an area average) that
# leaves the bilinear resampling after it at least this factor. On a 4000x3000 photo scaled to
# 1195x896 that is 25-40% faster than one bilinear pass, and differs from a Lanczos resize of
# every pixel by 0.7 of 255 on average (one bilinear pass: 0.45; a JPEG q90 re-encode: 0.9).
# Under a factor of 2 there is nothing to shrink first, and the extra pass costs 25%
# (1600x1200 to 1195x896: 24 ms against 19 ms), so it is used from a factor of 2 only.
_REDUCING_GAP = 1.0
_MIN_REDUCING_FACTOR = 2.0


def reduced_size(size: Size, min_side: int | None) -> Size | None:
    """The size to scale ``size`` down to for ``min_side``, or None when it needs no scaling.

    The scale is ``max(min_side / width, min_side / height)``, used only when under 1: the
    shorter side lands on ``min_side`` and the longer keeps the aspect ratio. The formula is
    symmetric, so the reduced size of a turned picture is the turned reduced size.
    """
    if min_side is None:
        return None
    if min_side < 1:
        raise ValueError(f"min_side must be at least 1, not {min_side}")
    width, height = size
    scale = max(min_side / width, min_side / height)
    if scale >= 1:
        return None
    return max(min_side, round(width * scale)), max(min_side, round(height * scale))


def draft(image: Image.Image, target: Size | None) -> None:
    """Before ``load()``: have libjpeg decode a JPEG at the smallest 1/2, 1/4 or 1/8 scale that
    keeps both sides at or over ``target``. A no-op for other formats or no target."""
    if target is not None and image.format in _DRAFTABLE:
        image.draft("RGB", target)


def resize_to(image: Image.Image, target: Size | None) -> Image.Image:
    """Scale a loaded RGB ``image`` down to ``target``; the same image when it is already that
    size or there is no target."""
    if target is None or image.size == target:
        return image
    factor = min(image.width / target[0], image.height / target[1])
    gap = _REDUCING_GAP if factor >= _MIN_REDUCING_FACTOR else None
    return image.resize(target, Image.Resampling.BILINEAR, reducing_gap=gap)
