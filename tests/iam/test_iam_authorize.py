"""Authorization: roles bound on a folder decide what a principal may do there."""

from __future__ import annotations

import pytest

from fovea.errors import PermissionDeniedError
from fovea.iam import IamService, Permission, Principal, Role


@pytest.fixture
def principal(iam: IamService) -> Principal:
    folder = iam.create_folder("team")
    account = iam.create_service_account(folder.id, "bot")
    return iam.authenticate(iam.create_key(account.id).secret)


def grant(iam: IamService, principal: Principal, role: Role) -> None:
    iam.grant_role(principal.folder_id, principal.service_account_id, role)


def is_allowed(iam: IamService, principal: Principal, permission: Permission) -> bool:
    try:
        iam.authorize(principal, principal.folder_id, permission)
    except PermissionDeniedError:
        return False
    return True


def test_no_role_is_refused_with_a_message_naming_what_would_do(
    iam: IamService, principal: Principal
) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        iam.authorize(principal, principal.folder_id, Permission.MODELS_USE)
    assert caught.value.status_code == 403
    assert caught.value.message == (
        f"Permission denied: service account {principal.service_account_id} has no role on "
        f"folder {principal.folder_id} that allows using models "
        "(any of: ai.languageModels.user, ai.editor, ai.admin)"
    )


def test_language_models_user_may_generate_but_not_run_batches(
    iam: IamService, principal: Principal
) -> None:
    grant(iam, principal, Role.LANGUAGE_MODELS_USER)
    assert is_allowed(iam, principal, Permission.MODELS_USE)
    assert is_allowed(iam, principal, Permission.MODELS_READ)
    assert not is_allowed(iam, principal, Permission.BATCHES_WRITE)
    assert not is_allowed(iam, principal, Permission.FILES_WRITE)


def test_editor_may_generate_and_run_batches(iam: IamService, principal: Principal) -> None:
    grant(iam, principal, Role.EDITOR)
    for permission in set(Permission) - {Permission.IAM_ADMIN, Permission.SYSTEM_ADMIN}:
        assert is_allowed(iam, principal, permission), permission
    assert not is_allowed(iam, principal, Permission.IAM_ADMIN)


def test_viewer_may_read_but_not_generate(iam: IamService, principal: Principal) -> None:
    grant(iam, principal, Role.VIEWER)
    assert not is_allowed(iam, principal, Permission.MODELS_USE)
    assert is_allowed(iam, principal, Permission.MODELS_READ)
    assert is_allowed(iam, principal, Permission.BATCHES_READ)
    assert not is_allowed(iam, principal, Permission.BATCHES_WRITE)


def test_admin_may_do_everything_in_its_folder(iam: IamService, principal: Principal) -> None:
    grant(iam, principal, Role.ADMIN)
    folder_wide = set(Permission) - {Permission.SYSTEM_ADMIN}
    assert all(is_allowed(iam, principal, permission) for permission in folder_wide)
    assert not is_allowed(iam, principal, Permission.SYSTEM_ADMIN)


def test_system_admin_grants_nothing_in_its_folder_but_itself(
    iam: IamService, principal: Principal
) -> None:
    # Its power over every folder is the IAM API's (fovea.services.iam), not a folder role's.
    grant(iam, principal, Role.SYSTEM_ADMIN)
    assert is_allowed(iam, principal, Permission.SYSTEM_ADMIN)
    assert not any(
        is_allowed(iam, principal, permission)
        for permission in set(Permission) - {Permission.SYSTEM_ADMIN}
    )


def test_a_role_on_another_folder_does_not_count(iam: IamService, principal: Principal) -> None:
    other = iam.create_folder("other")
    grant(iam, principal, Role.ADMIN)
    with pytest.raises(PermissionDeniedError, match=other.id):
        iam.authorize(principal, other.id, Permission.MODELS_USE)


def test_revoking_the_role_takes_effect(iam: IamService, principal: Principal) -> None:
    grant(iam, principal, Role.LANGUAGE_MODELS_USER)
    iam.revoke_role(principal.folder_id, principal.service_account_id, "ai.languageModels.user")
    assert not is_allowed(iam, principal, Permission.MODELS_USE)
