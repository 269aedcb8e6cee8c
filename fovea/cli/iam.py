"""``fovea iam``: folders, service accounts, roles and API keys from the command line.

Every command opens the database named by ``Settings`` (``FOVEA_HOME``, ``FOVEA_DATABASE_URL``),
upgrades its schema and calls ``IamService``: it works with no server running. Its changes are
in the audit log (``fovea iam audit``) as made by ``cli``. A ``FoveaError`` becomes one line on
stderr and exit status 1.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fovea.cli.times import parse_duration, parse_since, parse_time
from fovea.errors import FoveaError
from fovea.iam import ApiKeyInfo, CreatedKey, IamService
from fovea.iam.apikeys import DEFAULT_SCOPES
from fovea.services.access_changes import announce, key_revoked, roles_changed
from fovea.settings import Settings
from fovea.store import Database
from fovea.store.audit import MAX_PAGE, AuditEntry

iam_app = typer.Typer(
    help="Folders, service accounts, roles, API keys and the audit log.", no_args_is_help=True
)
folder_app = typer.Typer(help="Folders: the unit of isolation.", no_args_is_help=True)
sa_app = typer.Typer(help="Service accounts: who API keys act as.", no_args_is_help=True)
role_app = typer.Typer(help="Roles bound on folders to service accounts.", no_args_is_help=True)
key_app = typer.Typer(help="API keys of service accounts.", no_args_is_help=True)
iam_app.add_typer(folder_app, name="folder")
iam_app.add_typer(sa_app, name="sa")
iam_app.add_typer(role_app, name="role")
iam_app.add_typer(key_app, name="key")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Description = Annotated[str, typer.Option("--description", "-d", help="Free text.")]
FolderRef = Annotated[str, typer.Option("--folder", "-f", help="Folder id or name.")]
OptionalFolderRef = Annotated[str | None, typer.Option("--folder", "-f", help="Folder id or name.")]
SaRef = Annotated[str, typer.Option("--sa", help="Service account id or name.")]
OptionalSaRef = Annotated[str | None, typer.Option("--sa", help="Service account id or name.")]

SECRET_WARNING = (
    "Save this key now: it is shown only once. Fovea keeps only its hash; "
    "a lost key cannot be recovered, only replaced."
)
_ID_HEADERS = frozenset({"ID", "FOLDER", "SERVICE ACCOUNT"})
_FOLDED_HEADERS = frozenset({"ROLE", "SCOPES", "DESCRIPTION"})
ID_WIDTH = 20


@contextmanager
def _iam() -> Iterator[IamService]:
    database = Database(Settings().sqlalchemy_url)
    try:
        database.migrate()
        yield IamService(database)
    except FoveaError as exc:
        typer.echo(f"Error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.dispose()


def _announce(change: dict[str, str]) -> None:
    """Running replicas drop the change from their caches at once when they share a Redis;
    otherwise they see it within FOVEA_AUTH_CACHE_TTL_S."""
    settings = Settings()
    if settings.redis_url and not announce(settings.redis_url, change):
        typer.echo(
            "Warning: Redis did not answer, so running servers were not told: they see the "
            f"change within FOVEA_AUTH_CACHE_TTL_S ({settings.auth_cache_ttl_s:g} s).",
            err=True,
        )


# -- folders -----------------------------------------------------------------------------


@folder_app.command("create")
def folder_create(name: str, description: Description = "", as_json: AsJson = False) -> None:
    """Create a folder."""
    with _iam() as iam:
        folder = iam.create_folder(name, description)
    _print_one(folder, as_json, f"Created folder {folder.name!r}: {folder.id}")


@folder_app.command("list")
def folder_list(as_json: AsJson = False) -> None:
    """List folders."""
    with _iam() as iam:
        folders = iam.list_folders()
    rows = [[f.id, f.name, _when(f.created_at), f.description] for f in folders]
    _print_many(folders, as_json, ["ID", "NAME", "CREATED", "DESCRIPTION"], rows)


# -- service accounts --------------------------------------------------------------------


@sa_app.command("create")
def sa_create(
    name: str, folder: FolderRef, description: Description = "", as_json: AsJson = False
) -> None:
    """Create a service account in a folder."""
    with _iam() as iam:
        account = iam.create_service_account(folder, name, description)
    message = f"Created service account {account.name!r}: {account.id} (folder {account.folder_id})"
    _print_one(account, as_json, message)


@sa_app.command("list")
def sa_list(folder: OptionalFolderRef = None, as_json: AsJson = False) -> None:
    """List service accounts, of one folder or of all."""
    with _iam() as iam:
        accounts = iam.list_service_accounts(folder)
    rows = [[a.id, a.name, a.folder_id, _when(a.created_at), a.description] for a in accounts]
    _print_many(accounts, as_json, ["ID", "NAME", "FOLDER", "CREATED", "DESCRIPTION"], rows)


# -- roles -------------------------------------------------------------------------------


@role_app.command("grant")
def role_grant(role: str, folder: FolderRef, sa: SaRef) -> None:
    """Bind ROLE on a folder to a service account."""
    with _iam() as iam:
        binding = iam.grant_role(folder, sa, role)
    typer.echo(
        f"Granted {binding.role} on folder {binding.folder_id} "
        f"to service account {binding.service_account_id}"
    )


@role_app.command("revoke")
def role_revoke(role: str, folder: FolderRef, sa: SaRef) -> None:
    """Remove ROLE on a folder from a service account."""
    with _iam() as iam:
        folder_id, account_id = iam.revoke_role(folder, sa, role)
    typer.echo(f"Revoked {role} on folder {folder} from service account {sa}")
    _announce(roles_changed(account_id, folder_id))


@role_app.command("list")
def role_list(
    folder: OptionalFolderRef = None, sa: OptionalSaRef = None, as_json: AsJson = False
) -> None:
    """List role bindings."""
    with _iam() as iam:
        bindings = iam.list_roles(folder, sa)
    rows = [[b.folder_id, b.service_account_id, b.role, _when(b.created_at)] for b in bindings]
    _print_many(bindings, as_json, ["FOLDER", "SERVICE ACCOUNT", "ROLE", "GRANTED"], rows)


# -- API keys ----------------------------------------------------------------------------


@key_app.command("create")
def key_create(
    sa: SaRef,
    folder: OptionalFolderRef = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope", help="Repeat for several. [default: yc.ai.foundationModels.execute]"
        ),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime such as 30d, 12h, 2w.")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="ISO 8601 time; UTC when no offset.")
    ] = None,
    description: Description = "",
    as_json: AsJson = False,
) -> None:
    """Create an API key; its secret is printed once and never stored."""
    expiry = _expiry(expires_in, expires_at)
    with _iam() as iam:
        created = iam.create_key(
            sa,
            folder=folder,
            scopes=scope or DEFAULT_SCOPES,
            expires_at=expiry,
            description=description,
        )
    _print_created_key(created, as_json)


@key_app.command("list")
def key_list(
    sa: OptionalSaRef = None, folder: OptionalFolderRef = None, as_json: AsJson = False
) -> None:
    """List API keys (never their secrets)."""
    with _iam() as iam:
        keys = iam.list_keys(sa, folder)
    now = datetime.now(UTC)
    headers = ["ID", "SERVICE ACCOUNT", "STATUS", "EXPIRES", "LAST USED", "SCOPES"]
    rows = [_key_row(key, now) for key in keys]
    _print_many(keys, as_json, headers, rows)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke an API key for good."""
    with _iam() as iam:
        key = iam.revoke_key(key_id)
    typer.echo(f"Revoked API key {key.id}")
    _announce(key_revoked(key.id))


