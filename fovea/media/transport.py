"""An httpx transport that connects only to addresses it has resolved and checked itself.

Checking a URL's host and then letting the HTTP library connect by name leaves a gap: the name
is resolved a second time, and a DNS server that answers "public" to the check and "private" to
the connection (DNS rebinding) wins. So the check lives where the connection is made: the
httpcore network backend below resolves the host once, refuses the connection if any answer is
not public, and connects to the checked IP literal. Everything above it still works with the
host name, so the Host header, TLS SNI and certificate verification all use the original name,
and pooled connections are keyed by it (a connection verified for one name is never reused for
another that happens to share its IP). httpx's ``AsyncHTTPTransport`` cannot take a network
backend, hence this small transport over ``httpcore.AsyncConnectionPool``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

import anyio
import httpcore
import httpx

from fovea.media.addresses import Resolver, check_addresses

__all__ = ["CheckedTransport"]

# httpcore's exceptions and the httpx ones that callers catch, most specific first.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
)


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, refuses non-public answers (``AddressRefusedError``), then connects to
    each checked address in turn until one accepts."""

    def __init__(
        self, inner: httpcore.AsyncNetworkBackend, resolve: Resolver, *, allow_private: bool
    ) -> None:
        self._inner = inner
        self._resolve = resolve
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        check_addresses(host, addresses, allow_private=self._allow_private)
        failure = httpcore.ConnectError(f"no address to connect to for {host}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the image fetcher does not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncBaseTransport):
    """httpx requests over a connection pool whose every new connection is checked.

    ``network_backend`` is what finally opens sockets (tests pass one that records attempts).
    """

    def __init__(
        self,
        resolve: Resolver,
        *,
        allow_private: bool,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        inner = network_backend if network_backend is not None else httpcore.AnyIOBackend()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_CheckedBackend(inner, resolve, allow_private=allow_private),
            # httpx's default limits (httpcore's own default is 10 connections).
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Raise httpcore's exceptions as their httpx counterparts, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for core_type, httpx_type in _HTTPX_ERRORS:
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        raise
