"""``fovea usage``: who used what, from the usage records in the database (works offline)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fovea.cli.database import open_database
from fovea.cli.times import parse_since, parse_time
from fovea.iam import IamService
from fovea.store.usage import UsageFilter, UsageGroup, UsageKind, UsageStore, UsageTotals


class By(StrEnum):
    FOLDER = "folder"
    MODEL = "model"
    KEY = "key"
    SERVICE_ACCOUNT = "sa"
    BATCH = "batch"
    KIND = "kind"
    DAY = "day"


_GROUPS = {
    By.FOLDER: UsageGroup.FOLDER,
    By.MODEL: UsageGroup.MODEL,
    By.KEY: UsageGroup.KEY,
    By.SERVICE_ACCOUNT: UsageGroup.SERVICE_ACCOUNT,
    By.BATCH: UsageGroup.BATCH,
    By.KIND: UsageGroup.KIND,
}
_COUNTS = (
    ("requests", "requests"),
    ("prompt_tokens", "prompt"),
    ("completion_tokens", "completion"),
    ("image_tokens", "image"),
    ("cached_tokens", "cached"),
    ("images", "images"),
    ("errors", "failed"),
)
DAY = 86400


def usage(
    folder: Annotated[
        list[str] | None, typer.Option("--folder", "-f", help="Folder id or name (repeatable).")
    ] = None,
    by: Annotated[
        list[By] | None,
        typer.Option("--by", help="Sum per folder, model, key, sa, batch, kind and/or day."),
    ] = None,
    since: Annotated[
        str, typer.Option(help="Start: a time ago (7d, 12h) or an ISO 8601 time.")
    ] = "7d",
    until: Annotated[str | None, typer.Option(help="End (ISO 8601); now if unset.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only this model (repeatable).")] = None,
    kind: Annotated[
        UsageKind | None, typer.Option(help="Only completions or only embeddings requests.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Tokens, requests and images of chat completions and embeddings requests, summed per
    group."""
    if as_json and as_csv:
        raise typer.BadParameter("give --json or --csv, not both")
    now = datetime.now(UTC)
    start = parse_since(since)
    end = parse_time(until, "--until") if until else now + timedelta(seconds=1)
    groups = list(dict.fromkeys(by or [By.FOLDER, By.MODEL]))
    per_day = By.DAY in groups
    if per_day:  # days are UTC calendar days
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    with _stores() as (iam, store):
        folders = [iam.get_folder(name).id for name in folder] if folder else None
        totals = store.totals(
            UsageFilter(start=start, end=end, folder_ids=folders, models=model or None, kind=kind),
            [_GROUPS[g] for g in groups if g != By.DAY],
            DAY if per_day else None,
        )
    rows = [_row(total, groups, start) for total in totals]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif as_csv:
        _print_csv(rows, groups)
    else:
        _print_table(rows, groups, start, end)


@contextmanager
def _stores() -> Iterator[tuple[IamService, UsageStore]]:
    with open_database() as database:
        yield IamService(database), UsageStore(database)


def _row(total: UsageTotals, groups: list[By], start: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for group in groups:
        if group == By.DAY:
            assert total.bucket is not None
            row["day"] = (start + timedelta(days=total.bucket)).date().isoformat()
        else:
            row[group.value] = total.group[_GROUPS[group].value]
    for name, _ in _COUNTS:
        row[name] = getattr(total, name)
    return row


def _print_csv(rows: list[dict[str, Any]], groups: list[By]) -> None:
    names = [g.value for g in groups] + [name for name, _ in _COUNTS]
    writer = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _print_table(
    rows: list[dict[str, Any]], groups: list[By], start: datetime, end: datetime
) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Usage {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
    )
    for group in groups:
        table.add_column(group.value, no_wrap=True)
    for _, header in _COUNTS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            *(_cell(row[g.value]) for g in groups), *(str(row[name]) for name, _ in _COUNTS)
        )
    if not rows:
        table.caption = "no usage in this range"
    Console(soft_wrap=True).print(table)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)
