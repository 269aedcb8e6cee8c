"""``fovea batch``: batch jobs on a running Fovea server, through its OpenAI Files and Batches API.

``submit`` uploads a JSONL file (OpenAI batch lines, or the cloud's dataset rows, told apart by
the first line) and starts a batch; ``--wait`` follows it with a progress bar. ``status``,
``list`` and ``cancel`` read and steer batches; ``results`` downloads the output as JSONL or
converts it to Parquet.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fovea.cli.batch_progress import TERMINAL_STATUSES, follow
from fovea.cli.remote import DEFAULT_BASE_URL, ApiKey, BaseUrl, FolderId, Server, connect, fail
from fovea.services.datasets.rows import InputFormat, detect_format, jsonl_to_parquet

if TYPE_CHECKING:
    import openai
    from openai.types import Batch

batch_app = typer.Typer(
    help="Batch jobs on a running server: submit, follow, fetch results.", no_args_is_help=True
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ENDPOINT: Final = "/v1/chat/completions"
_TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "expires_at",
)


@batch_app.command("submit")
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A JSONL file.")
    ],
    api_key: ApiKey,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model URI. Required for dataset rows; for OpenAI lines, the default of "
            "lines that name none.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the batch until it ends.")] = False,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="KEY=VALUE label; repeat for several.")
    ] = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    folder: FolderId = None,
) -> None:
    """Upload FILE and start a batch on it; print the batch id."""
    input_format = detect_format(_first_line(file))
    if input_format == "dataset" and model is None:
        raise typer.BadParameter("dataset rows name no model: give one", param_hint="--model")
    labels = _labels(metadata or [])
    with connect(Server(base_url, api_key, folder)) as client:
        batch = _create(client, file, input_format, model, labels)
        typer.echo(batch.id)
        typer.echo(f"Submitted {file.name} ({_FORMAT_NAMES[input_format]})", err=True)
        if not wait:
            return
        final = follow(client, batch)
    _report_end(final)
    raise typer.Exit(0 if final.status == "completed" else 1)


@batch_app.command("status")
def status(
    batch_id: str,
    api_key: ApiKey,
    as_json: AsJson = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    folder: FolderId = None,
) -> None:
    """Show a batch: status, line counts, times, result files and errors."""
    with connect(Server(base_url, api_key, folder)) as client:
        batch = client.batches.retrieve(batch_id)
    if as_json:
        typer.echo(json.dumps(_plain(batch), indent=2))
        return
    for label, value in _describe(batch):
        typer.echo(f"{label + ':':<15}{value}")


@batch_app.command("results")
def results(
    batch_id: str,
    api_key: ApiKey,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write: .jsonl as served, .parquet converted."
        ),
    ],
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Also write the failed lines here (JSONL).")
    ] = None,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    folder: FolderId = None,
) -> None:
    """Download a batch's results (and, with --errors, its failed lines)."""
    with connect(Server(base_url, api_key, folder)) as client:
        batch = client.batches.retrieve(batch_id)
        if errors is not None:
            _download_errors(client, batch, errors)
        if batch.output_file_id is None:
            fail(_no_output(batch))
        if output.suffix.lower() == ".parquet":
            with _scratch_file(output) as jsonl:
                _download(client, batch.output_file_id, jsonl)
                jsonl_to_parquet(jsonl, output)
        else:
            _download(client, batch.output_file_id, output)
    typer.echo(f"Wrote {output}", err=True)


@batch_app.command("cancel")
def cancel(
    batch_id: str,
    api_key: ApiKey,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    folder: FolderId = None,
) -> None:
    """Cancel a batch: lines not yet run are dropped, finished ones are kept."""
    with connect(Server(base_url, api_key, folder)) as client:
        batch = client.batches.cancel(batch_id)
    typer.echo(f"Batch {batch.id}: {batch.status}")


