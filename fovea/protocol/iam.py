"""Wire types of the IAM API, shaped as the cloud's resource-manager/v1 and iam/v1 REST APIs:
camelCase JSON, RFC 3339 times, lists as ``{"<resources>": [...], "nextPageToken": ""}``.

Changes answer with an ``Operation`` that is already done (Fovea makes them at once), its
``response`` the object made, as the cloud's do. Fovea adds ``revokedAt`` to API keys (the
cloud deletes a key; Fovea keeps it, revoked, for the audit log) and the audit log itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


class CloudModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


class Empty(CloudModel):
    pass


ResponseT = TypeVar("ResponseT", bound=BaseModel)


class Operation(CloudModel, Generic[ResponseT]):
    id: str
    description: str
    created_at: datetime
    created_by: str  # the key id of the caller
    modified_at: datetime
    done: bool = True
    metadata: dict[str, str]
    response: ResponseT


# -- folders ---------------------------------------------------------------------------------


class Folder(CloudModel):
    id: str
    name: str
    description: str
    created_at: datetime
    status: Literal["ACTIVE"] = "ACTIVE"


class CreateFolderRequest(CloudModel):
    name: str
    description: str = ""
    cloud_id: str | None = Field(default=None, description="Accepted and ignored: one cloud")


class FolderList(CloudModel):
    folders: list[Folder]
    next_page_token: str = ""


# -- service accounts ------------------------------------------------------------------------


class ServiceAccount(CloudModel):
    id: str
    folder_id: str
    name: str
    description: str
    created_at: datetime


class CreateServiceAccountRequest(CloudModel):
    folder_id: str = Field(min_length=1)
    name: str
    description: str = ""


class ServiceAccountList(CloudModel):
    service_accounts: list[ServiceAccount]
    next_page_token: str = ""


# -- access bindings -------------------------------------------------------------------------


class Subject(CloudModel):
    id: str = Field(min_length=1)
    type: Literal["serviceAccount"]


class AccessBinding(CloudModel):
    role_id: str = Field(min_length=1)
    subject: Subject


class AccessBindingDelta(CloudModel):
    action: Literal["ADD", "REMOVE"]
    access_binding: AccessBinding


class UpdateAccessBindingsRequest(CloudModel):
    access_binding_deltas: list[AccessBindingDelta] = Field(min_length=1, max_length=1000)


class AccessBindingList(CloudModel):
    access_bindings: list[AccessBinding]
    next_page_token: str = ""


# -- API keys --------------------------------------------------------------------------------


class ApiKey(CloudModel):
    id: str
    service_account_id: str
    created_at: datetime
    description: str
    last_used_at: datetime | None
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None


class CreateApiKeyRequest(CloudModel):
    service_account_id: str = Field(min_length=1)
    description: str = ""
    scopes: list[str] | None = Field(
        default=None, description="Default: yc.ai.foundationModels.execute"
    )
    expires_at: datetime | None = None


class CreateApiKeyResponse(CloudModel):
    api_key: ApiKey
    secret: str  # the whole key a client sends; shown here once, never stored


class ApiKeyList(CloudModel):
    api_keys: list[ApiKey]
    next_page_token: str = ""


# -- audit log -------------------------------------------------------------------------------


class AuditEvent(CloudModel):
    id: str
    created_at: datetime
    actor: str  # the key id that made the change, or "cli"
    action: str  # folder.create, serviceAccount.create, accessBinding.add|remove, apiKey.*
    folder_id: str | None
    target_id: str | None
    details: dict[str, Any]


class AuditLogParams(CloudModel):
    """The query of ``GET /iam/v1/audit``; without ``folderId``, every folder's."""

    folder_id: str | None = None
    action: str | None = None
    since: datetime | None = Field(default=None, description="RFC 3339; UTC when no offset")
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    page_token: str | None = None


class AuditEventList(CloudModel):
    events: list[AuditEvent]
    next_page_token: str = ""
