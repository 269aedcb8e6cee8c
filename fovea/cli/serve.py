"""``fovea serve``: run the HTTP server."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from fovea.settings import DEMO_MODEL_NAME, ConfigurationError, Settings, load_catalog

console = Console(stderr=True)
KEEP_ALIVE_S = 75  # seconds an idle connection is kept; nginx's default


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (FOVEA_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FOVEA_PORT)")] = None,
    bootstrap: Annotated[
        bool,
        typer.Option(help="Create (or reuse) a folder and service account and print a new key"),
    ] = False,
) -> None:
    """Serve the OpenAI-compatible API on the catalog's models."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from fovea.observability.access import configure_access_log

    configure_access_log()  # one bare JSON object a line
    try:
        catalog = load_catalog(settings)
        settings.grpc_tls()
        if any(d.name == DEMO_MODEL_NAME for d in catalog.deployments):
            from fovea.modelgen.demo import prepare_demo_model

            prepare_demo_model(settings.models_dir)
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    if bootstrap:
        _print_bootstrap(settings)

    from fovea.api.http_protocol import BoundedHttpToolsProtocol
    from fovea.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Fovea writes one access line per request itself, with its request ids.
        access_log=False,
        timeout_graceful_shutdown=5,
        # Longer than clients keep idle connections (httpx and the openai client 5 s, aiohttp
        # 15 s, load balancers 60 s): a server that closes an idle connection first races the
        # client's next request on it, which then gets a reset and no response.
        timeout_keep_alive=KEEP_ALIVE_S,
        # httptools, with a 431 for request heads over 64 KiB or 100 headers.
        http=BoundedHttpToolsProtocol,
    )


def _print_bootstrap(settings: Settings) -> None:
    from fovea.iam.service import IamService
    from fovea.store.database import Database

    database = Database(settings.sqlalchemy_url)
    database.migrate()
    folder, account, key = IamService(database).bootstrap()
    database.dispose()
    origin = f"http://{settings.host}:{settings.port}"
    base_url = f"{origin}/v1"
    playground = f"  playground = {origin}/  (sign in with the key)\n" if settings.web_ui else ""
    print(
        "\nFovea is starting. Point the openai client at it:\n"
        f"  base_url   = {base_url}\n"
        f"  folder id  = {folder.id}\n"
        f"  api key    = {key.secret}   (shown once; service account {account.id})\n"
        f"  model      = gpt://{folder.id}/{DEMO_MODEL_NAME}\n"
        f"{playground}"
        "Try the reference client:\n"
        f"  FOVEA_API_KEY={key.secret} FOVEA_FOLDER_ID={folder.id} "
        ".venv/bin/python examples/compare_images.py\n",
        flush=True,
    )
