"""A real ``fovea serve`` (no models: these tests are about HTTP, keys and files) shared by the
security tests that depend on the HTTP server, with a low limit on failed keys per address."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, start_fovea, stop_process

FAILURES_PER_MINUTE = 5


@dataclass
class Server:
    port: int
    home: Path
    log: Path
    folder_id: str
    api_key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, key: str | None = None, **headers: str) -> httpx.Response:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def is_serving(self) -> bool:
        """A new client on a new connection is served: its key works."""
        return self.get("/v1/models", self.api_key).status_code == 200


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("security-home")
    (home / "models.toml").write_text("")
    keys = make_keys(Settings(home=home, catalog=home / "models.toml"))
    keys.database.dispose()
    port = free_port()
    log = home / "server.log"
    process = start_fovea(
        home,
        port,
        FOVEA_CATALOG=str(home / "models.toml"),
        FOVEA_AUTH_FAILURES_PER_MINUTE=str(FAILURES_PER_MINUTE),
    )
    try:
        yield Server(port, home, log, keys.folder_id, keys.api_key)
    finally:
        stop_process(process)
