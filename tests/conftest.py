"""Shared fixtures: settings on a temporary home, the demo model, keys, an in-process app,
databases on SQLite and on a private PostgreSQL server, and a private Redis server."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fovea.app import create_app
from fovea.iam.service import IamService
from fovea.modelgen.demo import DemoModelFiles, prepare_demo_model
from fovea.settings import Settings
from fovea.store.database import Database
from tests.fakes import ScriptedEngine
from tests.postgres import PostgresServer, PostgresUnavailable, start_server
from tests.redis import RedisServer, RedisUnavailable
from tests.redis import start_server as start_redis_server

TESTS = Path(__file__).resolve().parent
# Tests that start a server or load a real model are ``slow`` (``make test-fast`` leaves them
# out): every test in these folders, and every test that uses these fixtures, however deep.
SLOW_FOLDERS = frozenset({"contract", "web", "vllm"})
SLOW_FIXTURES = frozenset({"demo_model"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        if folder in SLOW_FOLDERS or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


FAKE_CATALOG = """
[[deployments]]
name = "gemma-3-demo"
context_length = 4096
max_images = 4
max_output_tokens = 64
default_max_tokens = 32
default_temperature = 0.3

[deployments.branches.latest]
model = "fake/model.gguf"
mmproj = "fake/mmproj.gguf"

[deployments.branches.rc]
model = "fake/model-rc.gguf"
mmproj = "fake/mmproj.gguf"

[[deployments]]
name = "text-only"
[deployments.branches.latest]
model = "fake/text.gguf"
"""
# An embedding deployment on the scripted embedder (tests.fakes.scripted_engine).
EMBEDDING_DEPLOYMENT = """
[[deployments]]
name = "text-search-doc"
kind = "embedding"
context_length = 64
[deployments.branches.latest]
model = "fake/embed.gguf"
"""


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, as the server does."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session; the tests needing it fail without it."""
    try:
        server = start_server()
    except PostgresUnavailable as error:
        message = f"the private PostgreSQL server did not start: {error}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture
def migrated_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database already at the newest schema, dropped after the test."""
    name = postgres_server.create_database(migrated=True)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private Redis server for the session; the tests needing it fail without it."""
    try:
        server = start_redis_server()
    except RedisUnavailable as error:
        message = f"the private Redis server did not start: {error}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private Redis server, emptied for this test."""
    redis_server.flush()
    return redis_server.url()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request: pytest.FixtureRequest) -> str:
    """Each database backend Fovea supports: a test using a database runs once on each.
    A test for one backend only says ``@SQLITE_ONLY``."""
    return str(request.param)


@pytest.fixture
def database_url(database_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on ``database_backend``."""
    if database_backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'fovea.db'}"


@pytest.fixture
def migrated_database_url(
    database_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> str:
    """A database on ``database_backend`` at the newest schema. On PostgreSQL it is a copy of one
    migrated once per session: several times quicker than migrating each test's."""
    if database_backend == "postgresql":
        return str(request.getfixturevalue("migrated_postgres_url"))
    url = f"sqlite:///{tmp_path / 'fovea.db'}"
    database = Database(url)
    database.migrate()
    database.dispose()
    return url


SQLITE_ONLY = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> DemoModelFiles:
    """The real demo model (Gemma 3 270M + its trained tower, and the random one), built once
    per test session."""
    return prepare_demo_model(tmp_path_factory.mktemp("models"))


@dataclass
class Keys:
    """A folder with a chat user's key, plus helpers to make other principals."""

    database: Database
    iam: IamService
    folder_id: str
    service_account_id: str
    api_key: str


def make_keys(settings: Settings) -> Keys:
    database = Database(settings.sqlalchemy_url)
    database.migrate()
    iam = IamService(database)
    folder, account, key = iam.bootstrap()
    return Keys(database, iam, folder.id, account.id, key.secret)


@pytest.fixture
def fake_settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "models.toml"
    catalog.write_text(FAKE_CATALOG)
    # No auth cache: these tests change keys and roles in the database and expect the next
    # request to see it (the cache has tests of its own, tests/services/test_access.py).
    return Settings(home=tmp_path, catalog=catalog, max_request_bytes=2_000_000, auth_cache_ttl_s=0)


@pytest.fixture
def client(fake_settings: Settings) -> Iterator[TestClient]:
    """The real app (real IAM, media, SQLite) on a scripted engine."""
    ScriptedEngine.instances.clear()
    app = create_app(fake_settings, engine_factory=ScriptedEngine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def keys(client: TestClient, fake_settings: Settings) -> Iterator[Keys]:
    made = make_keys(fake_settings)
    yield made
    made.database.dispose()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def png_data_url(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
