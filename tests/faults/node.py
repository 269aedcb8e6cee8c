"""A real ``fovea serve`` to kill: its home (no models, an editor's key), started and
restarted on one port, and what it left on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import openai

from fovea.services.storage import PARTIAL_SUFFIX
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, start_process, stop_process


@dataclass
class Node:
    """One server's home and port; ``start`` runs it (again), ``kill`` is SIGKILL."""

    home: Path
    port: int
    api_key: str
    folder_id: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=f"{self.base_url}/v1", max_retries=0)

    def start(self) -> None:
        env = {
            **os.environ,
            "FOVEA_HOME": str(self.home),
            "FOVEA_PORT": str(self.port),
            # A killed server's batch lease lapses soon, so the next one takes the batch over.
            "FOVEA_BATCH_LEASE_S": "2",
            "FOVEA_METRICS_ENABLED": "false",
        }
        self.process = start_process(
            [sys.executable, "-m", "fovea.cli.main", "serve"],
            ready_url=f"{self.base_url}/readyz",
            log=self.home / "server.log",
            env=env,
        )

    def kill(self) -> None:
        assert self.process is not None
        stop_process(self.process, kill=True)  # SIGKILL, and reaped

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def partials(self) -> list[Path]:
        return sorted(self.files_dir.glob(f"*/*{PARTIAL_SUFFIX}"))


def new_node(tmp_path: Path, catalog: str = "deployments = []\n") -> Node:
    """A home with ``catalog`` (no models by default) and a key of an ``ai.editor``."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.toml").write_text(catalog)
    keys = make_keys(Settings(home=home))
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    keys.database.dispose()
    return Node(home=home, port=free_port(), api_key=keys.api_key, folder_id=keys.folder_id)
