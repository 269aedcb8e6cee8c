"""The IAM API: ``/resource-manager/v1/folders`` and ``/iam/v1/{serviceAccounts,apiKeys,audit}``,
shaped as the cloud's REST APIs.

Methods on a folder are ``/folders/{id}:method``, as the cloud spells them; they are declared
before ``/folders/{id}``, whose parameter would otherwise take the colon and method too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.convertors import Convertor, register_url_convertor

from fovea.api.deps import PrincipalDep, ServicesDep
from fovea.api.openapi import errors
from fovea.api.responses import json_response
from fovea.protocol import iam as wire

router = APIRouter(tags=["iam"])


class _FolderConvertor(Convertor[str]):
    """A folder id or name in a path: never a colon, so ``/folders/{id}`` does not also serve
    ``/folders/{id}:method`` (a method it lacks is a 405 listing the right ``Allow``)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("folder", _FolderConvertor())
# The routes that name an object in their query or body, not their path: unknown, it is a 404.
NAMED_OBJECT = errors(404)

FOLDERS = "/resource-manager/v1/folders"
FolderIdQuery = Annotated[str, Query(alias="folderId", min_length=1)]
ServiceAccountIdQuery = Annotated[str, Query(alias="serviceAccountId", min_length=1)]


@router.post(
    f"{FOLDERS}/{{folder_id}}:updateAccessBindings", response_model=wire.Operation[wire.Empty]
)
async def update_access_bindings(
    folder_id: str,
    body: wire.UpdateAccessBindingsRequest,
    services: ServicesDep,
    principal: PrincipalDep,
) -> Response:
    return json_response(await services.iam.update_access_bindings(principal, folder_id, body))


@router.get(f"{FOLDERS}/{{folder_id}}:listAccessBindings", response_model=wire.AccessBindingList)
async def list_access_bindings(
    folder_id: str, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_access_bindings(principal, folder_id))


@router.post(FOLDERS, response_model=wire.Operation[wire.Folder], responses=errors(409))
async def create_folder(
    body: wire.CreateFolderRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_folder(principal, body))


@router.get(FOLDERS, response_model=wire.FolderList)
async def list_folders(services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.list_folders(principal))


@router.get(f"{FOLDERS}/{{folder_id:folder}}", response_model=wire.Folder)
async def get_folder(folder_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.get_folder(principal, folder_id))


@router.post(
    "/iam/v1/serviceAccounts",
    response_model=wire.Operation[wire.ServiceAccount],
    responses=errors(404, 409),
)
async def create_service_account(
    body: wire.CreateServiceAccountRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_service_account(principal, body))


@router.get(
    "/iam/v1/serviceAccounts", response_model=wire.ServiceAccountList, responses=NAMED_OBJECT
)
async def list_service_accounts(
    folder_id: FolderIdQuery, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_service_accounts(principal, folder_id))


@router.get("/iam/v1/serviceAccounts/{service_account_id}", response_model=wire.ServiceAccount)
async def get_service_account(
    service_account_id: str, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.get_service_account(principal, service_account_id))


@router.post("/iam/v1/apiKeys", response_model=wire.CreateApiKeyResponse, responses=NAMED_OBJECT)
async def create_api_key(
    body: wire.CreateApiKeyRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_key(principal, body))


@router.get("/iam/v1/apiKeys", response_model=wire.ApiKeyList, responses=NAMED_OBJECT)
async def list_api_keys(
    service_account_id: ServiceAccountIdQuery, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_keys(principal, service_account_id))


@router.get("/iam/v1/apiKeys/{key_id}", response_model=wire.ApiKey)
async def get_api_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.get_key(principal, key_id))


@router.delete("/iam/v1/apiKeys/{key_id}", response_model=wire.Operation[wire.Empty])
async def revoke_api_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.revoke_key(principal, key_id))


@router.get("/iam/v1/audit", response_model=wire.AuditEventList, responses=NAMED_OBJECT)
async def audit_log(
    params: Annotated[wire.AuditLogParams, Query()],
    services: ServicesDep,
    principal: PrincipalDep,
) -> Response:
    return json_response(await services.iam.audit_log(principal, params))