# -- bootstrap ---------------------------------------------------------------------------


@iam_app.command("bootstrap")
def bootstrap(
    folder: Annotated[str, typer.Option("--folder", help="Folder name.")] = "default",
    sa: Annotated[
        str | None,
        typer.Option("--sa", help="Service account name. [default: default, or admin]"),
    ] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An administrator instead: system.admin and a key for the IAM API only.",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Create (or reuse) a folder and service account with chat access, and issue a new key."""
    account_name = sa or ("admin" if admin else "default")
    with _iam() as iam:
        created_folder, account, created = iam.bootstrap(folder, account_name, admin=admin)
    if as_json:
        payload = {
            "folder_id": created_folder.id,
            "service_account_id": account.id,
            "api_key": created.secret,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"Folder:          {created_folder.name} ({created_folder.id})")
    role = "system.admin" if admin else "ai.languageModels.user"
    typer.echo(f"Service account: {account.name} ({account.id}), role {role}")
    typer.echo(f"API key:         {created.secret}")
    typer.echo(SECRET_WARNING, err=True)


# -- audit log ---------------------------------------------------------------------------


@iam_app.command("audit")
def audit(
    folder: OptionalFolderRef = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO 8601 time (UTC when no offset), or an age: 24h, 7d."),
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, e.g. apiKey.revoke.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Show the latest N changes.")
    ] = 100,
    as_json: AsJson = False,
) -> None:
    """Print the IAM audit log, oldest first: who (a key id, or cli) changed what, and when."""
    start = None if since is None else parse_since(since)
    with _iam() as iam:
        entries = iam.audit_log(folder=folder, action=action, since=start, limit=limit, latest=True)
    if as_json:
        typer.echo(_json([dataclasses.asdict(entry) for entry in entries]))
        return
    # One line each, nothing cut: too many ids for a table, and a log is read with grep.
    for entry in entries:
        typer.echo(_audit_line(entry))


