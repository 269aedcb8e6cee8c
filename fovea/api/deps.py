"""Dependencies shared by the routes: the services, the caller, the folder headers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from fovea.errors import FolderMismatchError
from fovea.iam.apikeys import api_key_from_authorization
from fovea.iam.types import Principal
from fovea.services.access import FOLDER_MISMATCH
from fovea.services.container import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_principal(
    services: Annotated[Services, Depends(get_services)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return await services.access.authenticate(api_key_from_authorization(authorization))


def get_header_folder(
    openai_project: Annotated[str | None, Header(alias="OpenAI-Project")] = None,
    x_folder_id: Annotated[str | None, Header(alias="x-folder-id")] = None,
) -> str | None:
    if openai_project and x_folder_id and openai_project != x_folder_id:
        raise FolderMismatchError(
            f"{FOLDER_MISMATCH}: OpenAI-Project names {openai_project}, "
            f"x-folder-id names {x_folder_id}"
        )
    return x_folder_id or openai_project


ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
HeaderFolderDep = Annotated[str | None, Depends(get_header_folder)]
