"""The OpenAPI document tells the truth: schemathesis, with all its checks, drives every operation
of the in-process app (scripted engines) with a key of each role and with none, and finds no
5xx, no undocumented status, no response off its schema, no schema-valid request refused and no
405 without its ``Allow``.

What JSON Schema cannot state, the document says in words, and a run may meet it: a request
naming something that is not there (another folder, a cursor no page gave, a model of the other
kind, an image that is no image) or a range that ends before it starts. Those 400s are the only
refusals of schema-valid requests accepted here (``DOCUMENTED_REFUSALS``). Requests the runs once
answered wrongly are replayed as plain tests below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi

from fovea.app import create_app
from fovea.protocol.embeddings import EmbeddingRequest
from fovea.settings import Settings
from tests.conftest import EMBEDDING_DEPLOYMENT, FAKE_CATALOG, Keys, auth, make_keys
from tests.fakes import ScriptedEngine, scripted_engine

# Small and seeded: the same requests on every run, the whole file in about a minute on 2 cores.
MAX_EXAMPLES = 3
SEED = 20261130
ROLES = ("ai.languageModels.user", "ai.viewer", "ai.editor", "ai.admin", "system.admin")
# Who calls, and which of schemathesis's phases run. Without a key every operation is a 401, so
# the coverage phase's valid requests (and its undeclared methods, for 405 and Allow) are enough;
# with a key, random requests (fuzzing); with ai.admin, the key that may do the most (chat,
# files, batches, usage, IAM), the coverage phase's boundary and invalid requests too.
RUNS = [
    (None, ["coverage"], ["positive"]),
    ("ai.languageModels.user", ["examples", "fuzzing"], None),
    ("ai.viewer", ["examples", "fuzzing"], None),
    ("ai.editor", ["examples", "fuzzing"], None),
    ("ai.admin", ["examples", "coverage", "fuzzing", "stateful"], None),
    ("system.admin", ["examples", "fuzzing"], None),
]
# The 400s a schema-valid request may still get, by the error's ``param`` or ``code``: each is
# stated in the document's words (descriptions) but not expressible in JSON Schema.
DOCUMENTED_REFUSALS = {
    "after",  # a cursor: the id of an object of a previous page
    "page",
    "pageToken",
    "end_time",  # after start_time
    "limit",  # of usage: at most 1440, 168 or 31 buckets by bucket_width
    "folder_mismatch",  # a model URI or header naming another folder than the key's
    "wrong_model_kind",  # a chat model for embeddings, or the reverse
    "invalid_image",  # an image URL that is not an image
    "too_many_images",  # over the model's max_images (GET /v1/models)
    "context_length_exceeded",  # over the model's context_length
    "expires_at",  # an API key's expiry: in the future
}
CATALOG = FAKE_CATALOG + EMBEDDING_DEPLOYMENT


@dataclass
class Server:
    app: Any
    keys: Keys
    role_keys: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("openapi")
    catalog = home / "models.toml"
    catalog.write_text(CATALOG)
    settings = Settings(home=home, catalog=catalog, max_request_bytes=2_000_000, auth_cache_ttl_s=0)
    keys = make_keys(settings)
    role_keys = {"ai.languageModels.user": keys.api_key}
    for role in ROLES[1:]:
        account = keys.iam.create_service_account(keys.folder_id, role.replace(".", "-").lower())
        keys.iam.grant_role(keys.folder_id, account.id, role)
        scopes = ["yc.ai.foundationModels.execute"]
        if role in ("ai.admin", "system.admin"):
            scopes.append("yc.iam.manage")
        role_keys[role] = keys.iam.create_key(account.id, scopes=scopes).secret
    ScriptedEngine.instances.clear()
    app = create_app(settings, engine_factory=scripted_engine)
    yield Server(app, keys, role_keys)
    asgi.shutdown_lifespans()
    keys.database.dispose()


def _schema(
    server: Server, key: str | None, phases: list[str], coverage_modes: list[str] | None
) -> Any:
    config = SchemathesisConfig(seed=SEED)
    config.cache.enabled = False
    project = config.projects.override
    project.checks.update(included_check_names=["all"])
    project.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    project.phases.update(phases=phases)
    if coverage_modes is not None:
        project.phases.coverage.generation.update(modes=coverage_modes)
    if key is not None:
        project.update(headers=auth(key))
    schema = schemathesis.openapi.from_asgi("/openapi.json", server.app, config=config)
    return schema


def _problems(schema: Any) -> list[str]:
    problems: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and not _documented(
                        event.recorder, case_id, check
                    ):
                        problems.append(_describe(event.recorder, case_id, check))
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"error: {getattr(event, 'value', getattr(event, 'exception', ''))}")
        elif isinstance(event, events.EngineFinished):
            problems += [f"after the run: {failure.title}" for failure in event.failures]
    return problems


def _documented(recorder: Any, case_id: str, check: Any) -> bool:
    """A refusal of a schema-valid request that the document states in words."""
    interaction = recorder.interactions.get(case_id)
    if check.name != "positive_data_acceptance" or interaction is None:
        return False
    response = interaction.response
    if response is None or response.status_code != 400:
        return False
    if recorder.cases[case_id].value.query.get("format") == "parquet":
        return True  # only a JSONL file's rows convert to Parquet
    error = json.loads(response.content)["error"]
    return bool({error["param"], error["code"]} & DOCUMENTED_REFUSALS)


def _describe(recorder: Any, case_id: str, check: Any) -> str:
    case = recorder.cases[case_id].value
    interaction = recorder.interactions.get(case_id)
    status = interaction.response.status_code if interaction and interaction.response else None
    title = check.failure_info.failure.title if check.failure_info else ""
    answer = interaction.response.content[:300] if interaction and interaction.response else b""
    return (
        f"{check.name} ({title}): {case.method} {case.formatted_path} query={case.query} "
        f"body={case.body!r:.300} -> {status} {answer!r}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("role", "phases", "coverage_modes"), RUNS)
def test_every_operation_answers_as_the_document_says(
    server: Server, role: str | None, phases: list[str], coverage_modes: list[str] | None
) -> None:
    key = None if role is None else server.role_keys[role]
    problems = _problems(_schema(server, key, phases, coverage_modes))
    assert problems == [], "\n".join(problems)


# -- what the runs found, replayed --------------------------------------------------------


@pytest.fixture
def editor(client: TestClient, keys: Keys) -> dict[str, str]:
    account = keys.iam.create_service_account(keys.folder_id, "editor")
    keys.iam.grant_role(keys.folder_id, account.id, "ai.editor")
    return auth(keys.iam.create_key(account.id).secret)


def test_a_405_says_which_methods_the_path_allows(client: TestClient) -> None:
    response = client.request("TRACE", "/v1/files")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert client.request("TRACE", "/healthz").headers["allow"] == "GET"


def test_a_folder_method_is_not_served_as_a_folder(client: TestClient, keys: Keys) -> None:
    # /folders/{id} used to serve GET /folders/{id}:updateAccessBindings too (as a folder named
    # "{id}:updateAccessBindings"), and the 405 of OPTIONS there listed GET.
    path = f"/resource-manager/v1/folders/{keys.folder_id}:updateAccessBindings"
    response = client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert client.get(path).headers["allow"] == "POST"


def test_errors_are_documented_in_openai_shape_not_as_422(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/chat/completions"]["post"]
    assert "422" not in operation["responses"]
    for status in ("400", "401", "403", "404", "413", "429", "503"):
        content = operation["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_an_upload_body_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["required"] == ["file", "purpose"]


def test_the_folder_headers_are_documented_where_they_are_read(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, method in [("/v1/chat/completions", "post"), ("/v1/files", "get")]:
        parameters = document["paths"][path][method]["parameters"]
        headers = {p["name"] for p in parameters if p["in"] == "header"}
        assert {"OpenAI-Project", "x-folder-id"} <= headers, path
    health = document["paths"]["/healthz"]["get"].get("parameters", [])
    assert [p for p in health if p["in"] == "header"] == []


def test_token_ids_written_as_integral_floats_are_token_ids() -> None:
    # JSON (and the document's "integer") reads 7.0 as 7; the check used to refuse it.
    request = EmbeddingRequest.model_validate_json('{"model": "m", "input": [[7.0, 8]]}')
    assert request.input == [[7, 8]]


def test_a_duplicate_folder_is_a_conflict(client: TestClient, keys: Keys) -> None:
    _, _, admin = keys.iam.bootstrap("default", "root", admin=True)
    headers = auth(admin.secret)
    response = client.post(
        "/resource-manager/v1/folders", headers=headers, json={"name": "default"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Folder 'default' already exists"


def test_an_empty_responses_input_still_says_what_to_send(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/responses", headers=auth(keys.api_key), json={"model": "gemma-3-demo", "input": []}
    )
    assert response.status_code == 400
    assert "input is empty" in response.json()["error"]["message"]


def test_request_schemas_state_what_is_refused(client: TestClient) -> None:
    # Each was a schema-valid request that got a 400: the document now says so.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    embeddings_input = schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"]
    assert embeddings_input[0] == {"type": "string", "minLength": 1}
    assert (embeddings_input[1]["minItems"], embeddings_input[1]["maxItems"]) == (1, 2048)
    assert schemas["CreateBatchRequest"]["properties"]["endpoint"]["enum"] == [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
    ]
    assert "type" in schemas["OutputText"]["required"]
    assert schemas["ChatCompletionRequest"]["properties"]["stop"]["maxItems"] == 4
    folder_name = schemas["CreateFolderRequest"]["properties"]["name"]
    assert folder_name["pattern"] == "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
