"""Cloud-like resource ids: a three-letter prefix and 17 random lowercase alphanumerics."""

from __future__ import annotations

import re
import secrets
import string

FOLDER_PREFIX = "b1g"
SERVICE_ACCOUNT_PREFIX = "aje"
API_KEY_PREFIX = "aje"
OPERATION_PREFIX = "iop"

_ALPHABET = string.ascii_lowercase + string.digits
_BODY_LENGTH = 17
ID_PATTERN = re.compile(r"[a-z][a-z0-9]{2}[a-z0-9]{17}")


def new_folder_id() -> str:
    return _new_id(FOLDER_PREFIX)


def new_service_account_id() -> str:
    return _new_id(SERVICE_ACCOUNT_PREFIX)


def new_api_key_id() -> str:
    return _new_id(API_KEY_PREFIX)


def new_operation_id() -> str:
    return _new_id(OPERATION_PREFIX)


def is_resource_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id this module makes."""
    return ID_PATTERN.fullmatch(value) is not None


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
