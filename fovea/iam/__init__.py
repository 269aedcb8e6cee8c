"""Identity and access: folders, service accounts, roles and API keys.

``IamService`` is the one entry point; it returns the plain values of ``fovea.iam.types`` and
raises only ``fovea.errors``. Nothing here imports FastAPI.
"""

from fovea.iam.apikeys import GENERATION_SCOPES, Scope, api_key_from_authorization
from fovea.iam.checks import EXPIRED_KEY_MESSAGE, MISSING_KEY_MESSAGE, UNKNOWN_KEY_MESSAGE
from fovea.iam.roles import Permission, Role
from fovea.iam.service import IamService
from fovea.iam.types import (
    ApiKeyInfo,
    BindingChange,
    CreatedKey,
    Folder,
    Principal,
    RoleBinding,
    ServiceAccount,
)

__all__ = [
    "EXPIRED_KEY_MESSAGE",
    "GENERATION_SCOPES",
    "MISSING_KEY_MESSAGE",
    "UNKNOWN_KEY_MESSAGE",
    "ApiKeyInfo",
    "BindingChange",
    "CreatedKey",
    "Folder",
    "IamService",
    "Permission",
    "Principal",
    "Role",
    "RoleBinding",
    "Scope",
    "ServiceAccount",
    "api_key_from_authorization",
]
