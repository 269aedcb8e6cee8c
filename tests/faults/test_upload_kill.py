"""``kill -9`` of a real server in the middle of an upload: after the restart every listed file
has all its bytes, the half-received upload is not a file, and its staged bytes are swept (but
never those of a writer still alive, nor another machine's on a shared volume)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fovea.services.storage import DirectoryStorage
from fovea.services.uploads import BATCH_BYTES
from tests.faults.node import Node, new_node
from tests.processes import wait_for

MiB = 1024 * 1024
BOUNDARY = "faultboundary"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = new_node(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _multipart_head(filename: str) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def _start_upload(node: Node, size: int, sent: int) -> socket.socket:
    """An upload of ``size`` bytes of which only the first ``sent`` go out (then it stalls)."""
    head = _multipart_head("big.bin")
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = (
        "POST /v1/files HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{node.port}\r\n"
        f"Authorization: Bearer {node.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n"
    ).encode()
    connection = socket.create_connection(("127.0.0.1", node.port))
    connection.sendall(headers + head + b"x" * sent)
    return connection


@pytest.mark.slow
def test_kill_9_mid_upload_leaves_no_file_and_its_bytes_are_swept(node: Node) -> None:
    node.start()
    kept = node.api().files.create(file=("kept.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch")

    upload = _start_upload(node, size=8 * MiB, sent=3 * MiB)
    try:
        # The server has written part of it to disk when it dies.
        staged = wait_for(
            lambda: [p for p in node.partials() if p.stat().st_size >= BATCH_BYTES],
            "the upload's bytes on disk",
        )
        node.kill()
    finally:
        upload.close()
    assert all(path.exists() for path in staged)  # what the dead server left behind

    node.start()
    assert node.partials() == []  # swept at start: its writer is gone
    api = node.api()
    assert [f.id for f in api.files.list()] == [kept.id]
    assert api.files.content(kept.id).content == b'{"a": 1}\n'
    leftovers = [p.name for p in (node.files_dir / node.folder_id).iterdir()]
    assert leftovers == [kept.id]  # no bytes without a row either

    again = api.files.create(file=("again.bin", io.BytesIO(b"y" * MiB)), purpose="batch")
    assert api.files.content(again.id).content == b"y" * MiB


def test_only_partials_of_writers_gone_are_swept_at_once(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path)
    writing = storage.staging_path("folder/file-live")  # this process, still writing
    writing.write_bytes(b"in progress")
    dead_pid = _exited_pid()
    host = _host_tag(storage)
    left = writing.with_name(f"file-dead.{host}~{dead_pid}~00ff00ff.part")
    left.write_bytes(b"half")
    elsewhere = writing.with_name(f"file-other.another-host~{dead_pid}~00ff00ff.part")
    elsewhere.write_bytes(b"another machine's upload")

    assert storage.sweep_partials(older_than_s=24 * 3600) == 1
    assert (writing.exists(), left.exists(), elsewhere.exists()) == (True, False, True)


def _exited_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid names no process now
    return child.pid


@pytest.mark.slow
def test_bytes_put_in_place_but_never_committed_are_swept_an_hour_on(node: Node) -> None:
    node.start()
    api = node.api()
    kept = api.files.create(file=("kept.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch")
    node.kill()
    # What a writer killed between putting its bytes in place and committing the row leaves:
    # the bytes under a file id no row has, and a Parquet copy a dead writer began of them.
    storage = DirectoryStorage(node.files_dir)
    orphan, recent = (f"{node.folder_id}/file-{n:024x}" for n in (1, 2))
    for key in (orphan, recent):
        staged = storage.staging_path(key)
        staged.write_bytes(b'{"b": 2}\n')
        storage.commit(staged, key)
    copy = node.files_dir / f"{orphan}.parquet"
    copy.write_bytes(b"PAR1")
    dead_copy = copy.with_name(f"{copy.name}.{_host_tag(storage)}~{_exited_pid()}~00ff00ff.part")
    dead_copy.write_bytes(b"PAR1 half")
    hour_ago = time.time() - 3700
    for path in (node.files_dir / orphan, copy, node.files_dir / node.folder_id / kept.id):
        os.utime(path, (hour_ago, hour_ago))

    node.start()
    left = sorted(p.name for p in (node.files_dir / node.folder_id).iterdir())
    # The old orphan and its copy are gone; a recent one may still be committing on another
    # replica of a shared volume, so it stays; the dead writer's partial went at once.
    assert left == sorted([kept.id, recent.split("/")[1]])
    assert api.files.content(kept.id).content == b'{"a": 1}\n'


def _host_tag(storage: DirectoryStorage) -> str:
    """This host's name as staged writes carry it."""
    return storage.staging_path("folder/probe").name.split(".")[1].split("~")[0]
