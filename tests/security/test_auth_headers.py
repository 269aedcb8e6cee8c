"""Two ``Authorization`` headers are refused with a 400 (two ``authorization`` metadata entries
on gRPC likewise), never one of them picked: a proxy in front could check one and Fovea use the
other. gRPC callers are throttled by their peer's address as HTTP clients are."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fovea.errors import AuthenticationError, InvalidRequestError, RateLimitError
from fovea.grpc.calls import caller
from fovea.services.access import AccessControl
from fovea.services.auth_throttle import AuthThrottle
from tests.conftest import Keys


@pytest.mark.parametrize("path", ["/v1/models", "/v1/files", "/metrics"])
@pytest.mark.parametrize("order", ["valid first", "valid last"])
def test_two_authorization_headers_are_a_400(
    client: TestClient, keys: Keys, path: str, order: str
) -> None:
    valid, other = f"Bearer {keys.api_key}", "Bearer fva.00000000000000000000." + "A" * 40
    pair = [valid, other] if order == "valid first" else [other, valid]
    response = client.get(path, headers=[("Authorization", value) for value in pair])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "duplicate_authorization"
    assert "2 Authorization headers" in error["message"]
    assert keys.api_key not in response.text


def test_the_same_key_twice_is_a_400_too(client: TestClient, keys: Keys) -> None:
    headers = [("Authorization", f"Bearer {keys.api_key}")] * 2
    assert client.get("/v1/models", headers=headers).status_code == 400
    assert client.get("/v1/models", headers=headers[:1]).status_code == 200


class _Context:
    """The two things ``caller`` reads from a gRPC call: its metadata and its peer."""

    def __init__(self, metadata: list[tuple[str, str]], peer: str) -> None:
        self._metadata = metadata
        self._peer = peer

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


@pytest.mark.anyio
async def test_grpc_calls_refuse_two_keys_and_throttle_by_peer(keys: Keys) -> None:
    access = AccessControl(keys.iam, throttle=AuthThrottle(2))
    valid = ("authorization", f"Api-Key {keys.api_key}")
    forged = (
        "authorization",
        f"Api-Key {keys.api_key[:-1]}{'B' if keys.api_key[-1] == 'A' else 'A'}",
    )
    with pytest.raises(InvalidRequestError, match="2 authorization"):
        await caller(access, _Context([valid, forged], "ipv4:203.0.113.7:4000"))

    attacker = _Context([forged], "ipv6:[2001:db8::7]:4000")
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await caller(access, attacker)
    with pytest.raises(RateLimitError):
        await caller(access, attacker)
    neighbour = _Context([valid], "ipv6:[2001:db8::8]:4001")  # the same /64: still served
    assert (await caller(access, neighbour)).key_id == keys.api_key.split(".")[1]
