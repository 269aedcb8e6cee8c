"""Dependencies shared by the routes: the services, the caller, the folder headers.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop
that costs more than the work these do.
"""

from __future__ import annotations

import uuid
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ValidationError

from fovea.errors import FolderMismatchError, InvalidRequestError
from fovea.iam.apikeys import api_key_from_authorization
from fovea.iam.types import Principal
from fovea.services.access import FOLDER_MISMATCH
from fovea.services.chat_events import RequestContext, data_logging_enabled
from fovea.services.container import Services

BodyT = TypeVar("BodyT", bound=BaseModel)


async def get_services(request: Request) -> Services:
    return services_of(request)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


# Declared as a security scheme, so the OpenAPI document shows how to authenticate; reading
# the header takes no parameter solving (FastAPI's Header() parameters cost more than auth).
_api_key = APIKeyHeader(
    name="Authorization",
    scheme_name="ApiKey",
    description="`Bearer <api key>` (what the openai client sends) or `Api-Key <api key>`",
    auto_error=False,
)


async def get_principal(
    request: Request, authorization: Annotated[str | None, Security(_api_key)]
) -> Principal:
    return await principal_of(request)


async def principal_of(request: Request) -> Principal:
    """The caller, from its ``Authorization`` header (kept in the scope for the access log)."""
    key = api_key_from_authorization(authorization_of(request))
    client = request.client.host if request.client else None
    principal = await services_of(request).access.authenticate(key, client)
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


def authorization_of(request: Request) -> str | None:
    """The one ``Authorization`` header; several are a 400, never one of them picked (a proxy
    and its backend could each pick another)."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidRequestError(
            f"The request has {len(values)} Authorization headers; send exactly one",
            code="duplicate_authorization",
        )
    return values[0] if values else None


async def get_header_folder(
    request: Request,
    openai_project: Annotated[
        str | None,
        Header(
            alias="OpenAI-Project",
            description="The folder to act in (OpenAI's project header); the key's folder "
            "if absent. It must be the key's folder or one its account has a role on.",
        ),
    ] = None,
    x_folder_id: Annotated[
        str | None,
        Header(
            alias="x-folder-id",
            description="The folder to act in (the cloud's header); the same as OpenAI-Project "
            "if both are sent, or a 400.",
        ),
    ] = None,
) -> str | None:
    return header_folder_of(request)


def header_folder_of(request: Request) -> str | None:
    """The folder named by ``OpenAI-Project`` or ``x-folder-id``, if any."""
    openai_project = request.headers.get("openai-project")
    x_folder_id = request.headers.get("x-folder-id")
    if openai_project and x_folder_id and openai_project != x_folder_id:
        raise FolderMismatchError(
            f"{FOLDER_MISMATCH}: OpenAI-Project names {openai_project}, "
            f"x-folder-id names {x_folder_id}"
        )
    return x_folder_id or openai_project


def request_context(request: Request) -> RequestContext:
    """The request's id (as ``x-request-id`` reports it) and the client's data-logging choice:
    ``x-data-logging-enabled: false`` means its bodies are never stored."""
    return RequestContext(
        request_id=request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex,
        data_logging=data_logging_enabled(request.headers.get("x-data-logging-enabled")),
    )


def parse_body(model: type[BodyT], raw: bytes) -> BodyT:
    """``raw`` as ``model``; errors rendered as FastAPI's body validation errors are."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
HeaderFolderDep = Annotated[str | None, Depends(get_header_folder)]
