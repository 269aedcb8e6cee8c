"""The cloud's dataset rows: format detection, conversion to chat requests, Parquet results."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from fovea.errors import InvalidRequestError
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.datasets import rows as datasets
from fovea.services.datasets.rows import (
    dataset_result_row,
    dataset_row_to_chat_body,
    detect_format,
    jsonl_to_parquet,
    write_parquet,
)

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
IMAGE_ROW = {
    "request": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in the picture?"},
                {"type": "image", "image": PNG_B64},
            ],
        }
    ]
}
TEXT_ROW = {
    "request": [
        {"role": "system", "text": "Answer briefly."},
        {"role": "user", "text": "Capital of France?"},
    ]
}
OPENAI_LINE = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}


def jsonl(*rows: Any) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


# -- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        (jsonl(IMAGE_ROW), "dataset"),
        (jsonl(TEXT_ROW), "dataset"),
        (b"\n  \n" + jsonl(TEXT_ROW), "dataset"),
        (b"\xef\xbb\xbf" + jsonl(TEXT_ROW), "dataset"),
        (jsonl(OPENAI_LINE), "openai"),
        (b'{"request": ', "openai"),
        (b"not json", "openai"),
        (b'["request"]', "openai"),
        (b"", "openai"),
    ],
)
def test_detect_format(first_line: bytes, expected: str) -> None:
    assert detect_format(first_line) == expected


# -- rows to chat requests ------------------------------------------------------------------


def test_image_row_becomes_text_and_image_url_parts() -> None:
    body = dataset_row_to_chat_body(IMAGE_ROW, model="gpt://f/gemma-3-demo", line_number=1)
    assert body["model"] == "gpt://f/gemma-3-demo"
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"] == [
        {"type": "text", "text": "What is in the picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]
    ChatCompletionRequest.model_validate(body)


def test_text_row_becomes_string_contents() -> None:
    body = dataset_row_to_chat_body(TEXT_ROW, model="m", line_number=1)
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Capital of France?"},
        ],
    }
    ChatCompletionRequest.model_validate(body)


def test_plain_string_content_assistant_role_and_unknown_keys() -> None:
    row = {
        "request": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "text": "Again"},
        ],
        "max_tokens": 5,
        "id": 7,
    }
    body = dataset_row_to_chat_body(row, model="m", line_number=3)
    assert set(body) == {"model", "messages"}
    assert [m["content"] for m in body["messages"]] == ["Hi", "Hello!", "Again"]


def test_unrecognised_image_gets_a_generic_label_and_data_urls_stay() -> None:
    row = {
        "request": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": "AAAA"},
                    {"type": "image", "image": "data:image/jpeg;base64,/9j/"},
                ],
            }
        ]
    }
    parts = dataset_row_to_chat_body(row, model="m", line_number=1)["messages"][0]["content"]
    assert [p["image_url"]["url"] for p in parts] == [
        "data:image/*;base64,AAAA",
        "data:image/jpeg;base64,/9j/",
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([], "line 7: expected a JSON object"),
        ({}, "line 7: request: expected a non-empty list of messages"),
        ({"request": []}, "line 7: request: expected a non-empty list of messages"),
        ({"request": ["hi"]}, "line 7: request[0]: expected an object"),
        ({"request": [{"role": "tool", "text": "x"}]}, "line 7: request[0].role: expected one of"),
        ({"request": [{"role": "user"}]}, "line 7: request[0]: missing 'text' or 'content'"),
        ({"request": [{"role": "user", "text": 3}]}, "line 7: request[0]: 'text' must be a string"),
        (
            {
                "request": [
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}
                ]
            },
            "line 7: request[0].content[1]: missing 'image'",
        ),
        (
            {"request": [{"role": "user", "content": [{"type": "text"}]}]},
            "line 7: request[0].content[0]: missing 'text'",
        ),
        (
            {"request": [{"role": "user", "content": [{"type": "audio"}]}]},
            "line 7: request[0].content[0]: expected a part of type 'text' or 'image'",
        ),
        (
            {"request": [{"role": "user", "content": []}]},
            "line 7: request[0].content: expected a string or a list of parts",
        ),
    ],
)
def test_malformed_rows_name_the_line_and_field(row: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        dataset_row_to_chat_body(row, model="m", line_number=7)
    assert caught.value.message.startswith(message)
    assert caught.value.status_code == 400


def test_result_row_is_the_input_row_plus_response() -> None:
    result = dataset_result_row(TEXT_ROW, "Paris.")
    assert result == {**TEXT_ROW, "response": "Paris."}
    assert "response" not in TEXT_ROW


# -- Parquet ----------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_rows_and_base64_images(tmp_path: Path) -> None:
    rows = [dataset_result_row(IMAGE_ROW, "A cat."), dataset_result_row(TEXT_ROW, "Paris.")]
    path = tmp_path / "results.parquet"
    write_parquet(rows, path)
    table = pq.read_table(path)
    assert table.num_rows == 2
    assert table.column_names == ["request", "response"]
    assert table.column("response").to_pylist() == ["A cat.", "Paris."]
    request = json.loads(table.column("request")[0].as_py())
    assert request[0]["content"][1]["image"] == PNG_B64
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]


def test_parquet_optional_columns_when_present(tmp_path: Path) -> None:
    rows = [
        {**dataset_result_row(TEXT_ROW, "Paris."), "line_number": 1, "custom_id": "a"},
        {"request": TEXT_ROW["request"], "line_number": 2, "custom_id": "b", "error": None},
        {"custom_id": "c", "response": {"status_code": 200}, "error": {"message": "x"}},
    ]
    path = tmp_path / "results.parquet"
    write_parquet(rows, path)
    table = pq.read_table(path)
    assert table.column_names == ["request", "response", "custom_id", "line_number", "error"]
    assert table.column("line_number").to_pylist() == [1, 2, None]
    assert table.column("custom_id").to_pylist() == ["a", "b", "c"]
    assert table.column("error").to_pylist() == [None, None, '{"message": "x"}']
    assert table.column("response").to_pylist() == ["Paris.", None, '{"status_code": 200}']


def test_parquet_write_failure_leaves_no_file(tmp_path: Path) -> None:
    def rows() -> Any:
        yield dataset_result_row(TEXT_ROW, "ok")
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_parquet(rows(), tmp_path / "results.parquet")
    assert list(tmp_path.iterdir()) == []


def test_parquet_of_no_rows_has_the_two_columns(tmp_path: Path) -> None:
    write_parquet([], tmp_path / "empty.parquet")
    table = pq.read_table(tmp_path / "empty.parquet")
    assert (table.num_rows, table.column_names) == (0, ["request", "response"])


def test_jsonl_to_parquet_streams_5000_lines(tmp_path: Path) -> None:
    source = tmp_path / "results.jsonl"
    with source.open("wb") as out:
        for number in range(1, 5001):
            row = IMAGE_ROW if number % 2 else TEXT_ROW
            out.write(jsonl({**dataset_result_row(row, f"answer {number}"), "line_number": number}))
            if number == 2500:
                out.write(b"\n")
    target = tmp_path / "results.parquet"
    jsonl_to_parquet(source, target)
    parquet = pq.ParquetFile(target)
    assert parquet.metadata.num_rows == 5000
    assert parquet.metadata.num_row_groups >= 5  # written in batches, not in one piece
    table = parquet.read()
    assert table.column("line_number").to_pylist() == list(range(1, 5001))
    assert table.column("response")[4999].as_py() == "answer 5000"
    assert PNG_B64 in table.column("request")[0].as_py()


def test_jsonl_to_parquet_reports_a_bad_line(tmp_path: Path) -> None:
    source = tmp_path / "results.jsonl"
    source.write_bytes(jsonl(dataset_result_row(TEXT_ROW, "ok")) + b"{oops\n")
    with pytest.raises(InvalidRequestError, match="line 2: not valid JSON"):
        jsonl_to_parquet(source, tmp_path / "results.parquet")
    assert not (tmp_path / "results.parquet").exists()


def test_parquet_refuses_a_column_the_first_rows_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "BATCH_ROWS", 2)
    rows = [dataset_result_row(TEXT_ROW, "ok")] * 2 + [{"request": [], "error": "late"}]
    with pytest.raises(InvalidRequestError, match="'error' is missing from the first rows"):
        write_parquet(rows, tmp_path / "results.parquet")
    assert list(tmp_path.iterdir()) == []
