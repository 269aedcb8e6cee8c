"""Fetching http(s) image URLs: allowed hosts work, everything else is refused before it connects.

Every request goes to a local server on 127.0.0.1. Tests that play a public host resolve a fake
name (``public.test``) to a public address through an injected resolver, and an injected
network backend reroutes that address to the local server; it opens no socket to anything but
loopback and records every attempt, so a test can assert that a refused address was never tried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator, Sequence

import httpcore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea.errors import FoveaError, ImageError, ImageFetchError, PayloadTooLargeError
from fovea.media.addresses import HostNotFoundError, Resolver, resolve_host
from fovea.media.fetch import FetchPolicy, ImageFetcher, is_remote_url
from fovea.settings import Settings
from tests.image_server import CAT_PNG, ImageServer, TlsHelloListener, redirect_path, serve_images

from .builders import POSITION

PUBLIC_IP = "93.184.215.14"  # stands in for a public host; the backend reroutes it to loopback

LOCAL = FetchPolicy(
    enabled=True,
    allowed_domains=("localhost",),
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
    max_bytes=1024 * 1024,
    max_redirects=3,
    allow_private=True,
)
PUBLIC_ONLY = dataclasses.replace(LOCAL, allowed_domains=("*",), allow_private=False)


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records every connection attempt; connects to loopback only (``PUBLIC_IP`` rerouted)."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        target = "127.0.0.1" if host == PUBLIC_IP else host
        if not ipaddress.ip_address(target).is_loopback:
            raise httpcore.ConnectError(f"test backend: not leaving the machine for {host}")
        return await self._inner.connect_tcp(target, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class FakeDns:
    """Answers from a table; IP literals and localhost as the system does; no DNS query."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.queries: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.queries.append(host)
        if host in self.table:
            return self.table[host]
        if host == "localhost" or _is_ip(host):
            return await resolve_host(host, port)
        raise HostNotFoundError(host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def fetch(
    url: str,
    policy: FetchPolicy = LOCAL,
    *,
    resolve: Resolver = resolve_host,
    backend: httpcore.AsyncNetworkBackend | None = None,
) -> bytes:
    async def run() -> bytes:
        fetcher = ImageFetcher(policy, resolve=resolve, network_backend=backend)
        try:
            return await fetcher.fetch(url, position=POSITION)
        finally:
            await fetcher.aclose()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with serve_images() as running:
        yield running


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns({"public.test": [PUBLIC_IP], "cdn.public.test": [PUBLIC_IP]})


def test_an_allowed_host_is_fetched(server: ImageServer) -> None:
    assert fetch(server.url("/cat.png", host="localhost")) == CAT_PNG
    assert server.requests[-1] == ("/cat.png", f"localhost:{server.port}")


def test_disabled_fetcher_refuses_with_the_data_url_wording(server: ImageServer) -> None:
    disabled = dataclasses.replace(LOCAL, enabled=False)
    before = len(server.requests)
    with pytest.raises(ImageError) as caught:
        fetch(server.url("/cat.png", host="localhost"), disabled)
    assert caught.value.message == (
        f"Remote image URLs are disabled on this server (image at {POSITION}); "
        "send the image as a base64 data URL (data:image/png;base64,...)"
    )
    assert caught.value.param == POSITION and caught.value.status_code == 400
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://localhost/cat.png", "gopher://localhost/", "data:,x"]
)
def test_only_http_and_https_are_fetched(url: str, backend: RecordingBackend) -> None:
    with pytest.raises(ImageError, match="Unsupported image URL scheme"):
        fetch(url, dataclasses.replace(LOCAL, allowed_domains=("*",)), backend=backend)
    assert backend.attempts == []


def test_credentials_in_the_url_are_refused(server: ImageServer, backend: RecordingBackend) -> None:
    url = f"http://user:secret@localhost:{server.port}/cat.png"
    with pytest.raises(ImageError, match=r"credentials \(user:password@\)"):
        fetch(url, backend=backend)
    assert backend.attempts == []


def test_a_host_off_the_allow_list_is_refused_before_resolving(server: ImageServer) -> None:
    dns, backend = FakeDns({}), RecordingBackend()
    policy = dataclasses.replace(LOCAL, allowed_domains=("example.com",))
    with pytest.raises(ImageError) as caught:
        fetch(server.url("/cat.png", host="localhost"), policy, resolve=dns, backend=backend)
    assert "Image host localhost" in caught.value.message
    assert "image_url_allowed_domains" in caught.value.message
    assert dns.queries == [] and backend.attempts == []


