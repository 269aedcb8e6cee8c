"""``fovea logs``: the request log (``FOVEA_REQUEST_LOG``) read from the database.

Opens the database named by ``Settings`` (``FOVEA_HOME``, ``FOVEA_DATABASE_URL``) as the server
does; the server need not run. A running server writes an entry about a second after its
completion ends.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from fovea.errors import FoveaError
from fovea.settings import Settings
from fovea.store import Database
from fovea.store.request_log import RequestLogEntry, RequestLogStore

logs_app = typer.Typer(no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
# A batch output line names its request "req_<id>"; the log keeps the id alone.
_BATCH_PREFIX = "req_"


@logs_app.callback()
def logs() -> None:
    """The request log (FOVEA_REQUEST_LOG)."""  # a group, though it has one command yet


@logs_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The response's x-request-id.")],
    as_json: AsJson = False,
) -> None:
    """Print a stored request and its response."""
    found = _read(request_id)
    if found is None:
        typer.echo(
            f"Error: request {request_id} is not in the request log (never stored: the log was "
            "off, the client sent x-data-logging-enabled: false, or it is past its retention)",
            err=True,
        )
        raise typer.Exit(1)
    data = _as_dict(found)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"Request {found.request_id}  {found.created_at:%Y-%m-%d %H:%M:%S} UTC")
    typer.echo(f"Folder {found.folder_id}  key {found.key_id or '-'}  status {found.status}")
    typer.echo(f"Model {found.model_uri}")
    typer.echo("\nRequest:")
    typer.echo(json.dumps(found.request, ensure_ascii=False, indent=2))
    typer.echo("\nResponse:")
    typer.echo(json.dumps(found.response, ensure_ascii=False, indent=2))


def _read(request_id: str) -> RequestLogEntry | None:
    database = Database(Settings().sqlalchemy_url)
    try:
        database.migrate()
        store = RequestLogStore(database)
        return store.get(request_id) or store.get(request_id.removeprefix(_BATCH_PREFIX))
    except FoveaError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()


def _as_dict(entry: RequestLogEntry) -> dict[str, Any]:
    data = dataclasses.asdict(entry)
    data["created_at"] = entry.created_at.isoformat()
    return data
