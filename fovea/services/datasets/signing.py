"""Signed, expiring URLs: how the SDK uploads and downloads dataset bytes without an API key.

In the cloud these are presigned object-store URLs; here Fovea serves them itself. A URL names
the method, the path and an expiry, signed with HMAC-SHA256 under the server's key. Replicas
that share a load balancer must share the key (``FOVEA_SIGNING_KEY``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from fovea.errors import PermissionDeniedError

KEY_BYTES = 32


class UrlSigner:
    def __init__(
        self,
        key: bytes,
        base_url: str,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")
        self._ttl_s = ttl_s
        self._clock = clock

    def url(self, method: str, path: str) -> str:
        """An absolute URL for ``method`` on ``path``, valid for the configured time."""
        expires = int(self._clock() + self._ttl_s)
        query = urlencode({"expires": expires, "signature": self._sign(method, path, expires)})
        return f"{self._base_url}{path}?{query}"

    def check(self, method: str, path: str, expires: str | None, signature: str | None) -> None:
        """Raise ``PermissionDeniedError`` unless the URL was signed here and has not expired."""
        if not expires or not signature or not expires.isdigit():
            raise PermissionDeniedError(
                "This URL needs the 'expires' and 'signature' parameters it was issued with"
            )
        expected = self._sign(method, path, int(expires))
        if not hmac.compare_digest(expected, signature):
            raise PermissionDeniedError("The URL's signature does not match: ask for a new URL")
        if int(expires) < self._clock():
            raise PermissionDeniedError("The URL has expired: ask for a new one")

    def _sign(self, method: str, path: str, expires: int) -> str:
        message = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def load_or_create_key(path: Path) -> bytes:
    """The key kept at ``path``, created (readable by the owner only) on first use."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex())
    try:
        # Two processes starting at once: the first link wins, the other reads it.
        os.link(temporary, path)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    finally:
        temporary.unlink()
    return key
