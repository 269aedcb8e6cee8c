"""Image intake for requests: every image part decoded off the event loop, in a bounded pool.

``http(s)://`` URLs are fetched first (when a fetcher is configured; it refuses them unless the
operator enabled remote images), then decoded like data URLs.
"""

from __future__ import annotations

import asyncio
from functools import partial

import anyio
from anyio import to_thread

from fovea.engine.types import ImageInput
from fovea.media.fetch import ImageFetcher, is_remote_url
from fovea.media.images import DecodedImage, ImageLimits, decode_image_bytes, decode_image_url


class ImageIntake:
    """Decodes image URLs with at most ``threads`` decodes running at once, process-wide."""

    def __init__(
        self, limits: ImageLimits, threads: int, fetcher: ImageFetcher | None = None
    ) -> None:
        self.limits = limits
        self._limiter = anyio.CapacityLimiter(threads)
        self._fetcher = fetcher

    async def decode(self, url: str, *, position: str, detail: str) -> ImageInput:
        if self._fetcher is not None and is_remote_url(url):
            encoded = await self._fetcher.fetch(url, position=position)
            decode = partial(
                decode_image_bytes, encoded, position=position, limits=self.limits, detail=detail
            )
        else:
            decode = partial(
                decode_image_url, url, position=position, limits=self.limits, detail=detail
            )
        image: DecodedImage = await to_thread.run_sync(decode, limiter=self._limiter)
        return ImageInput(
            width=image.width, height=image.height, rgb=image.rgb, digest=image.digest
        )

    async def decode_all(self, items: list[tuple[str, str, str]]) -> list[ImageInput]:
        """Decode ``(url, position, detail)`` triples concurrently; results keep their order."""
        return list(
            await asyncio.gather(
                *(self.decode(url, position=pos, detail=detail) for url, pos, detail in items)
            )
        )
