"""A real ``fovea serve`` with its gRPC port, for the cloud SDK's contract tests: started on a
home of its own, stopped (or SIGKILLed) and started again on the same home and ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from yandex_ai_studio_sdk import AIStudio
from yandex_ai_studio_sdk.retry import NoRetryPolicy

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, start_process, stop_process

CATALOG = """
[[deployments]]
name = "gemma-3-demo"
chat_template = "gemma3"
context_length = 2048
max_output_tokens = 256
[deployments.branches.latest]
model = "{model}"
mmproj = "{mmproj}"
"""


@dataclass
class Node:
    home: Path
    port: int
    grpc_port: int
    folder_id: str
    api_key: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # A CA bundle for a node serving gRPC over TLS.
    ca: Path | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def sdk(self, api_key: str | None = None, folder_id: str | None = None) -> AIStudio:
        # Only the gRPC endpoint: the rest is discovered (the HTTP base URL the SDK cannot).
        return AIStudio(
            folder_id=folder_id or self.folder_id,
            auth=api_key or self.api_key,
            endpoint=self.grpc,
            verify=str(self.ca) if self.ca else False,
            service_map={"http_completions": f"{self.http}/v1/"},
            retry_policy=NoRetryPolicy(),
        )

    def start(self) -> None:
        self.process = start_process(
            [sys.executable, "-m", "fovea.cli.main", "serve"],
            ready_url=f"{self.http}/readyz",
            log=self.home / "fovea.log",
            env=self.env,
        )

    def stop(self, *, kill: bool = False) -> None:
        if self.process is not None:
            stop_process(self.process, kill=kill)
            self.process = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def new_node(home: Path, demo_model: DemoModelFiles, env: Mapping[str, str] | None = None) -> Node:
    """A node on ``home`` (catalog with the demo model, a folder and a key), not started."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.toml").write_text(
        CATALOG.format(model=demo_model.model, mmproj=demo_model.mmproj)
    )
    keys = make_keys(Settings(home=home))
    # Datasets and batch runs need the editor's rights (files and batches), as in the cloud.
    keys.iam.grant_role(keys.folder_id, keys.service_account_id, "ai.editor")
    keys.database.dispose()
    port, grpc_port = free_port(), free_port()
    node = Node(home, port, grpc_port, keys.folder_id, keys.api_key)
    node.env = {
        **os.environ,
        "FOVEA_HOME": str(home),
        "FOVEA_CATALOG": str(home / "models.toml"),
        "FOVEA_PORT": str(port),
        "FOVEA_GRPC_PORT": str(grpc_port),
        **(env or {}),
    }
    return node
