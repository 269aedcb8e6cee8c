"""Access checks shared by every resource: the caller's folder and role on it."""

from __future__ import annotations

from anyio import to_thread

from fovea.errors import AuthenticationError, FolderMismatchError
from fovea.iam.roles import Permission
from fovea.iam.service import UNKNOWN_KEY_MESSAGE, IamService
from fovea.iam.types import Principal

FOLDER_MISMATCH = "Specified folder ID does not match with service account"


class AccessControl:
    """Resolves which folder a request acts on and checks the caller's role there."""

    def __init__(self, iam: IamService) -> None:
        self._iam = iam

    def authenticate(self, api_key: str | None) -> Principal:
        """Blocking (one indexed lookup); call it from a worker thread."""
        return self._iam.authenticate(api_key)

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

    def require_scope(self, principal: Principal, scopes: frozenset[str]) -> None:
        """Keys without one of ``scopes`` are refused as the cloud does: as unknown keys."""
        if not principal.scopes & scopes:
            raise AuthenticationError(UNKNOWN_KEY_MESSAGE)

    async def require(self, principal: Principal, folder_id: str, permission: Permission) -> None:
        await to_thread.run_sync(self._iam.authorize, principal, folder_id, permission)
