"""Validation of a batch's input file, line by line: OpenAI request lines or the cloud's dataset
rows. A bad line is reported with its number (and ``custom_id``) and the rest still run; a file
with no usable line at all fails the batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fovea.errors import FoveaError
from fovea.protocol.batches import CUSTOM_ID_MAX, BatchInputLine
from fovea.services.datasets.rows import dataset_row_to_chat_body
from fovea.store.batches import LineEntry

MAX_ERRORS_KEPT = 10


@dataclass
class InputCheck:
    lines: list[LineEntry]
    fatal: list[dict[str, Any]]  # non-empty: the batch fails as a whole


def raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(line_number, offset, bytes)`` of every non-blank line, 1-based."""
    offset = 0
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if line.strip():
                yield number, offset, line
            offset += len(line)


def check_input(path: Path, *, input_format: str, endpoint: str, model: str | None) -> InputCheck:
    entries: list[LineEntry] = []
    seen: set[str] = set()
    for number, offset, raw in raw_lines(path):
        custom_id, error = _check_line(raw, number, input_format, endpoint, model, seen)
        entries.append(LineEntry(number, custom_id, offset, len(raw), error))
    usable = [e for e in entries if e.error is None]
    if not entries:
        return InputCheck([], [{"code": "empty_file", "message": "The input file has no lines"}])
    if not usable and all(e.error and e.error["code"] == "invalid_json_line" for e in entries):
        fatal = [{**e.error, "line": e.line_number} for e in entries[:MAX_ERRORS_KEPT] if e.error]
        return InputCheck([], fatal)
    return InputCheck(entries, [])


def _check_line(
    raw: bytes, number: int, input_format: str, endpoint: str, model: str | None, seen: set[str]
) -> tuple[str | None, dict[str, Any] | None]:
    try:
        value = json.loads(raw)
    except ValueError:
        return None, _error("invalid_json_line", f"Line {number} is not valid JSON")
    if not isinstance(value, dict):
        return None, _error("invalid_json_line", f"Line {number} is not a JSON object")
    if input_format == "dataset":
        return None, _check_dataset_row(value, number, model)
    return _check_request_line(value, number, endpoint, seen)


def _check_request_line(
    value: dict[str, Any], number: int, endpoint: str, seen: set[str]
) -> tuple[str | None, dict[str, Any] | None]:
    # A line refused for its custom_id still reports the id when it can be kept as one.
    raw_id = value.get("custom_id")
    custom_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= CUSTOM_ID_MAX else None
    try:
        line = BatchInputLine.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "line"
        return custom_id, _error("invalid_request", f"Line {number}: {field}: {first['msg']}")
    if line.custom_id in seen:
        return None, _error(
            "duplicate_custom_id", f"Line {number}: custom_id {line.custom_id!r} is used twice"
        )
    seen.add(line.custom_id)
    if line.url != endpoint:
        return line.custom_id, _error(
            "invalid_url",
            f"Line {number}: url {line.url!r} does not match the batch's endpoint {endpoint!r}",
        )
    if line.method.upper() != "POST":
        return line.custom_id, _error("invalid_method", f"Line {number}: method must be POST")
    return line.custom_id, None


def _check_dataset_row(
    value: dict[str, Any], number: int, model: str | None
) -> dict[str, Any] | None:
    try:
        dataset_row_to_chat_body(value, model=model or "", line_number=number)
    except FoveaError as exc:
        return _error("invalid_request", exc.message)
    return None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def read_line(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as source:
        source.seek(offset)
        return source.read(length)
