"""The IAM API: ``/resource-manager/v1/folders`` and ``/iam/v1/{serviceAccounts,apiKeys,audit}``,
shaped as the cloud's REST APIs.

Methods on a folder are ``/folders/{id}:method``, as the cloud spells them; they are declared
before ``/folders/{id}``, whose parameter would otherwise take the colon and method too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from fovea.api.deps import PrincipalDep, ServicesDep
from fovea.api.responses import json_response
from fovea.protocol import iam as wire

router = APIRouter(tags=["iam"])

FOLDERS = "/resource-manager/v1/folders"
FolderIdQuery = Annotated[str, Query(alias="folderId", min_length=1)]
ServiceAccountIdQuery = Annotated[str, Query(alias="serviceAccountId", min_length=1)]


@router.post(f"{FOLDERS}/{{folder_id}}:updateAccessBindings")
async def update_access_bindings(
    folder_id: str,
    body: wire.UpdateAccessBindingsRequest,
    services: ServicesDep,
    principal: PrincipalDep,
) -> Response:
    return json_response(await services.iam.update_access_bindings(principal, folder_id, body))


@router.get(f"{FOLDERS}/{{folder_id}}:listAccessBindings")
async def list_access_bindings(
    folder_id: str, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_access_bindings(principal, folder_id))


@router.post(FOLDERS)
async def create_folder(
    body: wire.CreateFolderRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_folder(principal, body))


@router.get(FOLDERS)
async def list_folders(services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.list_folders(principal))


@router.get(f"{FOLDERS}/{{folder_id}}")
async def get_folder(folder_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.get_folder(principal, folder_id))


@router.post("/iam/v1/serviceAccounts")
async def create_service_account(
    body: wire.CreateServiceAccountRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_service_account(principal, body))


@router.get("/iam/v1/serviceAccounts")
async def list_service_accounts(
    folder_id: FolderIdQuery, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_service_accounts(principal, folder_id))


@router.get("/iam/v1/serviceAccounts/{service_account_id}")
async def get_service_account(
    service_account_id: str, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.get_service_account(principal, service_account_id))


@router.post("/iam/v1/apiKeys")
async def create_api_key(
    body: wire.CreateApiKeyRequest, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.create_key(principal, body))


@router.get("/iam/v1/apiKeys")
async def list_api_keys(
    service_account_id: ServiceAccountIdQuery, services: ServicesDep, principal: PrincipalDep
) -> Response:
    return json_response(await services.iam.list_keys(principal, service_account_id))


@router.get("/iam/v1/apiKeys/{key_id}")
async def get_api_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.get_key(principal, key_id))


@router.delete("/iam/v1/apiKeys/{key_id}")
async def revoke_api_key(key_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    return json_response(await services.iam.revoke_key(principal, key_id))


@router.get("/iam/v1/audit")
async def audit_log(
    params: Annotated[wire.AuditLogParams, Query()],
    services: ServicesDep,
    principal: PrincipalDep,
) -> Response:
    return json_response(await services.iam.audit_log(principal, params))
