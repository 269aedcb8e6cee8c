"""The cloud's batch dataset format: detection, conversion to chat requests, and Parquet results.

A dataset is UTF-8 JSONL, one request a row. Image rows (``ImageTextToTextGenerationRequest``)::

    {"request": [{"role": "user", "content": [{"type": "text", "text": "..."},
                                              {"type": "image", "image": "<bare base64>"}]}]}

Text rows (``TextToTextGenerationRequest``)::

    {"request": [{"role": "system", "text": "..."}, {"role": "user", "text": "..."}]}

A result row is the request row plus ``"response": "<text>"``; results are downloadable as JSONL
or as Parquet. Everything here is pure apart from the Parquet files it is asked to write.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fovea.errors import InvalidRequestError
from fovea.services.storage import partial_path

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "InputFormat",
    "dataset_result_row",
    "dataset_row_to_chat_body",
    "detect_format",
    "jsonl_to_parquet",
    "write_parquet",
]

InputFormat = Literal["openai", "dataset"]

ROLES = ("system", "user", "assistant")
# Several images a row would make 1000 rows a gigabyte; a batch is flushed at whichever comes first.
BATCH_ROWS = 1000
BATCH_BYTES = 64 * 1024 * 1024
OPTIONAL_COLUMNS = ("custom_id", "line_number", "error")
# What a label is worth to other servers; Fovea itself sniffs the decoded bytes.
_BASE64_SIGNATURES = {
    "/9j/": "image/jpeg",
    "iVBORw0KGgo": "image/png",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}


# -- detection ------------------------------------------------------------------------------


def detect_format(first_line: bytes) -> InputFormat:
    """``"dataset"`` when the first non-empty line is a JSON object with a ``"request"`` key.

    Anything else, invalid JSON included, is ``"openai"``: the line-level validator reports it.
    """
    for line in first_line.splitlines():
        if line.strip():
            try:
                value = json.loads(line.decode("utf-8-sig"))
            except ValueError:
                return "openai"
            return "dataset" if isinstance(value, dict) and "request" in value else "openai"
    return "openai"


# -- rows to chat requests ------------------------------------------------------------------


def dataset_row_to_chat_body(
    row: dict[str, Any], *, model: str, line_number: int
) -> dict[str, Any]:
    """A dataset row as an OpenAI chat-completions request body.

    Keys of the row other than ``"request"`` are ignored: the cloud format has no per-row
    parameters. Raises ``InvalidRequestError`` naming the line and the field of a malformed row.
    """
    if not isinstance(row, dict):
        raise _invalid(line_number, "", "expected a JSON object")
    messages = row.get("request")
    if not isinstance(messages, list) or not messages:
        raise _invalid(line_number, "request", "expected a non-empty list of messages")
    converted = [
        _message(message, f"request[{index}]", line_number)
        for index, message in enumerate(messages)
    ]
    return {"model": model, "messages": converted}


def _message(message: Any, where: str, line_number: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise _invalid(line_number, where, "expected an object with 'role' and 'text' or 'content'")
    role = message.get("role")
    if role not in ROLES:
        raise _invalid(line_number, f"{where}.role", f"expected one of {', '.join(ROLES)}")
    if "content" in message:
        return {"role": role, "content": _content(message["content"], where, line_number)}
    text = message.get("text")
    if not isinstance(text, str):
        problem = "missing 'text' or 'content'" if text is None else "'text' must be a string"
        raise _invalid(line_number, where, problem)
    return {"role": role, "content": text}


def _content(content: Any, where: str, line_number: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _invalid(line_number, f"{where}.content", "expected a string or a list of parts")
    return [
        _part(part, f"{where}.content[{index}]", line_number) for index, part in enumerate(content)
    ]


def _part(part: Any, where: str, line_number: int) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise _invalid(line_number, where, "missing 'text'")
        return {"type": "text", "text": part["text"]}
    if kind == "image":
        image = part.get("image")
        if not isinstance(image, str) or not image.strip():
            raise _invalid(line_number, where, "missing 'image'")
        return {"type": "image_url", "image_url": {"url": _data_url(image.strip())}}
    if kind == "image_url":
        # Already OpenAI-shaped: the chat request's own validation checks it.
        return dict(part)
    raise _invalid(line_number, where, "expected a part of type 'text' or 'image'")


def _data_url(image: str) -> str:
    if image.startswith("data:"):
        return image
    mime = next(
        (label for prefix, label in _BASE64_SIGNATURES.items() if image.startswith(prefix)),
        "image/*",
    )
    return f"data:{mime};base64,{image}"


def _invalid(line_number: int, field: str, problem: str) -> InvalidRequestError:
    where = f"line {line_number}: {field}: " if field else f"line {line_number}: "
    return InvalidRequestError(where + problem, param=field or None)


# -- results --------------------------------------------------------------------------------


def dataset_result_row(row: dict[str, Any], response_text: str) -> dict[str, Any]:
    """The cloud's result row: the input row plus ``"response"``."""
    return {**row, "response": response_text}


