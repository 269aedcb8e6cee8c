"""Image intake for requests: every image part decoded off the event loop, in a bounded pool."""

from __future__ import annotations

import asyncio
from functools import partial

import anyio
from anyio import to_thread

from fovea.engine.types import ImageInput
from fovea.media.images import DecodedImage, ImageLimits, decode_image_url


class ImageIntake:
    """Decodes image URLs with at most ``threads`` decodes running at once, process-wide."""

    def __init__(self, limits: ImageLimits, threads: int) -> None:
        self.limits = limits
        self._limiter = anyio.CapacityLimiter(threads)

    async def decode(self, url: str, *, position: str, detail: str) -> ImageInput:
        decode = partial(
            decode_image_url, url, position=position, limits=self.limits, detail=detail
        )
        image: DecodedImage = await to_thread.run_sync(decode, limiter=self._limiter)
        return ImageInput(
            width=image.width,
            height=image.height,
            rgb=image.rgb,
            digest=image.digest,
            detail=image.detail,
        )

    async def decode_all(self, items: list[tuple[str, str, str]]) -> list[ImageInput]:
        """Decode ``(url, position, detail)`` triples concurrently; results keep their order."""
        return list(
            await asyncio.gather(
                *(self.decode(url, position=pos, detail=detail) for url, pos, detail in items)
            )
        )
