"""A dataset's rows checked as the cloud checks them: errors grouped by kind, with row numbers."""

from __future__ import annotations

import binascii
import json
import re
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea.errors import FoveaError
from fovea.services.datasets.rows import dataset_row_to_chat_body

IMAGE_REQUESTS = "ImageTextToTextGenerationRequest"
TEXT_REQUESTS = "TextToTextGenerationRequest"
# A batch's results: each request row with its "response".
RESULTS = "TextToTextGeneration"
REQUEST_TASK_TYPES = (IMAGE_REQUESTS, TEXT_REQUESTS)
TASK_TYPES = (*REQUEST_TASK_TYPES, RESULTS)
UPLOAD_FORMATS = ("jsonlines",)
MAX_ROWS_PER_ERROR = 1000

_LINE_PREFIX = re.compile(r"^line \d+: ")


@dataclass(frozen=True)
class Validation:
    rows: int
    errors: list[dict[str, Any]]  # {"error", "error_description", "row_numbers"}


def validate_file(path: Path, task_type: str) -> Validation:
    """Every non-blank line of ``path`` checked as a row of ``task_type`` (1-based numbers)."""
    groups: dict[tuple[str, str], list[int]] = {}
    rows = 0
    with path.open("rb") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            rows += 1
            problem = _check_row(line, number, task_type)
            if problem is not None:
                groups.setdefault(problem, []).append(number)
    if rows == 0:
        groups[("empty_dataset", "The dataset has no rows")] = []
    return Validation(rows, list(_errors(groups.items())))


def _errors(groups: Iterable[tuple[tuple[str, str], list[int]]]) -> Iterable[dict[str, Any]]:
    for (error, description), numbers in groups:
        yield {
            "error": error,
            "error_description": description,
            "row_numbers": numbers[:MAX_ROWS_PER_ERROR],
        }


def _check_row(line: bytes, number: int, task_type: str) -> tuple[str, str] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return "invalid_json", "The row is not valid JSON"
    try:
        body = dataset_row_to_chat_body(row, model="", line_number=number)
    except FoveaError as exc:
        return "invalid_row", _LINE_PREFIX.sub("", exc.message)
    if task_type == RESULTS and not isinstance(row.get("response"), str):
        return "missing_response", "A result row needs a string 'response'"
    images = [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "image_url" and isinstance(part.get("image_url"), dict)
    ]
    if images and task_type == TEXT_REQUESTS:
        return (
            "image_in_text_dataset",
            f"A {TEXT_REQUESTS} row has images: use {IMAGE_REQUESTS} for rows with images",
        )
    for url in images:
        if isinstance(url, str) and url.startswith("data:") and not _is_base64(url):
            return "invalid_image", "An image is not valid base64"
    return None


def _is_base64(data_url: str) -> bool:
    _, _, payload = data_url.partition(",")
    try:
        b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(payload)
