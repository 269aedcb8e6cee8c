"""Access checks shared by every resource: who the caller is, its folder and its role there.

Keys and role bindings are read from the database once and then kept in memory for
``cache_ttl_s`` seconds, so the hot path of a request does no database work and no thread hop.
Every cached answer is checked again on each request (the secret's hash, revocation as last
read, the expiry against the clock): an expired key fails at once; a revoked key or a changed
role binding takes effect within ``cache_ttl_s``, or at once where the change is told
(``fovea.services.access_changes``: on the replica whose IAM API made it, and with Redis on
every replica).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from anyio import to_thread
from cachetools import TTLCache

from fovea.errors import AuthenticationError, FolderMismatchError
from fovea.iam.apikeys import IAM_SCOPES
from fovea.iam.checks import (
    UNKNOWN_KEY_MESSAGE,
    check_credentials,
    check_permission,
    grants,
    split_api_key,
)
from fovea.iam.roles import Permission, permission_name
from fovea.iam.service import IamService
from fovea.iam.types import KeyCredentials, Principal
from fovea.protocol.me import Identity
from fovea.services.auth_throttle import AuthThrottle

FOLDER_MISMATCH = "Specified folder ID does not match with service account"

# Entries kept at most; an attacker's random key ids are never cached (they match no key).
_CACHE_ENTRIES = 100_000


class AccessControl:
    """Resolves which folder a request acts on and checks the caller's role there."""

    def __init__(
        self,
        iam: IamService,
        *,
        cache_ttl_s: float = 2.0,
        timer: Callable[[], float] = time.monotonic,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self._iam = iam
        self._throttle = throttle
        self._keys: TTLCache[str, KeyCredentials] = TTLCache(_CACHE_ENTRIES, cache_ttl_s, timer)
        self._roles: TTLCache[tuple[str, str], frozenset[str]] = TTLCache(
            _CACHE_ENTRIES, cache_ttl_s, timer
        )

    async def authenticate(self, api_key: str | None, client: str | None = None) -> Principal:
        """The key's principal; a refused key from ``client`` (its address) counts against
        it, and past the throttle's limit is a 429 rather than a 401."""
        key_id, secret = split_api_key(api_key)
        try:
            return await self._check(key_id, secret)
        except AuthenticationError:
            if client is not None and self._throttle is not None:
                self._throttle.failed(client)
            raise

    async def _check(self, key_id: str, secret: str) -> Principal:
        credentials = self._keys.get(key_id)
        if credentials is not None:
            return check_credentials(credentials, secret, self._iam.now())
        credentials = await to_thread.run_sync(self._read_and_check, key_id, secret)
        self._keys[key_id] = credentials
        return credentials.principal

    def _read_and_check(self, key_id: str, secret: str) -> KeyCredentials:
        """On a cache miss, in one worker thread: read the key, check it, note its use."""
        credentials = self._iam.credentials(key_id)
        if credentials is None:
            raise AuthenticationError(UNKNOWN_KEY_MESSAGE)
        check_credentials(credentials, secret, self._iam.now())
        self._iam.record_use(credentials)
        return credentials

    def folder_for(
        self, principal: Principal, *, uri_folder: str | None, header_folder: str | None
    ) -> str:
        """The key's folder; a folder named in the model URI or a header must be the same."""
        if header_folder and header_folder != principal.folder_id:
            raise FolderMismatchError(
                f"{FOLDER_MISMATCH}: the OpenAI-Project / x-folder-id header names folder "
                f"{header_folder}, the API key belongs to folder {principal.folder_id}"
            )
        if uri_folder and uri_folder != principal.folder_id:
            raise FolderMismatchError(
                f"{FOLDER_MISMATCH}: the model URI names folder {uri_folder}, the API key "
                f"belongs to folder {principal.folder_id}",
                param="model",
            )
        return principal.folder_id

    def folder_named(self, principal: Principal, folder_id: str) -> str:
        """The key's folder; a ``folder_id`` field of the request, when set, must be the same."""
        if folder_id and folder_id != principal.folder_id:
            raise FolderMismatchError(
                f"{FOLDER_MISMATCH}: the request names folder {folder_id}, the API key "
                f"belongs to folder {principal.folder_id}",
                param="folder_id",
            )
        return principal.folder_id

    async def named_folder(
        self, principal: Principal, folder_id: str, permission: Permission
    ) -> str:
        """``folder_named``, then the caller's ``permission`` there: the folder acted on."""
        folder = self.folder_named(principal, folder_id)
        await self.require(principal, folder, permission)
        return folder

    def require_scope(self, principal: Principal, scopes: frozenset[str]) -> None:
        """Keys without one of ``scopes`` are refused as the cloud does: as unknown keys."""
        if not principal.scopes & scopes:
            raise AuthenticationError(UNKNOWN_KEY_MESSAGE)

    async def require(self, principal: Principal, folder_id: str, permission: Permission) -> None:
        roles = await self._roles_on(principal.service_account_id, folder_id)
        check_permission(roles, principal, folder_id, permission)

    async def holds(self, principal: Principal, folder_id: str, permission: Permission) -> bool:
        """Whether ``require`` would pass."""
        return grants(await self._roles_on(principal.service_account_id, folder_id), permission)

    async def identity(self, principal: Principal) -> Identity:
        """What the calling key is and may do in its folder (``GET /v1/me``): what a client,
        the web console among them, asks instead of trying a write to see whether it fails."""
        folder_id = principal.folder_id
        roles = await self._roles_on(principal.service_account_id, folder_id)
        allowed = [p for p in Permission if grants(roles, p)]
        iam_roles = {Permission.IAM_ADMIN, Permission.SYSTEM_ADMIN} & set(allowed)
        return Identity(
            key_id=principal.key_id,
            service_account_id=principal.service_account_id,
            folder_id=folder_id,
            scopes=sorted(principal.scopes),
            roles=sorted(roles),
            permissions=[permission_name(p) for p in allowed],
            iam_api=bool(iam_roles and principal.scopes & IAM_SCOPES),
        )

    def forget_key(self, key_id: str) -> None:
        """Drop a cached key (just revoked here): its next use reads the database."""
        self._keys.pop(key_id, None)

    def forget_roles(self, service_account_id: str, folder_id: str) -> None:
        """Drop an account's cached roles on a folder (just changed here)."""
        self._roles.pop((service_account_id, folder_id), None)

    def forget_all(self) -> None:
        """Drop every cached key and binding (changes may have been missed)."""
        self._keys.clear()
        self._roles.clear()

    async def _roles_on(self, service_account_id: str, folder_id: str) -> frozenset[str]:
        binding = (service_account_id, folder_id)
        roles = self._roles.get(binding)
        if roles is None:
            roles = await to_thread.run_sync(self._iam.roles, *binding)
            self._roles[binding] = roles
        return roles