def write_parquet(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Write result rows as Parquet, atomically (a temporary file renamed into place).

    Columns: ``request`` (the row's request as a JSON string, images still base64 inside),
    ``response`` (a string; a JSON value other than a string is JSON-encoded), and those of
    ``custom_id``, ``line_number`` and ``error`` that the first batch of rows has. Other keys are
    not written. Rows are written in batches, so an iterator is never held in memory whole.
    Raises ``InvalidRequestError`` when a later row has an optional column the first batch lacked.
    """
    temporary = partial_path(path)
    try:
        _write_batches(_batches(iter(rows)), temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def jsonl_to_parquet(jsonl_path: Path, parquet_path: Path) -> None:
    """Convert a JSONL results file to Parquet, streaming it; blank lines are skipped."""
    write_parquet(_read_jsonl(jsonl_path), parquet_path)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                raise _invalid(number, "", "not valid JSON") from None
            if not isinstance(value, dict):
                raise _invalid(number, "", "expected a JSON object")
            yield value


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Rows encoded to column values, in batches of at most ``BATCH_ROWS`` rows or about
    ``BATCH_BYTES`` bytes: the JSON text is encoded once and measured as it is."""
    batch: list[dict[str, Any]] = []
    num_bytes = 0
    for row in rows:
        encoded = _encoded(row)
        batch.append(encoded)
        num_bytes += len(encoded.get("request") or "") + len(encoded.get("response") or "")
        if len(batch) >= BATCH_ROWS or num_bytes >= BATCH_BYTES:
            yield batch
            batch, num_bytes = [], 0
    if batch:
        yield batch


def _encoded(row: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "request": _json_text(row.get("request")),
        "response": _text(row.get("response")),
    }
    for name in row.keys() & set(OPTIONAL_COLUMNS):
        value = row[name]
        encoded[name] = _line_number(value) if name == "line_number" else _text(value)
    return encoded


def _write_batches(batches: Iterator[list[dict[str, Any]]], path: Path) -> None:
    # pyarrow is imported where it is used: at module level it would add ~0.1 s to every start
    # of the `fovea` command.
    import pyarrow.parquet as pq

    first = next(batches, [])
    schema = _schema(first)
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in itertools.chain([first] if first else [], batches):
            writer.write_batch(_record_batch(batch, schema))


def _schema(first: list[dict[str, Any]]) -> pa.Schema:
    import pyarrow as pa

    present = {key for row in first for key in row}
    names = ["request", "response"] + [name for name in OPTIONAL_COLUMNS if name in present]
    return pa.schema(
        [(name, pa.int64() if name == "line_number" else pa.string()) for name in names]
    )


def _record_batch(batch: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    late = {key for row in batch for key in row} - set(schema.names)
    if late:
        raise InvalidRequestError(
            f"column {sorted(late)[0]!r} is missing from the first rows, which fix the Parquet "
            "columns: download the results as JSONL instead"
        )
    columns = {name: [row.get(name) for row in batch] for name in schema.names}
    return pa.RecordBatch.from_pydict(columns, schema)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else _json_text(value)


def _line_number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
