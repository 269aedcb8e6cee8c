"""Remote images: ``http(s)://`` URLs fetched under the operator's policy, as bytes to decode.

Off unless the operator enables it. Every hop (the URL and each redirect, followed here, never
by httpx) is checked before it is requested: http or https, no credentials, a host on the
allow-list. The transport then resolves the host once and connects only to the public
addresses it checked (see ``fovea.media.transport``). The body is streamed and cut off past
the byte limit. Failures leave as ``ImageError`` or ``ImageFetchError`` (400) or
``PayloadTooLargeError`` (413), each naming the message part; no httpx exception escapes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpcore
import httpx

from fovea import __version__
from fovea.errors import FoveaError, ImageError, ImageFetchError, PayloadTooLargeError
from fovea.media.addresses import AddressRefusedError, HostNotFoundError, Resolver, resolve_host
from fovea.media.transport import CheckedTransport

if TYPE_CHECKING:
    from fovea.settings import Settings

__all__ = ["FetchPolicy", "ImageFetcher", "is_remote_url"]

log = logging.getLogger(__name__)

_SEND_AS_DATA_URL = "send the image as a base64 data URL (data:image/png;base64,...)"
_HEADERS = {
    "User-Agent": f"Fovea/{__version__} (image fetcher)",
    "Accept": "image/*",
    # Images are compressed already; a compressed transfer would only hide the real size.
    "Accept-Encoding": "identity",
}


def is_remote_url(url: str) -> bool:
    """Whether an ``image_url.url`` names an http or https resource (rather than data)."""
    return url.lstrip()[:6].lower().startswith(("http:", "https:"))


@dataclass(frozen=True)
class FetchPolicy:
    """What the operator allows the fetcher to do.

    ``allowed_domains``: an entry allows that host and its subdomains (``example.com`` allows
    ``img.example.com``); ``*`` allows every host. IP literals match an entry only exactly.
    Each hop must finish within ``connect_timeout_s + read_timeout_s``, so a server dripping
    bytes cannot hold a request for long. ``allow_private`` lets hosts resolve to private,
    loopback or link-local addresses: for intranets and tests, never for a public server.
    """

    enabled: bool
    allowed_domains: tuple[str, ...]
    connect_timeout_s: float
    read_timeout_s: float
    max_bytes: int
    max_redirects: int
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            enabled=settings.image_urls_enabled,
            allowed_domains=tuple(settings.image_url_allowed_domains),
            connect_timeout_s=settings.image_url_connect_timeout_s,
            read_timeout_s=settings.image_url_read_timeout_s,
            max_bytes=settings.max_image_bytes,
            max_redirects=settings.image_url_max_redirects,
            allow_private=settings.image_url_allow_private,
        )

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (ASCII, as in the URL) is on the allow-list."""
        host = host.lower().rstrip(".")
        is_ip = _is_ip_literal(host)
        for entry in self.allowed_domains:
            domain = entry.strip().lower().rstrip(".").removeprefix("*.")
            if domain == "*" or host == domain:
                return True
            if not is_ip and domain and host.endswith("." + domain):
                return True
        return False


