"""The cloud's SDK end to end on its gRPC-only surfaces, against a real ``fovea serve``: deferred
completions, datasets uploaded through signed URLs, batch runs over image datasets and their
results, read by the SDK and seen by Fovea's own batch API."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pyarrow.parquet as pq
import pytest
from PIL import Image
from yandex_ai_studio_sdk.exceptions import DatasetValidationError

from fovea.modelgen.demo import DemoModelFiles
from fovea.services.datasets.rows import dataset_row_to_chat_body
from tests.contract.grpc_node import Node, new_node
from tests.processes import wait_for

pytestmark = pytest.mark.slow

POLL_S = 0.2
IMAGE_TASK = "ImageTextToTextGenerationRequest"


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_row(question: str, *colours: tuple[int, int, int]) -> dict[str, object]:
    content: list[dict[str, str]] = [{"type": "text", "text": question}]
    content += [{"type": "image", "image": png(colour)} for colour in colours]
    return {"request": [{"role": "user", "content": content}]}


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles) -> Iterator[Node]:
    started = new_node(tmp_path_factory.mktemp("sdk-batches"), demo_model)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def upload(node: Node, path: Path, task_type: str = IMAGE_TASK, **options: object) -> object:
    draft = node.sdk().datasets.draft_from_path(
        path=path, task_type=task_type, upload_format="jsonlines", name=path.stem
    )
    return draft.upload(poll_interval=POLL_S, **options)


def test_deferred_completion_is_an_operation_the_sdk_waits_for(node: Node) -> None:
    model = node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=8)
    operation = model.run_deferred("Say hello")
    result = operation.wait(poll_interval=POLL_S)
    assert result.alternatives[0].text
    assert result.usage.completion_tokens <= 8
    # The same request answered synchronously gives the same (greedy) text.
    assert result.alternatives[0].text == model.run("Say hello").alternatives[0].text


def test_an_image_dataset_runs_as_a_batch_and_reads_back(node: Node, tmp_path: Path) -> None:
    rows = [
        image_row("What colour is it?", (220, 30, 30)),
        image_row("Compare the two pictures.", (30, 30, 220), (30, 200, 30)),
        image_row("Describe it.", (240, 240, 240)),
    ]
    dataset = upload(node, write_rows(tmp_path / "pictures.jsonl", rows))
    assert dataset.status.name == "READY"
    assert dataset.rows == 3
    sdk = node.sdk()
    assert dataset.id in [d.id for d in sdk.datasets.list()]

    model = sdk.models.completions("gemma-3-demo").configure(temperature=0, max_tokens=6)
    operation = model.batch.run_deferred(dataset)
    result = operation.wait(poll_interval=POLL_S)

    records = list(result.read())
    assert len(records) == 3
    assert [json.loads(r["request"]) for r in records] == [row["request"] for row in rows]
    assert all(isinstance(r["response"], str) and r["response"] for r in records)
    download = tmp_path / "download"
    download.mkdir()
    [parquet] = result.download(download_path=download)
    assert pq.read_table(parquet).column("response").to_pylist() == [r["response"] for r in records]

    # The task is a Fovea batch: the HTTP API shows it, with its batch-wide options applied.
    info = sdk.batch.get(operation.id).get_task_info()
    assert info.status.name == "COMPLETED"
    assert info.result_dataset_id == result.id
    assert info.source_dataset_id == dataset.id
    assert operation.id in [task.task_id for task in sdk.batch.list_info()]
    with httpx.Client(base_url=node.http, headers=node.headers()) as http:
        batch = http.get(f"/v1/batches/{operation.id}").json()
        assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
        assert batch["completion_options"] == {"temperature": 0.0, "max_tokens": 6}
        output = http.get(f"/v1/files/{batch['output_file_id']}/content").text
    answers = [json.loads(line) for line in output.splitlines()]
    assert [a["response"] for a in answers] == [r["response"] for r in records]

    # Deleting: a finished task, then the datasets.
    sdk.batch.get(operation.id).delete()
    assert operation.id not in [task.task_id for task in sdk.batch.list_info()]
    result.delete()
    dataset.delete()
    assert dataset.id not in [d.id for d in sdk.datasets.list()]


def test_batch_wide_options_bound_every_answer(node: Node, tmp_path: Path) -> None:
    rows = [image_row("Describe this picture in detail.", (200, 100, 0)) for _ in range(2)]
    dataset = upload(node, write_rows(tmp_path / "stories.jsonl", rows))
    model = node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=3)
    result = model.batch.run_deferred(dataset).wait(poll_interval=POLL_S)
    answers = [record["response"] for record in result.read()]

    # Each answer is what a synchronous request with the same options gives: cut at 3 tokens.
    def answer(max_tokens: int) -> tuple[str, dict[str, int]]:
        body = dataset_row_to_chat_body(rows[0], model="gemma-3-demo", line_number=1)
        body.update(temperature=0, max_tokens=max_tokens)
        with httpx.Client(base_url=node.http, headers=node.headers(), timeout=60) as http:
            reply = http.post("/v1/chat/completions", json=body).json()
        return reply["choices"][0]["message"]["content"], reply["usage"]

    short, usage = answer(3)
    assert usage["completion_tokens"] == 3
    assert answers == [short, short]
    assert answer(30)[0] != short


def test_an_invalid_dataset_raises_the_sdks_error_with_row_numbers(
    node: Node, tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    good = json.dumps(image_row("Fine", (1, 2, 3)))
    path.write_text(
        "\n".join(
            [
                good,
                "{not json",
                json.dumps({"request": [{"role": "robot", "text": "Hi"}]}),
                good,
                json.dumps({"request": [{"role": "user", "text": "Hi"}], "x": 1})[:-1],
            ]
        )
        + "\n"
    )
    with pytest.raises(DatasetValidationError) as raised:
        upload(node, path)
    rows = {error.error: error.rows for error in raised.value.errors}
    assert rows == {"invalid_json": (2, 5), "invalid_row": (3,)}
    # Text datasets refuse images.
    with pytest.raises(DatasetValidationError) as text_only:
        upload(
            node,
            write_rows(tmp_path / "text.jsonl", [image_row("Hi", (9, 9, 9))]),
            task_type="TextToTextGenerationRequest",
        )
    assert [error.rows for error in text_only.value.errors] == [(1,)]


def test_a_large_dataset_uploads_in_parts(node: Node, tmp_path: Path) -> None:
    # Over three of the SDK's smallest parts (5 MiB each).
    noise = base64.b64encode(bytes(range(256)) * 4096 * 3).decode()
    row = {"request": [{"role": "user", "content": [{"type": "text", "text": "Noise"}]}]}
    padded = {**row, "note": noise}
    path = write_rows(tmp_path / "big.jsonl", [padded] * 4)
    assert path.stat().st_size > 12 * 1024 * 1024
    dataset = upload(
        node, path, task_type="TextToTextGenerationRequest", chunk_size=5 * 1024 * 1024
    )
    assert dataset.status.name == "READY"
    assert dataset.size_bytes == path.stat().st_size
    assert dataset.rows == 4


def test_signed_urls_refuse_tampering(node: Node, tmp_path: Path) -> None:
    from yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as datasets
    from yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as datasets_grpc

    metadata = [("authorization", f"Api-Key {node.api_key}")]
    with grpc.insecure_channel(node.grpc) as channel:
        stub = datasets_grpc.DatasetServiceStub(channel)
        created = stub.Create(
            datasets.CreateDatasetRequest(
                folder_id=node.folder_id, task_type=IMAGE_TASK, upload_format="jsonlines"
            ),
            metadata=metadata,
        )
        url = stub.GetUploadDraftUrl(
            datasets.GetUploadDraftUrlRequest(dataset_id=created.dataset_id, size_bytes=10),
            metadata=metadata,
        ).upload_url
    tampered = url.replace(created.dataset_id, "fds" + "0" * 20)
    refused = httpx.put(tampered, content=b"{}\n")
    assert refused.status_code == 403
    assert "signature" in refused.json()["error"]["message"]
    unsigned = httpx.put(url.split("?")[0], content=b"{}\n")
    assert unsigned.status_code == 403
    assert httpx.put(url, content=b"{}\n").status_code == 200


def test_wrong_keys_and_folders_get_the_sdks_errors(node: Node) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unknown_key:
        list(node.sdk("fva.nope.nope").datasets.list())
    assert unknown_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        list(node.sdk(folder_id="b1gsomeoneelse").datasets.list())
    assert foreign.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "b1gsomeoneelse" in (foreign.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        node.sdk().batch.get("batch_" + "0" * 24).get_task_info()
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_running_batch_cancels_and_a_dataset_updates(node: Node, tmp_path: Path) -> None:
    rows = [image_row(f"Describe picture {n} in detail.", (n * 20, 50, 90)) for n in range(12)]
    dataset = upload(node, write_rows(tmp_path / "many.jsonl", rows))
    renamed = dataset.update(name="renamed", description="twelve pictures", labels={"k": "v"})
    again = node.sdk().datasets.get(dataset.id)
    assert (again.name, again.description, again.labels) == (
        "renamed",
        "twelve pictures",
        {"k": "v"},
    )
    assert renamed.name == "renamed"

    model = node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=60)
    operation = model.batch.run_deferred(dataset)
    with pytest.raises(grpc.aio.AioRpcError) as in_use:
        dataset.delete()  # a running batch still reads it
    assert in_use.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert operation.id in (in_use.value.details() or "")
    operation.cancel()

    def cancelled() -> object | None:
        info = node.sdk().batch.get(operation.id).get_task_info()
        return info if info.status.name == "CANCELED" else None

    info = wait_for(cancelled, "the task cancelled")
    assert not info.result_dataset_id
    with httpx.Client(base_url=node.http, headers=node.headers()) as http:
        batch = http.get(f"/v1/batches/{operation.id}").json()
    assert batch["status"] == "cancelled"
    assert batch["request_counts"]["completed"] < 12
    dataset.delete()  # the batch is over: the dataset can go
    assert dataset.id not in [d.id for d in node.sdk().datasets.list()]
    # A deferred completion cancels as an operation: its wait() reports the cancel.
    deferred = model.run_deferred("Write a long story.")
    deferred.cancel()
    with pytest.raises(Exception, match="cancelled"):
        deferred.wait(poll_interval=POLL_S)


def test_bad_dataset_and_batch_requests_get_clear_grpc_errors(node: Node, tmp_path: Path) -> None:
    from yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as datasets
    from yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as datasets_grpc
    from yandex.cloud.ai.foundation_models.v1 import text_common_pb2 as common
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2 as generation,
    )
    from yandex.cloud.ai.foundation_models.v1.text_generation import (
        text_generation_service_pb2_grpc as generation_grpc,
    )

    metadata = [("authorization", f"Api-Key {node.api_key}")]

    def refused(call: object, request: object) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as raised:
            call(request, metadata=metadata, timeout=30)  # type: ignore[operator]
        return raised.value

    with grpc.insecure_channel(node.grpc) as channel:
        stub = datasets_grpc.DatasetServiceStub(channel)
        create = datasets.CreateDatasetRequest
        wrong_type = refused(stub.Create, create(task_type="Poetry", upload_format="jsonlines"))
        assert wrong_type.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ImageTextToTextGenerationRequest" in (wrong_type.details() or "")
        wrong_format = refused(stub.Create, create(task_type=IMAGE_TASK, upload_format="csv"))
        assert wrong_format.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "jsonlines" in (wrong_format.details() or "")
        long_name = refused(
            stub.Create, create(name="n" * 256, task_type=IMAGE_TASK, upload_format="jsonlines")
        )
        assert long_name.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 255" in (long_name.details() or "")

        draft = stub.Create(
            create(task_type=IMAGE_TASK, upload_format="jsonlines"), metadata=metadata
        )
        too_big = refused(
            stub.GetUploadDraftUrl,
            datasets.GetUploadDraftUrlRequest(dataset_id=draft.dataset_id, size_bytes=3 << 30),
        )
        assert too_big.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "FOVEA_MAX_FILE_BYTES" in (too_big.details() or "")
        not_ready = refused(
            stub.GetDownloadUrls, datasets.GetDownloadUrlsRequest(dataset_id=draft.dataset_id)
        )
        assert not_ready.code() == grpc.StatusCode.FAILED_PRECONDITION
        no_data = refused(
            stub.Validate, datasets.ValidateDatasetRequest(dataset_id=draft.dataset_id)
        )
        assert no_data.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "upload it" in (no_data.details() or "")

        # A part whose ETag is not the one its PUT returned is refused when the upload finishes.
        [url] = stub.StartMultipartUploadDraft(
            datasets.StartMultipartUploadDraftRequest(
                dataset_id=draft.dataset_id, size_bytes=3, parts=1
            ),
            metadata=metadata,
        ).multipart_upload_urls
        assert httpx.put(url, content=b"{}\n").headers["etag"]
        wrong_etag = refused(
            stub.FinishMultipartUploadDraft,
            datasets.FinishMultipartUploadDraftRequest(
                dataset_id=draft.dataset_id,
                uploaded_parts=[datasets.UploadedPartInfo(part_num=1, etag='"beef"')],
            ),
        )
        assert wrong_etag.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ETag" in (wrong_etag.details() or "")

        batches = generation_grpc.TextGenerationBatchServiceStub(channel)
        model_uri = f"gpt://{node.folder_id}/gemma-3-demo"
        on_draft = refused(
            batches.Completion,
            generation.BatchCompletionRequest(
                model_uri=model_uri, source_dataset_id=draft.dataset_id
            ),
        )
        assert on_draft.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "upload and validate" in (on_draft.details() or "")
        hot = refused(
            batches.Completion,
            generation.BatchCompletionRequest(
                model_uri=model_uri,
                source_dataset_id=draft.dataset_id,
                completion_options=common.CompletionOptions(temperature={"value": 3.0}),
            ),
        )
        assert hot.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "temperature" in (hot.details() or "")
