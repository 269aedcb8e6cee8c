"""Which addresses the image fetcher may connect to, and resolving host names once."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import anyio
import pytest

from fovea.media.addresses import (
    AddressRefusedError,
    HostNotFoundError,
    address_refusal,
    check_addresses,
    resolve_host,
)

ANY = "(any reason)"  # the label of special-purpose ranges moved between Python releases

REFUSED = {
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "169.254.169.254": "link-local",  # cloud metadata
    "169.254.0.1": "link-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "100.64.0.1": "shared (carrier-grade NAT)",
    "100.127.255.254": "shared (carrier-grade NAT)",
    "fec0::1": "site-local",
    "192.0.2.1": ANY,  # documentation
    "198.18.0.1": ANY,  # benchmarking
    "192.0.0.1": ANY,  # IETF protocol assignments
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:a00:1::1": "private, tunnelled",  # 6to4 of 10.0.0.1
    "2002:7f00:1::1": "loopback, tunnelled",  # 6to4 of 127.0.0.1
}

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "reason"), sorted(REFUSED.items()))
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    found = address_refusal(ipaddress.ip_address(address))
    assert found is not None
    assert reason in (found, ANY)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_one_private_answer_refuses_the_whole_name() -> None:
    with pytest.raises(AddressRefusedError) as caught:
        check_addresses("mixed.test", ["8.8.8.8", "10.1.2.3"], allow_private=False)
    assert (caught.value.host, caught.value.address) == ("mixed.test", "10.1.2.3")
    assert caught.value.reason == "private"


def test_allow_private_lets_every_address_through() -> None:
    check_addresses("intranet.test", ["10.1.2.3", "127.0.0.1"], allow_private=True)


@pytest.mark.parametrize(
    ("host", "expected"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("0:0::1", "::1")]
)
def test_ip_literals_are_not_looked_up(host: str, expected: str) -> None:
    assert asyncio.run(resolve_host(host, 80)) == [expected]


def test_numeric_host_forms_resolve_to_the_address_they_mean() -> None:
    # 2130706433 and 0x7f.1 are 127.0.0.1 to the system resolver: the check sees that.
    assert asyncio.run(resolve_host("2130706433", 80)) == ["127.0.0.1"]
    assert asyncio.run(resolve_host("0x7f.1", 80)) == ["127.0.0.1"]


def test_localhost_resolves_to_loopback() -> None:
    addresses = asyncio.run(resolve_host("localhost", 80))
    assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def test_an_unknown_name_is_host_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_answer(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(anyio, "getaddrinfo", no_answer)  # no DNS query leaves the machine
    with pytest.raises(HostNotFoundError) as caught:
        asyncio.run(resolve_host("no-such-host.test", 80))
    assert caught.value.host == "no-such-host.test"
