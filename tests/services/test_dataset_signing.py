"""Signed dataset URLs and dataset validation, as units: the clock and the files are the test's."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fovea.errors import PermissionDeniedError
from fovea.services.datasets.signing import UrlSigner, load_or_create_key
from fovea.services.datasets.validation import (
    IMAGE_REQUESTS,
    RESULTS,
    TEXT_REQUESTS,
    validate_file,
)
from tests.conftest import png_data_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path, query["expires"][0], query["signature"][0]


def test_a_signed_url_works_until_it_expires() -> None:
    clock = Clock()
    signer = UrlSigner(b"k" * 32, "http://fovea.example:8000/", ttl_s=60, clock=clock)
    url = signer.url("PUT", "/v1/datasets/fds1/upload")
    assert url.startswith("http://fovea.example:8000/v1/datasets/fds1/upload?")
    path, expires, signature = _parts(url)
    signer.check("PUT", path, expires, signature)
    clock.now += 61
    with pytest.raises(PermissionDeniedError, match="expired"):
        signer.check("PUT", path, expires, signature)


def test_a_signed_url_is_good_for_its_method_path_and_key_only() -> None:
    signer = UrlSigner(b"k" * 32, "http://h", ttl_s=60)
    path, expires, signature = _parts(signer.url("PUT", "/v1/datasets/fds1/upload"))
    with pytest.raises(PermissionDeniedError, match="signature"):
        signer.check("GET", path, expires, signature)
    with pytest.raises(PermissionDeniedError, match="signature"):
        signer.check("PUT", "/v1/datasets/fds2/upload", expires, signature)
    with pytest.raises(PermissionDeniedError, match="signature"):
        signer.check("PUT", path, str(int(expires) + 3600), signature)
    with pytest.raises(PermissionDeniedError, match="signature"):
        UrlSigner(b"o" * 32, "http://h", ttl_s=60).check("PUT", path, expires, signature)
    with pytest.raises(PermissionDeniedError, match="'expires' and 'signature'"):
        signer.check("PUT", path, None, signature)


def test_the_signing_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "home" / "signing.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validation_groups_errors_by_kind_with_row_numbers(tmp_path: Path) -> None:
    image = png_data_url((1, 2, 3)).split(",", 1)[1]
    good = {"request": [{"role": "user", "content": [{"type": "image", "image": image}]}]}
    broken_image = {"request": [{"role": "user", "content": [{"type": "image", "image": "@@"}]}]}
    path = _write(
        tmp_path / "rows.jsonl",
        [
            json.dumps(good),
            "[1, 2",
            json.dumps({"request": []}),
            "",
            json.dumps(broken_image),
            json.dumps({"request": [{"role": "robot", "text": "x"}]}),
            "nope",
        ],
    )
    checked = validate_file(path, IMAGE_REQUESTS)
    assert checked.rows == 6
    found = {e["error"]: e["row_numbers"] for e in checked.errors}
    assert found["invalid_json"] == [2, 7]
    assert found["invalid_image"] == [5]
    # Different problems of one kind are told apart by their description.
    invalid_rows = [e for e in checked.errors if e["error"] == "invalid_row"]
    assert sorted(e["row_numbers"][0] for e in invalid_rows) == [3, 6]
    assert all(not e["error_description"].startswith("line ") for e in invalid_rows)
    assert validate_file(path, TEXT_REQUESTS).errors[0]["error"] == "image_in_text_dataset"


def test_validation_of_empty_and_result_datasets(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    assert validate_file(empty, TEXT_REQUESTS).errors == [
        {
            "error": "empty_dataset",
            "error_description": "The dataset has no rows",
            "row_numbers": [],
        }
    ]
    request = {"request": [{"role": "user", "text": "hi"}]}
    results = _write(
        tmp_path / "results.jsonl",
        [json.dumps({**request, "response": "hello"}), json.dumps(request)],
    )
    assert [e["row_numbers"] for e in validate_file(results, RESULTS).errors] == [[2]]
    assert validate_file(results, TEXT_REQUESTS).errors == []