def _audit_line(entry: AuditEntry) -> str:
    details = json.dumps(entry.details, separators=(",", ":"))
    return (
        f"{entry.created_at.strftime('%Y-%m-%d %H:%M:%S')}Z  {entry.actor}  {entry.action}  "
        f"folder={entry.folder_id or '-'}  target={entry.target_id or '-'}  {details}"
    )


# -- output ------------------------------------------------------------------------------


def _print_created_key(created: CreatedKey, as_json: bool) -> None:
    info = created.info
    if as_json:
        typer.echo(_json({**dataclasses.asdict(info), "api_key": created.secret}))
        return
    typer.echo(f"Created API key {info.id} for service account {info.service_account_id}")
    typer.echo(f"Scopes:  {', '.join(info.scopes)}")
    typer.echo(f"Expires: {_when(info.expires_at) or 'never'}")
    typer.echo(f"API key: {created.secret}")
    typer.echo(SECRET_WARNING, err=True)


def _key_row(key: ApiKeyInfo, now: datetime) -> list[str]:
    return [
        key.id,
        key.service_account_id,
        key.status(now),
        _when(key.expires_at) or "never",
        _when(key.last_used_at) or "never",
        ", ".join(key.scopes),
    ]


def _print_one(value: Any, as_json: bool, message: str) -> None:
    typer.echo(_json(dataclasses.asdict(value)) if as_json else message)


def _print_many(
    values: Sequence[Any], as_json: bool, headers: list[str], rows: list[list[str]]
) -> None:
    if as_json:
        typer.echo(_json([dataclasses.asdict(value) for value in values]))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for header in headers:
        # Ids are what users copy into the next command: never cut them.
        is_id = header in _ID_HEADERS
        table.add_column(
            header,
            no_wrap=is_id,
            min_width=ID_WIDTH if is_id else None,
            overflow="fold" if header in _FOLDED_HEADERS else "ellipsis",
        )
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    if expires_in is not None and expires_at is not None:
        raise typer.BadParameter("give --expires-in or --expires-at, not both")
    if expires_in is not None:
        return datetime.now(UTC) + parse_duration(expires_in, "--expires-in")
    if expires_at is not None:
        return parse_time(expires_at, "--expires-at")
    return None
