"""Datasets in the database, on SQLite and PostgreSQL: listing filters and a batch's one result
dataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fovea.iam.service import IamService
from fovea.store.database import Database
from fovea.store.datasets import DatasetStatus, DatasetStore


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    database.dispose()


def fields(folder_id: str, name: str, **values: Any) -> dict[str, Any]:
    return {
        "folder_id": folder_id,
        "name": name,
        "description": "",
        "dataset_metadata": "",
        "task_type": "TextToTextGeneration",
        "upload_format": "jsonlines",
        "labels": {"team": "vision"},
        "status": DatasetStatus.DRAFT,
        "file_id": None,
        "batch_id": None,
        "created_by": "aje00000000000000000",
        **values,
    }


def test_names_match_a_pattern_whatever_their_case(database: Database) -> None:
    folder = IamService(database).create_folder("team").id
    store = DatasetStore(database)
    for name in ("Cats 2024", "small cats", "dogs", "100% cats"):
        store.create(**fields(folder, name))

    def names(pattern: str) -> list[str]:
        found, _ = store.list_datasets(
            folder, statuses=[], name_pattern=pattern, task_types=[], ids=[], offset=0, limit=10
        )
        return sorted(d.name for d in found)

    assert names("cats") == ["100% cats", "Cats 2024", "small cats"]
    assert names("CATS") == names("cats")
    assert names("0% c") == ["100% cats"]  # % is a character, not a wildcard
    assert names("%") == ["100% cats"]


def test_a_batch_has_one_result_dataset(database: Database) -> None:
    folder = IamService(database).create_folder("team").id
    store = DatasetStore(database)
    first = store.create_result(**fields(folder, "results", batch_id="batch_1"))
    again = store.create_result(**fields(folder, "results again", batch_id="batch_1"))
    assert again == first
    assert store.by_batch("batch_1") == first
