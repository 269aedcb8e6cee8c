"""Roles, the permissions they grant and how they include one another.

``ai.admin`` ⊇ ``ai.editor`` ⊇ {``ai.viewer``, ``ai.languageModels.user``}. ``system.admin`` is
apart: bound on its service account's own folder, it lets that account create folders and act as
``ai.admin`` on every folder through the IAM API (``fovea.services.iam``), and grants nothing else.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from fovea.errors import InvalidRequestError


class Role(StrEnum):
    LANGUAGE_MODELS_USER = "ai.languageModels.user"
    VIEWER = "ai.viewer"
    EDITOR = "ai.editor"
    ADMIN = "ai.admin"
    SYSTEM_ADMIN = "system.admin"


class Permission(Enum):
    """An action a request needs; the value says it in words for error messages."""

    MODELS_USE = "using models"
    MODELS_READ = "listing models"
    BATCHES_READ = "reading batches"
    BATCHES_WRITE = "creating and cancelling batches"
    FILES_READ = "reading files"
    FILES_WRITE = "uploading and deleting files"
    USAGE_READ = "reading usage"
    IAM_ADMIN = "managing keys and roles"
    SYSTEM_ADMIN = "creating folders and administering every folder"


_INCLUDED_ROLES: dict[Role, frozenset[Role]] = {
    Role.LANGUAGE_MODELS_USER: frozenset(),
    Role.VIEWER: frozenset(),
    Role.EDITOR: frozenset({Role.VIEWER, Role.LANGUAGE_MODELS_USER}),
    Role.ADMIN: frozenset({Role.EDITOR}),
    Role.SYSTEM_ADMIN: frozenset(),
}

_OWN_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.LANGUAGE_MODELS_USER: frozenset({Permission.MODELS_USE, Permission.MODELS_READ}),
    Role.VIEWER: frozenset(
        {
            Permission.MODELS_READ,
            Permission.BATCHES_READ,
            Permission.FILES_READ,
            Permission.USAGE_READ,
        }
    ),
    Role.EDITOR: frozenset({Permission.BATCHES_WRITE, Permission.FILES_WRITE}),
    Role.ADMIN: frozenset({Permission.IAM_ADMIN}),
    Role.SYSTEM_ADMIN: frozenset({Permission.SYSTEM_ADMIN}),
}


def permissions_of(role: Role | str) -> frozenset[Permission]:
    """Every permission ``role`` grants, its included roles' too; none for an unknown name."""
    try:
        known = Role(role)
    except ValueError:
        return frozenset()
    granted = set(_OWN_PERMISSIONS[known])
    for included in _INCLUDED_ROLES[known]:
        granted |= permissions_of(included)
    return frozenset(granted)


def permission_name(permission: Permission) -> str:
    """A permission as clients read it: ``batches.write``, ``iam.admin``."""
    return permission.name.lower().replace("_", ".", 1)


def roles_allowing(permission: Permission) -> list[Role]:
    """The roles that grant ``permission``, in declaration order."""
    return [role for role in Role if permission in permissions_of(role)]


def parse_role(name: str) -> Role:
    """The role called ``name``; raises ``InvalidRequestError`` listing the valid ones."""
    try:
        return Role(name)
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise InvalidRequestError(
            f"Unknown role {name!r}; valid roles: {valid}", param="role"
        ) from None
