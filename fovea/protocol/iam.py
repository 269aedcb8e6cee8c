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
from pydantic.json_schema import JsonDict

from fovea.iam.apikeys import Scope
from fovea.iam.checks import MAX_DESCRIPTION_LENGTH
from fovea.iam.roles import Role
from fovea.store.audit import AuditAction

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

# What fovea.iam checks (with messages naming the rule), stated for the document.
NAME_SCHEMA: JsonDict = {"pattern": "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", "maxLength": 63}
NAME_DESCRIPTION = (
    "1-63 lowercase letters, digits and hyphens, starting with a letter and not ending with a "
    "hyphen"
)
DESCRIPTION_SCHEMA: JsonDict = {"maxLength": MAX_DESCRIPTION_LENGTH}


def _time_schema(schema: dict[str, Any]) -> None:
    """A time: RFC 3339 (UTC when it has no offset) or Unix seconds, as pydantic reads it."""
    schema.pop("anyOf", None)
    schema["anyOf"] = [
        {"type": "string", "format": "date-time"},
        {"type": "number"},
        {"type": "null"},
    ]


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
    name: str = Field(description=NAME_DESCRIPTION, json_schema_extra=NAME_SCHEMA)
    description: str = Field(default="", json_schema_extra=DESCRIPTION_SCHEMA)
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
    name: str = Field(description=NAME_DESCRIPTION, json_schema_extra=NAME_SCHEMA)
    description: str = Field(default="", json_schema_extra=DESCRIPTION_SCHEMA)


class ServiceAccountList(CloudModel):
    service_accounts: list[ServiceAccount]
    next_page_token: str = ""


# -- access bindings -------------------------------------------------------------------------


class Subject(CloudModel):
    id: str = Field(min_length=1)
    type: Literal["serviceAccount"]


class AccessBinding(CloudModel):
    role_id: str = Field(min_length=1, json_schema_extra={"enum": [role.value for role in Role]})
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
    description: str = Field(default="", json_schema_extra=DESCRIPTION_SCHEMA)
    scopes: list[str] | None = Field(
        default=None,
        description="Default: yc.ai.foundationModels.execute",
        json_schema_extra={"minItems": 1, "items": {"enum": [scope.value for scope in Scope]}},
    )
    expires_at: datetime | None = Field(
        default=None, description="In the future", json_schema_extra=_time_schema
    )


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
    action: str | None = Field(
        default=None, json_schema_extra={"enum": [*(action.value for action in AuditAction), None]}
    )
    since: datetime | None = Field(
        default=None,
        description="RFC 3339 (UTC when no offset) or Unix seconds",
        json_schema_extra=_time_schema,
    )
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    page_token: str | None = None


class AuditEventList(CloudModel):
    events: list[AuditEvent]
    next_page_token: str = ""