@pytest.mark.parametrize(
    ("entries", "host", "allowed"),
    [
        (("example.com",), "example.com", True),
        (("example.com",), "img.example.com", True),
        (("example.com",), "a.b.example.com", True),
        (("Example.COM.",), "IMG.example.com.", True),
        (("*.example.com",), "img.example.com", True),
        (("example.com",), "badexample.com", False),
        (("example.com",), "example.com.evil.net", False),
        (("img.example.com",), "example.com", False),
        (("*",), "anything.net", True),
        (("*",), "8.8.8.8", True),
        (("0.1",), "127.0.0.1", False),  # IP literals match only exactly
        (("127.0.0.1",), "127.0.0.1", True),
        ((), "example.com", False),
    ],
)
def test_allow_list_matches_hosts_and_their_subdomains(
    entries: tuple[str, ...], host: str, allowed: bool
) -> None:
    assert dataclasses.replace(LOCAL, allowed_domains=entries).allows_host(host) is allowed


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "169.254.169.254",
        "10.0.0.1",
        "[::1]",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "100.64.0.1",
        "2130706433",  # 127.0.0.1 as one number
    ],
)
def test_non_public_addresses_are_refused_before_connecting(
    host: str, server: ImageServer, backend: RecordingBackend
) -> None:
    before = len(server.requests)
    with pytest.raises(ImageError) as caught:
        fetch(server.url("/cat.png", host=host), PUBLIC_ONLY, backend=backend)
    assert "is not a public address" in caught.value.message
    assert POSITION in caught.value.message and caught.value.status_code == 400
    assert backend.attempts == []
    assert len(server.requests) == before


def test_a_name_with_one_private_answer_is_refused(backend: RecordingBackend) -> None:
    dns = FakeDns({"mixed.test": [PUBLIC_IP, "10.0.0.7"]})
    with pytest.raises(ImageError, match=r"host mixed\.test is not a public address"):
        fetch("http://mixed.test/cat.png", PUBLIC_ONLY, resolve=dns, backend=backend)
    assert backend.attempts == []


def test_a_public_host_connects_to_the_checked_address_with_its_own_host_header(
    server: ImageServer, dns: FakeDns, backend: RecordingBackend
) -> None:
    url = f"http://public.test:{server.port}/cat.png"
    assert fetch(url, PUBLIC_ONLY, resolve=dns, backend=backend) == CAT_PNG
    assert dns.queries == ["public.test"]
    assert backend.attempts == [(PUBLIC_IP, server.port)]
    assert server.requests[-1] == ("/cat.png", f"public.test:{server.port}")


def test_the_name_is_resolved_once_so_rebinding_cannot_swap_the_address(
    server: ImageServer, backend: RecordingBackend
) -> None:
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)  # public for the check, loopback for any second look-up

    url = f"http://rebind.test:{server.port}/cat.png"
    assert fetch(url, PUBLIC_ONLY, resolve=rebinding, backend=backend) == CAT_PNG
    assert backend.attempts == [(PUBLIC_IP, server.port)]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/cat.png",
        "http://localhost:{port}/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]:{port}/cat.png",
        "http://0.0.0.0:{port}/cat.png",
    ],
)
def test_a_redirect_to_a_non_public_address_is_refused(
    target: str, server: ImageServer, dns: FakeDns, backend: RecordingBackend
) -> None:
    location = target.format(port=server.port)
    url = f"http://public.test:{server.port}{redirect_path(location)}"
    before = len(server.requests)
    with pytest.raises(ImageError, match="is not a public address"):
        fetch(url, PUBLIC_ONLY, resolve=dns, backend=backend)
    assert backend.attempts == [(PUBLIC_IP, server.port)]  # the first hop only
    assert len(server.requests) == before + 1


def test_a_redirect_to_an_allowed_public_host_is_followed(
    server: ImageServer, dns: FakeDns, backend: RecordingBackend
) -> None:
    policy = dataclasses.replace(PUBLIC_ONLY, allowed_domains=("public.test",))
    location = f"http://cdn.public.test:{server.port}/cat.png"
    url = f"http://public.test:{server.port}{redirect_path(location)}"
    assert fetch(url, policy, resolve=dns, backend=backend) == CAT_PNG
    assert dns.queries == ["public.test", "cdn.public.test"]
    assert server.requests[-1] == ("/cat.png", f"cdn.public.test:{server.port}")


@pytest.mark.parametrize(
    ("location", "refusal"),
    [
        ("http://evil.test/cat.png", "Image host evil.test"),
        ("file:///etc/passwd", "Unsupported image URL scheme 'file:'"),
        ("http://user:pw@public.test/cat.png", "credentials"),
    ],
)
def test_each_redirect_is_checked_against_the_policy(
    location: str, refusal: str, server: ImageServer, dns: FakeDns, backend: RecordingBackend
) -> None:
    policy = dataclasses.replace(PUBLIC_ONLY, allowed_domains=("public.test",))
    url = f"http://public.test:{server.port}{redirect_path(location)}"
    with pytest.raises(ImageError) as caught:
        fetch(url, policy, resolve=dns, backend=backend)
    assert refusal in caught.value.message and "(after a redirect)" in caught.value.message
    assert dns.queries == ["public.test"]


def test_redirects_stop_at_the_limit(server: ImageServer) -> None:
    before = len(server.requests)
    policy = dataclasses.replace(LOCAL, max_redirects=2)
    with pytest.raises(ImageFetchError, match="redirected more than 2 times") as caught:
        fetch(server.url("/loop", host="localhost"), policy)
    assert caught.value.code == "image_fetch_failed"
    assert len(server.requests) == before + 3


