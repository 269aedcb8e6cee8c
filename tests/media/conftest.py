"""Fixtures for the image intake tests."""

from __future__ import annotations

import pytest

from fovea.media.images import ImageLimits

from .builders import png_bomb


@pytest.fixture
def limits() -> ImageLimits:
    return ImageLimits(
        max_image_bytes=2 * 1024 * 1024, max_image_pixels=4_000_000, max_images_per_request=16
    )


@pytest.fixture(scope="session")
def bomb_20000() -> bytes:
    return png_bomb(20000, 20000)
