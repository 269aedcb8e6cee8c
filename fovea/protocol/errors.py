"""Wire type of every error Fovea answers with (``fovea.errors`` raises, ``fovea.api.errors``
renders): OpenAI's ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, in words meant for the developer")
    type: str = Field(
        description="invalid_request_error, permission_error, rate_limit_error or server_error"
    )
    param: str | None = Field(description="The request field at fault, if one is")
    code: str | None = Field(
        description="A stable code: invalid_api_key, model_not_found, rate_limit_exceeded, ..."
    )


class ErrorResponse(BaseModel):
    error: ErrorDetail
