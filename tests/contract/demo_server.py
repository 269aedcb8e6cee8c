"""A real ``fovea serve`` on the shipped catalog and the session's demo model, with a chat key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, link_demo_model, start_fovea, stop_process, write_catalog


@dataclass
class DemoServer:
    base_url: str  # ends in /v1
    folder_id: str
    api_key: str


@contextmanager
def demo_server(home: Path, demo_model: DemoModelFiles, *extra: str) -> Iterator[DemoServer]:
    """Serve ``home`` with the shipped catalog plus ``extra`` deployments (TOML text)."""
    link_demo_model(home, demo_model)
    catalog = write_catalog(home, *extra)
    keys = make_keys(Settings(home=home))
    keys.database.dispose()
    port = free_port()
    process = start_fovea(home, port, FOVEA_CATALOG=str(catalog))
    try:
        yield DemoServer(f"http://127.0.0.1:{port}/v1", keys.folder_id, keys.api_key)
    finally:
        stop_process(process)
