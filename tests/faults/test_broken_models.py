"""A model file missing, garbage or cut short at start: the server starts and is ready,
/readyz names each broken deployment and why, the other models serve, and a request to a
broken one is a 503 naming the problem. The broken models fail to load in llama.cpp for real."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.engine.base import LoadedModel
from fovea.engine.factory import create_engine
from fovea.settings import BranchConfig, DeploymentConfig, Settings
from tests.conftest import auth, make_keys
from tests.fakes import ScriptedEngine

CATALOG = """
[[deployments]]
name = "working"
[deployments.branches.latest]
model = "working.gguf"

[[deployments]]
name = "missing"
[deployments.branches.latest]
model = "nowhere/missing.gguf"

[[deployments]]
name = "garbage"
[deployments.branches.latest]
model = "garbage.gguf"

[[deployments]]
name = "truncated"
[deployments.branches.latest]
model = "truncated.gguf"

[[deployments]]
name = "embedder"
kind = "embedding"
[deployments.branches.latest]
model = "garbage.gguf"
"""
PROBLEMS = {
    "missing": "missing.gguf does not exist",
    "garbage": "garbage.gguf is not a GGUF file",
    "truncated": "truncated.gguf: it may be truncated or corrupt",
    "embedder": "garbage.gguf is not a GGUF file",
}


def _engine(deployment: DeploymentConfig, branch: BranchConfig) -> LoadedModel:
    """The working model is scripted; the others are llama.cpp's, loading the broken files."""
    if deployment.name == "working":
        return ScriptedEngine(deployment, branch)
    return create_engine(deployment, branch)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    models = tmp_path / "models"
    models.mkdir()
    (models / "garbage.gguf").write_bytes(b"<html>404 Not Found</html>" * 100)
    # A GGUF header promising a tensor and a key, then the end of the file (a download cut).
    (models / "truncated.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + b"\x05")
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    return Settings(home=tmp_path, catalog=catalog, auth_cache_ttl_s=0)


def _settled(client: TestClient) -> httpx.Response:
    """/readyz once no model is loading any more (an event, polled)."""
    deadline = time.monotonic() + 60
    while True:
        ready = client.get("/readyz")
        if all(e["state"] != "loading" for e in ready.json()["engines"]):
            return ready
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.05)


def test_broken_model_files_are_named_and_the_rest_serves(settings: Settings) -> None:
    keys = make_keys(settings)
    ScriptedEngine.instances.clear()
    with TestClient(create_app(settings, engine_factory=_engine)) as client:
        ready = _settled(client)
        assert ready.status_code == 200, ready.text  # the server is in the load balancer
        health = ready.json()
        assert health["status"] == "degraded"
        engines = {e["model"]: e for e in health["engines"]}
        assert engines["working"]["state"] == "ready"
        for name, problem in PROBLEMS.items():
            assert engines[name]["state"] == "failed"
            assert problem in engines[name]["error"]

        body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        headers = auth(keys.api_key)
        served = client.post(
            "/v1/chat/completions", json={**body, "model": "working"}, headers=headers
        )
        assert served.status_code == 200, served.text
        for name in ("missing", "garbage", "truncated"):
            refused = client.post(
                "/v1/chat/completions", json={**body, "model": name}, headers=headers
            )
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "model_not_ready"
            assert f"Model {name}/latest failed to load" in error["message"]
            assert PROBLEMS[name] in error["message"]
        embedded = client.post(
            "/v1/embeddings", json={"model": "embedder", "input": "x"}, headers=headers
        )
        assert embedded.status_code == 503
        assert PROBLEMS["embedder"] in embedded.json()["error"]["message"]
    keys.database.dispose()
