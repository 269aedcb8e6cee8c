"""Which network addresses the image fetcher may connect to, and host name resolution.

Fovea fetches client-named URLs, so without a check a request could make it reach the
machine's own services, the LAN or a cloud metadata endpoint (SSRF). Only public unicast
addresses pass ``address_refusal``; an IPv4-mapped or NAT64 IPv6 address is judged by the IPv4
address it reaches, and a 6to4 or Teredo one passes only if its IPv4 end does too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

import anyio

__all__ = [
    "AddressRefusedError",
    "HostNotFoundError",
    "IPAddress",
    "Resolver",
    "address_refusal",
    "check_addresses",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# ``resolve(host, port)``: the addresses to try, as IP literals. Tests inject their own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT; not "private" to Python
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Checked in order; the first that applies names the refusal. ``is_global`` catches the rest
# (documentation, benchmarking and other special-purpose ranges).
_KINDS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


class AddressRefusedError(Exception):
    """A host resolved to an address the policy refuses; raised before any connection."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address} ({reason})")
        self.host = host
        self.address = address
        self.reason = reason


class HostNotFoundError(Exception):
    """The host name does not resolve."""

    def __init__(self, host: str) -> None:
        super().__init__(f"could not resolve {host}")
        self.host = host


def address_refusal(address: IPAddress) -> str | None:
    """Why Fovea will not connect to ``address`` (``"loopback"``, ``"private"``, ...), or
    ``None`` for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        if translated is not None:
            return address_refusal(translated)  # the IPv4 address is the one reached
        tunnelled = _tunnelled_ipv4(address)
        if tunnelled is not None and (reason := address_refusal(tunnelled)) is not None:
            return f"{reason}, tunnelled"
    for attribute, reason in _KINDS:
        if getattr(address, attribute):
            return reason
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if not address.is_global:
        return "special-purpose"
    return None


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (``::ffff:a.b.c.d``) or NAT64 address reaches."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 end of a 6to4 or Teredo address (Teredo's client; its server part is public)."""
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def check_addresses(host: str, addresses: Sequence[str], *, allow_private: bool) -> None:
    """Raise ``AddressRefusedError`` if any address is refused: one bad answer is enough to
    distrust a name, and trying the good ones first would make the result order-dependent."""
    if allow_private:
        return
    for text in addresses:
        reason = address_refusal(ipaddress.ip_address(text))
        if reason is not None:
            raise AddressRefusedError(host, text, reason)


async def resolve_host(host: str, port: int) -> list[str]:
    """Resolve ``host`` once through the system resolver; an IP literal is returned as is.

    Raises ``HostNotFoundError``. Scope ids (``fe80::1%eth0``) are kept: such addresses are
    refused as link-local anyway.
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise HostNotFoundError(host) from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))
    if not addresses:
        raise HostNotFoundError(host)
    return addresses