def test_a_declared_length_over_the_limit_is_refused_unread(server: ImageServer) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        fetch(server.url("/huge-declared", host="localhost"))
    assert caught.value.status_code == 413
    assert "1048576 bytes, max_image_bytes" in caught.value.message


def test_a_body_growing_past_the_limit_is_cut_off(server: ImageServer) -> None:
    with pytest.raises(PayloadTooLargeError, match="larger than this server accepts"):
        fetch(server.url("/huge-streamed", host="localhost"))


def test_an_error_status_names_the_code(server: ImageServer) -> None:
    with pytest.raises(ImageFetchError, match="HTTP 404") as caught:
        fetch(server.url("/missing.png", host="localhost"))
    assert caught.value.status_code == 400 and caught.value.param == POSITION


def test_a_slow_server_times_out(server: ImageServer) -> None:
    quick = dataclasses.replace(LOCAL, read_timeout_s=0.3)
    with pytest.raises(ImageFetchError, match="timed out"):
        fetch(server.url("/slow", host="localhost"), quick)


def test_a_dripping_body_hits_the_hop_deadline(server: ImageServer) -> None:
    # Each byte comes well within the read timeout; the whole body would take 10 s.
    quick = dataclasses.replace(LOCAL, connect_timeout_s=0.2, read_timeout_s=0.5)
    with pytest.raises(ImageFetchError, match="timed out"):
        fetch(server.url("/drip", host="localhost"), quick)


@pytest.mark.parametrize(("path", "reason"), [("/gzip", "compressed"), ("/empty", "is empty")])
def test_unusable_bodies_are_refused(path: str, reason: str, server: ImageServer) -> None:
    with pytest.raises(ImageFetchError, match=reason):
        fetch(server.url(path, host="localhost"))


def test_unknown_hosts_and_closed_ports_are_fetch_errors(backend: RecordingBackend) -> None:
    with pytest.raises(ImageFetchError, match=r"host nowhere\.test not found"):
        fetch("http://nowhere.test/a.png", PUBLIC_ONLY, resolve=FakeDns({}), backend=backend)
    closed = dataclasses.replace(LOCAL, allowed_domains=("127.0.0.1",))
    with pytest.raises(ImageFetchError, match="Could not fetch the image"):
        fetch("http://127.0.0.1:9/cat.png", closed, backend=backend)


def test_https_verifies_the_host_name_while_connecting_to_the_checked_address(
    dns: FakeDns, backend: RecordingBackend
) -> None:
    listener = TlsHelloListener()
    try:
        with pytest.raises(ImageFetchError):  # the listener hangs up after the ClientHello
            fetch(
                f"https://public.test:{listener.port}/cat.png",
                PUBLIC_ONLY,
                resolve=dns,
                backend=backend,
            )
    finally:
        listener.close()
    assert backend.attempts == [(PUBLIC_IP, listener.port)]
    assert listener.server_names == ["public.test"]


@pytest.mark.parametrize(
    ("url", "remote"),
    [
        ("https://a.test/x.png", True),
        ("  HTTP://a.test/x.png", True),
        ("data:image/png;base64,AAAA", False),
        ("iVBORw0KGgo=", False),
        ("ftp://a.test/x.png", False),
    ],
)
def test_remote_urls_are_told_from_data(url: str, remote: bool) -> None:
    assert is_remote_url(url) is remote


def test_policy_from_settings_and_a_comma_separated_domain_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOVEA_IMAGE_URLS_ENABLED", "true")
    monkeypatch.setenv("FOVEA_IMAGE_URL_ALLOWED_DOMAINS", "example.com, cdn.example.org")
    policy = FetchPolicy.from_settings(Settings(max_image_bytes=1234))
    assert policy.enabled and not policy.allow_private
    assert policy.allowed_domains == ("example.com", "cdn.example.org")
    assert (policy.max_bytes, policy.max_redirects) == (1234, 3)
    monkeypatch.setenv("FOVEA_IMAGE_URL_ALLOWED_DOMAINS", '["a.test", "*"]')
    assert Settings().image_url_allowed_domains == ["a.test", "*"]
    monkeypatch.delenv("FOVEA_IMAGE_URLS_ENABLED")
    assert not FetchPolicy.from_settings(Settings()).enabled  # off by default


@given(
    st.one_of(
        st.text(max_size=60),
        st.builds("http://{}".format, st.text(max_size=40)),
        st.builds("https://{}/x.png".format, st.ip_addresses().map(str)),
    )
)
@settings(max_examples=100, deadline=None)
def test_whatever_the_url_only_fovea_errors_come_out(url: str) -> None:
    backend = RecordingBackend()
    with pytest.raises(FoveaError) as caught:
        fetch(url, PUBLIC_ONLY, resolve=FakeDns({}), backend=backend)
    assert POSITION in caught.value.message
    assert caught.value.status_code in (400, 413)
