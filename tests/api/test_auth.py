"""The auth matrix over HTTP: who gets 401, 403 and 400, with the contract's messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.iam.service import IamService
from tests.conftest import Keys, auth


def _chat(
    client: TestClient, headers: dict[str, str], model: str = "gemma-3-demo"
) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["message"])


def test_no_key(client: TestClient, keys: Keys) -> None:
    assert "Missing API key" in _error(_chat(client, {}), 401)


def test_unknown_key(client: TestClient, keys: Keys) -> None:
    forged = keys.api_key[:-4] + "AAAA"
    assert _error(_chat(client, auth(forged)), 401) == "Unknown api key"
    assert _error(_chat(client, auth("not-a-key")), 401) == "Unknown api key"


def test_revoked_key(client: TestClient, keys: Keys) -> None:
    key_id = keys.api_key.split(".")[1]
    assert _chat(client, auth(keys.api_key)).status_code == 200
    keys.iam.revoke_key(key_id)
    assert _error(_chat(client, auth(keys.api_key)), 401) == "Unknown api key"


def test_expired_key(client: TestClient, keys: Keys) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    earlier = IamService(keys.database, clock=lambda: past)
    key = earlier.create_key(keys.service_account_id, expires_at=past + timedelta(hours=1))
    assert _error(_chat(client, auth(key.secret)), 401) == "The apikey has expired"


def test_key_without_generation_scope(client: TestClient, keys: Keys) -> None:
    # The only other scope there is generation too; a key stripped of scopes stands in.
    key = keys.iam.create_key(keys.service_account_id, scopes=["yc.ai.languageModels.execute"])
    assert _chat(client, auth(key.secret)).status_code == 200
    with keys.database.session() as session, session.begin():
        from fovea.store.tables import ApiKeyRecord

        record = session.get(ApiKeyRecord, key.info.id)
        assert record is not None
        record.scopes = ["yc.ai.someOther.scope"]
    assert _error(_chat(client, auth(key.secret)), 401) == "Unknown api key"


def test_service_account_without_role(client: TestClient, keys: Keys) -> None:
    account = keys.iam.create_service_account(keys.folder_id, "no-roles")
    key = keys.iam.create_key(account.id)
    message = _error(_chat(client, auth(key.secret)), 403)
    assert "Permission denied" in message
    assert keys.folder_id in message


def test_viewer_cannot_chat_but_can_list_models(client: TestClient, keys: Keys) -> None:
    account = keys.iam.create_service_account(keys.folder_id, "viewer")
    keys.iam.grant_role(keys.folder_id, account.id, "ai.viewer")
    key = keys.iam.create_key(account.id)
    _error(_chat(client, auth(key.secret)), 403)
    assert client.get("/v1/models", headers=auth(key.secret)).status_code == 200


def test_other_folders_model_uri(client: TestClient, keys: Keys) -> None:
    other = keys.iam.create_folder("other")
    response = _chat(client, auth(keys.api_key), model=f"gpt://{other.id}/gemma-3-demo")
    message = _error(response, 400)
    assert message.startswith("Specified folder ID does not match with service account")
    assert response.json()["error"]["param"] == "model"


@pytest.mark.parametrize("header", ["OpenAI-Project", "x-folder-id"])
def test_folder_header_must_match(client: TestClient, keys: Keys, header: str) -> None:
    good = {**auth(keys.api_key), header: keys.folder_id}
    assert _chat(client, good).status_code == 200
    bad = {**auth(keys.api_key), header: "b1gaaaaaaaaaaaaaaaaa"}
    assert "does not match" in _error(_chat(client, bad), 400)


def test_api_key_scheme_works(client: TestClient, keys: Keys) -> None:
    response = _chat(client, {"Authorization": f"Api-Key {keys.api_key}"})
    assert response.status_code == 200


def test_models_listing_needs_a_key(client: TestClient, keys: Keys) -> None:
    _error(client.get("/v1/models"), 401)


def test_a_key_learns_what_it_may_do_from_me(client: TestClient, keys: Keys) -> None:
    chat = client.get("/v1/me", headers=auth(keys.api_key)).json()
    assert chat["folder_id"] == keys.folder_id
    assert chat["service_account_id"] == keys.service_account_id
    assert chat["roles"] == ["ai.languageModels.user"]
    assert chat["permissions"] == ["models.use", "models.read"]
    assert chat["iam_api"] is False

    account = keys.iam.create_service_account(keys.folder_id, "console")
    keys.iam.grant_role(keys.folder_id, account.id, "ai.admin")
    scopes = ["yc.ai.foundationModels.execute", "yc.iam.manage"]
    admin = client.get(
        "/v1/me", headers=auth(keys.iam.create_key(account.id, scopes=scopes).secret)
    )
    assert "batches.write" in admin.json()["permissions"]
    assert admin.json()["iam_api"] is True
    # The role without the scope: the IAM API would refuse the key.
    no_scope = keys.iam.create_key(account.id).secret
    assert client.get("/v1/me", headers=auth(no_scope)).json()["iam_api"] is False

    # A key with no role at all may still ask; an unknown key may not.
    bare = keys.iam.create_key(keys.iam.create_service_account(keys.folder_id, "bare").id)
    assert client.get("/v1/me", headers=auth(bare.secret)).json()["permissions"] == []
    _error(client.get("/v1/me"), 401)
