"""Image intake for requests: every image part decoded off the event loop, in a bounded pool.

``http(s)://`` URLs are fetched first (when a fetcher is configured; it refuses them unless the
operator enabled remote images), then decoded like data URLs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

import anyio
from anyio import to_thread

from fovea.engine.types import ImageInput
from fovea.media.data_url import check_image_url
from fovea.media.fetch import ImageFetcher, is_remote_url
from fovea.media.images import DecodedImage, ImageLimits, decode_image_bytes, decode_image_url


@dataclass(frozen=True)
class ImageRequest:
    """One image part: where it is in the request, and how many pixels the model needs."""

    url: str
    position: str
    detail: str = "auto"
    min_side: int | None = None


class ImageIntake:
    """Decodes image URLs with at most ``threads`` decodes running at once, process-wide."""

    def __init__(
        self, limits: ImageLimits, threads: int, fetcher: ImageFetcher | None = None
    ) -> None:
        self.limits = limits
        self._limiter = anyio.CapacityLimiter(threads)
        self._fetcher = fetcher

    def check(self, url: str, *, position: str) -> None:
        """Refuse what decoding would refuse without decoding: a malformed or oversized data
        URL (remote URLs are checked when fetched)."""
        if self._fetcher is not None and is_remote_url(url):
            return
        check_image_url(url, position=position, max_bytes=self.limits.max_image_bytes)

    async def decode(self, wanted: ImageRequest) -> ImageInput:
        source: str | bytes = wanted.url
        if self._fetcher is not None and is_remote_url(wanted.url):
            source = await self._fetcher.fetch(wanted.url, position=wanted.position)
        decode = partial(self._decode_sync, source, wanted)
        image: DecodedImage = await to_thread.run_sync(decode, limiter=self._limiter)
        return ImageInput(
            width=image.width,
            height=image.height,
            rgb=image.rgb,
            # The same file scaled for another size is another input to the encoder.
            digest=f"{image.digest}@{wanted.min_side or 0}",
            detail=image.detail,
        )

    def _decode_sync(self, source: str | bytes, wanted: ImageRequest) -> DecodedImage:
        if isinstance(source, bytes):
            return decode_image_bytes(
                source,
                position=wanted.position,
                limits=self.limits,
                detail=wanted.detail,
                min_side=wanted.min_side,
            )
        return decode_image_url(
            source,
            position=wanted.position,
            limits=self.limits,
            detail=wanted.detail,
            min_side=wanted.min_side,
        )

    async def decode_all(self, wanted: list[ImageRequest]) -> list[ImageInput]:
        """Decode concurrently (bounded by the pool); results keep their order."""
        return list(await asyncio.gather(*(self.decode(each) for each in wanted)))
