"""``fovea models``: the catalog, its replicas' states on a running server, and the demo model."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from fovea.modelgen.demo import DemoModelError, prepare_demo_model
from fovea.settings import BranchConfig, CatalogFileError, DeploymentConfig, Settings, load_catalog

models_app = typer.Typer(no_args_is_help=True)
console = Console()


@models_app.command("prepare-demo")
def prepare_demo() -> None:
    """Build the demo model gemma-3-demo under $FOVEA_HOME/models (offline; idempotent)."""
    settings = Settings()
    try:
        files = prepare_demo_model(settings.models_dir)
    except DemoModelError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(
        f"demo model ready: {files.model}\n"
        f"  vision projector (trained, closed world): {files.mmproj}\n"
        f"  random projector (sees nothing, for tests): {files.random_mmproj}"
    )


@models_app.command("list")
def list_models(
    server: Annotated[
        str | None,
        typer.Option(
            help="A running server's root URL, asked for live states "
            "(default: http://FOVEA_HOST:FOVEA_PORT)",
        ),
    ] = None,
) -> None:
    """Show the catalog's deployments and branches: files, or each replica and its state."""
    settings = Settings()
    try:
        catalog = load_catalog(settings)
    except CatalogFileError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    root = server or f"http://{settings.host}:{settings.port}"
    live = _live_states(root)
    table = Table("model", "branch", "backend", "serves", "state", "context", "max images")
    for deployment in catalog.deployments:
        for branch, config in deployment.branches.items():
            engine = live.get((deployment.name, branch)) if live is not None else None
            for serves, state in _rows(deployment, config, engine, live is not None):
                table.add_row(
                    deployment.name,
                    branch,
                    deployment.backend
                    if deployment.kind == "chat"
                    else f"{deployment.backend} ({deployment.kind})",
                    serves,
                    state,
                    str(deployment.context_length),
                    str(deployment.max_images if deployment.accepts_images(config) else 0),
                )
    console.print(f"catalog: {settings.catalog_path}")
    if live is None:
        console.print(f"server: {root} is not answering; live states unknown")
    console.print(table)


def _rows(
    deployment: DeploymentConfig,
    config: BranchConfig,
    engine: dict[str, Any] | None,
    server_up: bool,
) -> list[tuple[str, str]]:
    not_loaded = "not loaded" if server_up else "-"
    if deployment.backend == "upstream":
        replicas = {r["url"]: r for r in (engine or {}).get("replicas", [])}
        return [
            (f"{r.url} ({r.model})", _replica_state(replicas.get(r.url)) or not_loaded)
            for r in config.replicas
        ]
    paths = [p for p in (config.model, config.mmproj) if p is not None]
    missing = [str(p) for p in paths if not p.exists()]
    files = "files ok" if not missing else "missing: " + ", ".join(missing)
    return [(files, engine["state"] if engine else not_loaded)]


def _replica_state(replica: dict[str, Any] | None) -> str | None:
    if replica is None:
        return None
    words = [replica["state"]]
    if replica["busy"]:
        words.append("busy")
    words.append(f"{replica['in_flight']} in flight, {replica['served']} served")
    if replica["state"] == "down" and replica.get("last_error"):
        words.append(replica["last_error"])
    return ", ".join(words)


def _live_states(root: str) -> dict[tuple[str, str], dict[str, Any]] | None:
    """Engines by (model, branch) from the server's /healthz, or None if it does not answer."""
    try:
        response = httpx.get(f"{root.rstrip('/')}/healthz", timeout=3.0, trust_env=False)
        response.raise_for_status()
        engines = response.json()["engines"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return {(e["model"], e["branch"]): e for e in engines}
