"""Wire type of ``GET /v1/me``: what the calling key is and may do (Fovea's own endpoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Identity(BaseModel):
    object: Literal["identity"] = "identity"
    key_id: str
    service_account_id: str
    folder_id: str = Field(description="The folder the key acts in")
    scopes: list[str]
    roles: list[str] = Field(description="The service account's roles on the folder")
    permissions: list[str] = Field(
        description="What the roles allow there: models.use, models.read, batches.read, "
        "batches.write, files.read, files.write, usage.read, iam.admin, system.admin"
    )
    iam_api: bool = Field(description="Whether the key may use the IAM API (roles and scope)")
