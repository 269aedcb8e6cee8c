"""A batch's output file has an id derived from the batch, so two replicas finalizing it (one
whose lease lapsed mid-write) write one file: the second finds the first's row, keeps its bytes
and returns it, rather than failing and deleting the bytes that row points at."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from fovea.iam.service import IamService
from fovea.services.access import AccessControl
from fovea.services.files import FileService, derived_file_id
from fovea.services.storage import DirectoryStorage
from fovea.store.database import Database
from fovea.store.files import FileStore


def test_two_writers_of_one_derived_file_leave_one_whole_file(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'fovea.db'}")
    database.migrate()
    folder, _, _ = IamService(database).bootstrap()
    storage = DirectoryStorage(tmp_path / "files")
    replicas = [
        FileService(FileStore(database), AccessControl(IamService(database)), storage)
        for _ in range(2)
    ]
    file_id = derived_file_id("batch_1:output")
    rows = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'

    def write_first(sink: BinaryIO) -> None:
        sink.write(rows)

    def write_second(sink: BinaryIO) -> None:
        # The first replica finishes while the second is still writing.
        replicas[0].create_stored(
            folder.id, "out.jsonl", "batch_output", write_first, file_id=file_id
        )
        sink.write(rows)

    second = replicas[1].create_stored(
        folder.id, "out.jsonl", "batch_output", write_second, file_id=file_id
    )
    assert second.id == file_id
    stored = replicas[0].get_stored(file_id, folder.id)
    assert stored.path.read_bytes() == rows  # the row's bytes are there, whole
    assert sorted(p.name for p in stored.path.parent.iterdir()) == [file_id]
    database.dispose()