@batch_app.command("list")
def list_batches(
    api_key: ApiKey,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many.")] = 20,
    as_json: AsJson = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    folder: FolderId = None,
) -> None:
    """List the newest batches."""
    with connect(Server(base_url, api_key, folder)) as client:
        batches = client.batches.list(limit=limit).data
    if as_json:
        typer.echo(json.dumps([_plain(batch) for batch in batches], indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("ID", "STATUS", "DONE", "FAILED", "CREATED"):
        table.add_column(header, no_wrap=header == "ID")
    for batch in batches:
        table.add_row(batch.id, batch.status, _done(batch), _failed(batch), _when(batch.created_at))
    Console(soft_wrap=True).print(table)


# -- submit ------------------------------------------------------------------------------

_FORMAT_NAMES: dict[InputFormat, str] = {
    "openai": "OpenAI batch lines",
    "dataset": "dataset rows",
}


def _first_line(path: Path) -> bytes:
    with path.open("rb") as source:
        return next((line for line in source if line.strip()), b"")


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        labels[key.strip()] = value
    return labels


def _create(
    client: openai.OpenAI,
    file: Path,
    input_format: InputFormat,
    model: str | None,
    labels: dict[str, str],
) -> Batch:
    with file.open("rb") as source:
        uploaded = client.files.create(file=source, purpose="batch")
    # Fovea's extensions of the create body: dataset rows name no model of their own.
    extra: dict[str, str] = {"input_format": input_format}
    if model is not None:
        extra["model"] = model
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint=ENDPOINT,
        completion_window="24h",
        metadata=labels or None,
        extra_body=extra,
    )


def _report_end(batch: Batch) -> None:
    message = f"Batch {batch.id} {batch.status}: {_done(batch)} lines done, {_failed(batch)} failed"
    typer.echo(message, err=True)
    for line in _error_lines(batch):
        typer.echo(f"  {line}", err=True)
    if batch.output_file_id is not None:
        typer.echo(f"Fetch the results: fovea batch results {batch.id} -o results.jsonl", err=True)


# -- results -----------------------------------------------------------------------------


def _download_errors(client: openai.OpenAI, batch: Batch, path: Path) -> None:
    if batch.error_file_id is None:
        typer.echo(f"Batch {batch.id} has no error file (no line has failed)", err=True)
        return
    _download(client, batch.error_file_id, path)
    typer.echo(f"Wrote {path}", err=True)


def _no_output(batch: Batch) -> str:
    if batch.status not in TERMINAL_STATUSES:
        return (
            f"Batch {batch.id} has no results yet (status {batch.status}); "
            f"see `fovea batch status {batch.id}`"
        )
    hint = "; its failed lines: --errors errors.jsonl" if batch.error_file_id else ""
    return f"Batch {batch.id} has no output file (status {batch.status}){hint}"


def _download(client: openai.OpenAI, file_id: str, path: Path) -> None:
    """Stream a file's content to ``path``, which appears only once complete."""
    with (
        _scratch_file(path) as partial,
        client.files.with_streaming_response.content(file_id) as response,
    ):
        with partial.open("wb") as sink:
            for chunk in response.iter_bytes():
                sink.write(chunk)
        os.replace(partial, path)


@contextmanager
def _scratch_file(near: Path) -> Iterator[Path]:
    """A temporary path beside ``near`` (so a rename is atomic), removed afterwards."""
    scratch = near.with_name(f".{near.name}.{uuid.uuid4().hex}.part")
    try:
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


# -- output ------------------------------------------------------------------------------


def _describe(batch: Batch) -> list[tuple[str, str]]:
    rows = [("Batch", batch.id), ("Status", batch.status)]
    rows.append(("Lines", f"{_done(batch)} done, {_failed(batch)} failed"))
    rows += [
        (name.removesuffix("_at").replace("_", " ").capitalize(), _when(getattr(batch, name)))
        for name in _TIMESTAMPS
        if getattr(batch, name, None) is not None
    ]
    rows.append(("Output file", batch.output_file_id or "-"))
    rows.append(("Error file", batch.error_file_id or "-"))
    rows += [("Error", line) for line in _error_lines(batch)]
    return rows


def _error_lines(batch: Batch) -> list[str]:
    if batch.errors is None or not batch.errors.data:
        return []
    return [
        (f"line {error.line}: " if error.line is not None else "") + (error.message or "")
        for error in batch.errors.data
    ]


def _done(batch: Batch) -> str:
    counts = batch.request_counts
    if counts is None:
        return "-"
    return f"{counts.completed + counts.failed}/{counts.total}"


def _failed(batch: Batch) -> str:
    return "-" if batch.request_counts is None else str(batch.request_counts.failed)


def _plain(batch: Batch) -> dict[str, Any]:
    return batch.model_dump(mode="json")


def _when(timestamp: int | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
