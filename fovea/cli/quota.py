"""``fovea quota``: requests per minute, tokens per minute and concurrent generations per folder
(or per key), in the database. A running server applies a change within a second."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fovea.cli.database import open_database
from fovea.errors import InvalidRequestError
from fovea.iam import IamService
from fovea.store.quotas import FOLDER_WIDE, Quota, QuotaStore

MAX_LIMIT = 2**31 - 1  # the quotas table's INTEGER columns (PostgreSQL refuses more)

quota_app = typer.Typer(
    help="Quotas and rate limits per folder or key (applied by a running server at once).",
    no_args_is_help=True,
)

Limit = Annotated[
    str | None,
    typer.Option(help="A number, or 'none' to lift the limit; unchanged when not given."),
]
FolderOption = Annotated[str, typer.Option("--folder", "-f", help="Folder id or name.")]
KeyOption = Annotated[
    str | None, typer.Option("--key", help="An API key id of the folder: a limit for it alone.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def _stores() -> Iterator[tuple[IamService, QuotaStore]]:
    with open_database() as database:
        yield IamService(database), QuotaStore(database)


@quota_app.command("set")
def set_quota(
    folder: FolderOption,
    key: KeyOption = None,
    rpm: Limit = None,
    tpm: Limit = None,
    concurrent: Limit = None,
    as_json: AsJson = False,
) -> None:
    """Set limits: requests per minute, tokens per minute (prompt, images and completion),
    concurrent generations."""
    with _stores() as (iam, store):
        folder_id, key_id = _owner(iam, folder, key)
        current = next(
            (q for q in store.all() if (q.folder_id, q.key_id) == (folder_id, key_id)),
            Quota(folder_id, key_id),
        )
        quota = store.set(
            dataclasses.replace(
                current,
                requests_per_minute=_limit("--rpm", rpm, current.requests_per_minute),
                tokens_per_minute=_limit("--tpm", tpm, current.tokens_per_minute),
                concurrent=_limit("--concurrent", concurrent, current.concurrent),
            )
        )
    _print([quota], as_json)


@quota_app.command("list")
def list_quotas(as_json: AsJson = False) -> None:
    """Every quota set (folders without one have the server's default concurrency only)."""
    with _stores() as (_, store):
        quotas = store.all()
    _print(quotas, as_json)


@quota_app.command("remove")
def remove_quota(folder: FolderOption, key: KeyOption = None) -> None:
    """Remove a folder's (or a key's) quota: back to the server's defaults."""
    with _stores() as (iam, store):
        folder_id, key_id = _owner(iam, folder, key)
        if not store.remove(folder_id, key_id):
            raise InvalidRequestError(f"No quota is set for {key or folder}")
    typer.echo(f"Removed the quota of {key or folder}")


def _owner(iam: IamService, folder: str, key: str | None) -> tuple[str, str]:
    folder_id = iam.get_folder(folder).id
    if key is None:
        return folder_id, FOLDER_WIDE
    if key not in {k.id for k in iam.list_keys(folder=folder_id)}:
        raise InvalidRequestError(
            f"API key {key} is not a key of folder {folder}; see `fovea iam key list`"
        )
    return folder_id, key


def _limit(option: str, value: str | None, current: int | None) -> int | None:
    if value is None:
        return current
    if value.strip().lower() == "none":
        return None
    if not value.strip().isdigit():
        raise typer.BadParameter(f"{value!r} is not a whole number or 'none'", param_hint=option)
    if int(value) > MAX_LIMIT:
        message = f"{value} is over the largest limit, {MAX_LIMIT}"
        raise typer.BadParameter(message, param_hint=option)
    return int(value)


def _print(quotas: list[Quota], as_json: bool) -> None:
    if as_json:
        rows = [
            {**dataclasses.asdict(q), "updated_at": q.updated_at and q.updated_at.isoformat()}
            for q in quotas
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("folder", "key", "requests/min", "tokens/min", "concurrent"):
        table.add_column(header, no_wrap=True)
    for q in quotas:
        table.add_row(
            q.folder_id,
            q.key_id or "(folder)",
            *(
                "-" if v is None else str(v)
                for v in (q.requests_per_minute, q.tokens_per_minute, q.concurrent)
            ),
        )
    Console(soft_wrap=True).print(table)