class ImageFetcher:
    """Fetches image URLs under a ``FetchPolicy`` through one pooled ``httpx.AsyncClient``.

    ``resolve`` (host, port -> IP literals) and ``network_backend`` (what opens the sockets)
    are seams for tests; by default the system resolver and httpcore's anyio backend.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        resolve: Resolver = resolve_host,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        transport = CheckedTransport(
            resolve, allow_private=policy.allow_private, network_backend=network_backend
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            headers=_HEADERS,
            timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect by name, past the checks
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, *, position: str) -> bytes:
        """Return the body of the image at ``url``; ``position`` (``messages[0].content[2]``)
        names the part in errors. Raises ``ImageError`` (incl. ``ImageFetchError``) or
        ``PayloadTooLargeError`` only."""
        if is_remote_url(url) and not self.policy.enabled:
            raise ImageError(
                f"Remote image URLs are disabled on this server (image at {position}); "
                f"{_SEND_AS_DATA_URL}",
                param=position,
            )
        target = _parse(url.strip(), position)
        with _translated(position):
            return await self._follow(target, position)

    async def _follow(self, url: httpx.URL, position: str) -> bytes:
        for hop in range(self.policy.max_redirects + 1):
            self._check_url(url, position, redirected=hop > 0)
            with anyio.fail_after(self.policy.connect_timeout_s + self.policy.read_timeout_s):
                async with self._client.stream("GET", url) as response:
                    if not response.is_redirect:
                        return await self._read_body(response, position)
                    location = response.headers["location"]
            url = _redirect_target(url, location, position)
        raise ImageFetchError(
            f"The image URL at {position} redirected more than {self.policy.max_redirects} "
            "times; link the image itself",
            param=position,
        )

    def _check_url(self, url: httpx.URL, position: str, *, redirected: bool) -> None:
        """Refuse a hop the policy does not allow, before anything is resolved or sent."""
        where = f"{position} (after a redirect)" if redirected else position
        if url.scheme not in ("http", "https"):
            raise ImageError(
                f"Unsupported image URL scheme '{url.scheme}:' at {where}; "
                "only http and https images are fetched",
                param=position,
            )
        if url.userinfo:
            raise ImageError(
                f"The image URL at {where} contains credentials (user:password@); "
                "remove them, this server does not send credentials",
                param=position,
            )
        host = url.raw_host.decode("ascii")
        if not host:
            raise ImageError(f"The image URL at {where} has no host", param=position)
        if not self.policy.allows_host(host):
            raise ImageError(
                f"Image host {host} (image at {where}) is not allowed on this server; "
                f"ask the operator to add it to image_url_allowed_domains, or {_SEND_AS_DATA_URL}",
                param=position,
            )

    async def _read_body(self, response: httpx.Response, position: str) -> bytes:
        if not response.is_success:
            raise ImageFetchError(
                f"Could not fetch the image at {position}: the server answered HTTP "
                f"{response.status_code}; check the URL",
                param=position,
            )
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ImageFetchError(
                f"Could not fetch the image at {position}: the server sent it compressed "
                f"({encoding}); serve the image file as is",
                param=position,
            )
        limit = self.policy.max_bytes
        declared = _content_length(response)
        if declared is not None and declared > limit:
            raise _too_large(position, limit, declared)
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                raise _too_large(position, limit)
        if not body:
            raise ImageFetchError(
                f"The image at {position} is empty (the server sent 0 bytes)", param=position
            )
        return bytes(body)


def _parse(url: str, position: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ImageError(
            f"The image URL at {position} is not valid ({exc}); check the URL", param=position
        ) from None


def _redirect_target(url: httpx.URL, location: str, position: str) -> httpx.URL:
    try:
        return url.join(location)
    except httpx.InvalidURL:
        raise ImageFetchError(
            f"The image URL at {position} redirected to an invalid URL; link the image itself",
            param=position,
        ) from None


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _too_large(position: str, limit: int, size: int | None = None) -> PayloadTooLargeError:
    """``size`` is the declared length, when the server declared one."""
    found = f"is {size} bytes" if size is not None else "is larger than this server accepts"
    return PayloadTooLargeError(
        f"The image at {position} {found}; the limit is {limit / (1024 * 1024):.1f} MiB "
        f"({limit} bytes, max_image_bytes)",
        param=position,
    )


@contextlib.contextmanager
def _translated(position: str) -> Iterator[None]:
    """Turn what the network and httpx raise into Fovea's errors for the part at ``position``."""
    try:
        yield
    except FoveaError:
        raise
    except AddressRefusedError as exc:
        log.warning("refused image URL: %s", exc)
        raise ImageError(
            f"Refused to fetch the image at {position}: host {exc.host} is not a public address "
            f"({exc.reason}); this server fetches images from public addresses only",
            param=position,
        ) from None
    except HostNotFoundError as exc:
        raise ImageFetchError(
            f"Could not fetch the image at {position}: host {exc.host} not found; check the URL",
            param=position,
        ) from None
    except (TimeoutError, httpx.TimeoutException):
        raise ImageFetchError(
            f"Fetching the image at {position} timed out; use a faster host or {_SEND_AS_DATA_URL}",
            param=position,
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
        raise ImageFetchError(
            f"Could not fetch the image at {position}: {exc or type(exc).__name__}",
            param=position,
        ) from None
    except Exception as exc:
        log.exception("unexpected failure fetching an image URL")
        raise ImageFetchError(f"Could not fetch the image at {position}", param=position) from exc
