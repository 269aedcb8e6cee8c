"""``fovea models``: the catalog and the demo model."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from fovea.modelgen.demo import prepare_demo_model
from fovea.settings import CatalogFileError, Settings, load_catalog

models_app = typer.Typer(no_args_is_help=True)
console = Console()


@models_app.command("prepare-demo")
def prepare_demo() -> None:
    """Build the demo model gemma-3-demo under $FOVEA_HOME/models (offline; idempotent)."""
    settings = Settings()
    files = prepare_demo_model(settings.models_dir)
    console.print(f"demo model ready: {files.model}\n  vision projector (random): {files.mmproj}")


@models_app.command("list")
def list_models() -> None:
    """Show the catalog's deployments, branches and whether their files exist."""
    settings = Settings()
    try:
        catalog = load_catalog(settings)
    except CatalogFileError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    table = Table("model", "branch", "backend", "files", "context", "max images")
    for deployment in catalog.deployments:
        for branch, files in deployment.branches.items():
            paths = [files.model] + ([files.mmproj] if files.mmproj else [])
            missing = [str(p) for p in paths if not p.exists()]
            state = "ok" if not missing else "missing: " + ", ".join(missing)
            table.add_row(
                deployment.name,
                branch,
                deployment.backend,
                state,
                str(deployment.context_length),
                str(deployment.max_images if files.mmproj else 0),
            )
    console.print(f"catalog: {settings.catalog_path}")
    console.print(table)
