"""The IAM API's rules: who may manage which folder, and the cloud's shapes for the answers.

A caller's key needs the scope ``yc.iam.manage``, and its service account ``ai.admin`` on the
folder concerned, or ``system.admin`` (which alone may create folders, read every folder's
audit log, and change a ``system.admin`` account, its roles or its keys: a folder's admin
cannot raise itself above the folder). Every change is made by ``IamService`` with the caller's
key id as the audit log's actor; a revoked key or changed role is forgotten by this replica's
auth cache at once, and with Redis by every replica's (``AccessChanges``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

from anyio import to_thread
from pydantic import BaseModel

from fovea.errors import InvalidRequestError, PermissionDeniedError
from fovea.iam.apikeys import DEFAULT_SCOPES, IAM_SCOPES, Scope
from fovea.iam.ids import new_operation_id
from fovea.iam.roles import Permission, Role
from fovea.iam.service import IamService
from fovea.iam.types import ApiKeyInfo, BindingChange, Folder, Principal, ServiceAccount
from fovea.protocol import iam as wire
from fovea.services.access import AccessControl
from fovea.services.access_changes import AccessChanges
from fovea.store.audit import AuditEntry

T = TypeVar("T")
ResponseT = TypeVar("ResponseT", bound=BaseModel)


class IamAdminService:
    def __init__(
        self, iam: IamService, access: AccessControl, changes: AccessChanges | None = None
    ) -> None:
        self._iam = iam
        self._access = access
        self._changes = changes if changes is not None else AccessChanges(access)

    # -- folders -------------------------------------------------------------------------

    async def create_folder(
        self, principal: Principal, body: wire.CreateFolderRequest
    ) -> wire.Operation[wire.Folder]:
        await self._require_system_admin(principal)
        folder = await self._run(
            self._iam.create_folder, body.name, body.description, actor=principal.key_id
        )
        return self._done(principal, "Create folder", {"folderId": folder.id}, _folder(folder))

    async def list_folders(self, principal: Principal) -> wire.FolderList:
        """Every folder for a ``system.admin``; the caller's own for a folder's admin."""
        _require_iam_scope(principal)
        if await self._is_system_admin(principal):
            folders = await self._run(self._iam.list_folders)
        else:
            await self._require_admin(principal, principal.folder_id)
            folders = [await self._run(self._iam.get_folder, principal.folder_id)]
        return wire.FolderList(folders=[_folder(folder) for folder in folders])

    async def get_folder(self, principal: Principal, folder_id: str) -> wire.Folder:
        return _folder(await self._folder_to_admin(principal, folder_id))

    # -- service accounts ----------------------------------------------------------------

    async def create_service_account(
        self, principal: Principal, body: wire.CreateServiceAccountRequest
    ) -> wire.Operation[wire.ServiceAccount]:
        folder = await self._folder_to_admin(principal, body.folder_id)
        account = await self._run(
            self._iam.create_service_account,
            folder.id,
            body.name,
            body.description,
            actor=principal.key_id,
        )
        metadata = {"serviceAccountId": account.id}
        return self._done(principal, "Create service account", metadata, _account(account))

    async def list_service_accounts(
        self, principal: Principal, folder_id: str
    ) -> wire.ServiceAccountList:
        folder = await self._folder_to_admin(principal, folder_id)
        accounts = await self._run(self._iam.list_service_accounts, folder.id)
        return wire.ServiceAccountList(service_accounts=[_account(a) for a in accounts])

    async def get_service_account(
        self, principal: Principal, service_account_id: str
    ) -> wire.ServiceAccount:
        return _account(await self._account_to_admin(principal, service_account_id))

    # -- access bindings -----------------------------------------------------------------

    async def update_access_bindings(
        self, principal: Principal, folder_id: str, body: wire.UpdateAccessBindingsRequest
    ) -> wire.Operation[wire.Empty]:
        folder = await self._folder_to_admin(principal, folder_id)
        changes = [
            BindingChange(
                add=delta.action == "ADD",
                service_account=delta.access_binding.subject.id,
                role=delta.access_binding.role_id,
            )
            for delta in body.access_binding_deltas
        ]
        accounts = set()
        for change in changes:
            account = await self._run(
                self._iam.get_service_account, change.service_account, folder.id
            )
            accounts.add(account.id)
            if change.role == Role.SYSTEM_ADMIN:
                await self._require_system_admin(principal)
            else:
                await self._require_may_change(principal, account)
        await self._run(self._iam.update_bindings, folder.id, changes, actor=principal.key_id)
        for account_id in accounts:
            await self._changes.roles_changed(account_id, folder.id)
        metadata = {"resourceId": folder.id}
        return self._done(principal, "Update access bindings", metadata, wire.Empty())

    async def list_access_bindings(
        self, principal: Principal, folder_id: str
    ) -> wire.AccessBindingList:
        folder = await self._folder_to_admin(principal, folder_id)
        bindings = await self._run(self._iam.list_roles, folder.id)
        return wire.AccessBindingList(
            access_bindings=[
                wire.AccessBinding(
                    role_id=binding.role,
                    subject=wire.Subject(id=binding.service_account_id, type="serviceAccount"),
                )
                for binding in bindings
            ]
        )

    # -- API keys ------------------------------------------------------------------------

    async def create_key(
        self, principal: Principal, body: wire.CreateApiKeyRequest
    ) -> wire.CreateApiKeyResponse:
        account = await self._account_to_admin(principal, body.service_account_id)
        await self._require_may_change(principal, account)
        created = await self._run(
            self._iam.create_key,
            account.id,
            scopes=DEFAULT_SCOPES if body.scopes is None else body.scopes,
            expires_at=body.expires_at,
            description=body.description,
            actor=principal.key_id,
        )
        return wire.CreateApiKeyResponse(api_key=_key(created.info), secret=created.secret)

    async def list_keys(self, principal: Principal, service_account_id: str) -> wire.ApiKeyList:
        account = await self._account_to_admin(principal, service_account_id)
        keys = await self._run(self._iam.list_keys, account.id)
        return wire.ApiKeyList(api_keys=[_key(key) for key in keys])

    async def get_key(self, principal: Principal, key_id: str) -> wire.ApiKey:
        _require_iam_scope(principal)
        key = await self._run(self._iam.get_key, key_id)
        await self._require_admin(principal, key.folder_id)
        return _key(key)

    async def revoke_key(self, principal: Principal, key_id: str) -> wire.Operation[wire.Empty]:
        """Revoke a key; this replica refuses it from the next request on (with Redis, every
        replica)."""
        _require_iam_scope(principal)
        key = await self._run(self._iam.get_key, key_id)
        account = await self._account_to_admin(principal, key.service_account_id)
        await self._require_may_change(principal, account)
        await self._run(self._iam.revoke_key, key.id, actor=principal.key_id)
        await self._changes.key_revoked(key.id)
        return self._done(principal, "Revoke API key", {"apiKeyId": key.id}, wire.Empty())

    # -- audit log -----------------------------------------------------------------------

    async def audit_log(
        self, principal: Principal, params: wire.AuditLogParams
    ) -> wire.AuditEventList:
        """One folder's changes for its admin; every folder's for a ``system.admin``."""
        if params.folder_id is None:
            await self._require_system_admin(principal)
            folder_id = None
        else:
            folder_id = (await self._folder_to_admin(principal, params.folder_id)).id
        entries = await self._run(
            self._iam.audit_log,
            folder=folder_id,
            action=params.action,
            since=params.since,
            after_id=_after_id(params.page_token),
            limit=params.page_size,
        )
        full = len(entries) == params.page_size
        return wire.AuditEventList(
            events=[_event(entry) for entry in entries],
            next_page_token=str(entries[-1].id) if full else "",
        )

    # -- rules ---------------------------------------------------------------------------

    async def _folder_to_admin(self, principal: Principal, folder_id: str) -> Folder:
        """The folder, once the caller is found to administer it (the scope checked first)."""
        _require_iam_scope(principal)
        folder = await self._run(self._iam.get_folder, folder_id)
        await self._require_admin(principal, folder.id)
        return folder

    async def _account_to_admin(
        self, principal: Principal, service_account_id: str
    ) -> ServiceAccount:
        """The account, once the caller is found to administer its folder."""
        _require_iam_scope(principal)
        account = await self._run(self._iam.get_service_account, service_account_id)
        await self._require_admin(principal, account.folder_id)
        return account

    async def _require_admin(self, principal: Principal, folder_id: str) -> None:
        """``ai.admin`` on ``folder_id``, or ``system.admin``."""
        _require_iam_scope(principal)
        if not await self._is_system_admin(principal):
            await self._access.require(principal, folder_id, Permission.IAM_ADMIN)

    async def _require_may_change(self, principal: Principal, account: ServiceAccount) -> None:
        """``system.admin`` to change a ``system.admin`` (the caller administers its folder)."""
        if await self._is_system_admin(principal):
            return
        roles = await self._run(self._iam.roles, account.id, account.folder_id)
        if Role.SYSTEM_ADMIN in roles:
            raise PermissionDeniedError(
                f"Permission denied: service account {account.id} is a {Role.SYSTEM_ADMIN}; "
                f"only a {Role.SYSTEM_ADMIN} may change its roles or keys"
            )

    async def _require_system_admin(self, principal: Principal) -> None:
        _require_iam_scope(principal)
        await self._access.require(principal, principal.folder_id, Permission.SYSTEM_ADMIN)

    async def _is_system_admin(self, principal: Principal) -> bool:
        # system.admin is bound on its account's own folder (bindings are only ever there).
        return await self._access.holds(principal, principal.folder_id, Permission.SYSTEM_ADMIN)

    @staticmethod
    async def _run(function: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await to_thread.run_sync(partial(function, *args, **kwargs))

    def _done(
        self, principal: Principal, description: str, metadata: dict[str, str], response: ResponseT
    ) -> wire.Operation[ResponseT]:
        now = self._iam.now()
        return wire.Operation[ResponseT](
            id=new_operation_id(),
            description=description,
            created_at=now,
            created_by=principal.key_id,
            modified_at=now,
            metadata=metadata,
            response=response,
        )


def _require_iam_scope(principal: Principal) -> None:
    if not principal.scopes & IAM_SCOPES:
        raise PermissionDeniedError(
            f"Permission denied: API key {principal.key_id} lacks the scope "
            f"{Scope.IAM_MANAGE} that the IAM API needs"
        )


def _after_id(page_token: str | None) -> int | None:
    if not page_token:
        return None
    if not page_token.isdigit():
        raise InvalidRequestError(
            f"Invalid pageToken {page_token!r}: pass the nextPageToken of a previous page",
            param="pageToken",
        )
    return int(page_token)


def _folder(folder: Folder) -> wire.Folder:
    return wire.Folder(
        id=folder.id,
        name=folder.name,
        description=folder.description,
        created_at=folder.created_at,
    )


def _account(account: ServiceAccount) -> wire.ServiceAccount:
    return wire.ServiceAccount(
        id=account.id,
        folder_id=account.folder_id,
        name=account.name,
        description=account.description,
        created_at=account.created_at,
    )


def _key(key: ApiKeyInfo) -> wire.ApiKey:
    return wire.ApiKey(
        id=key.id,
        service_account_id=key.service_account_id,
        created_at=key.created_at,
        description=key.description,
        last_used_at=key.last_used_at,
        scopes=list(key.scopes),
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


def _event(entry: AuditEntry) -> wire.AuditEvent:
    return wire.AuditEvent(
        id=str(entry.id),
        created_at=entry.created_at,
        actor=entry.actor,
        action=entry.action,
        folder_id=entry.folder_id,
        target_id=entry.target_id,
        details=entry.details,
    )
