"""Stored responses on SQLite and PostgreSQL: per folder, conversations read back first turn
first, deletion, and a chain with a deleted turn."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fovea.errors import NotFoundError
from fovea.iam.service import IamService
from fovea.store.database import Database
from fovea.store.responses import ResponseStore, StoredTurn

# An image as a client sends it: a turn keeps it so that a continuation need not resend it.
IMAGE_URL = "data:image/png;base64," + "A" * 200_000


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    database.dispose()


@pytest.fixture
def folders(database: Database) -> tuple[str, str]:
    iam = IamService(database)
    return iam.create_folder("team").id, iam.create_folder("other").id


def turn(response_id: str, previous: str | None, text: str) -> StoredTurn:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "auto"}},
            ],
        }
    ]
    return StoredTurn(response_id, previous, messages, {"id": response_id, "output": [text]})


def test_a_turn_is_read_back_in_its_folder_only(
    database: Database, folders: tuple[str, str]
) -> None:
    store = ResponseStore(database)
    team, other = folders
    store.add(team, turn("resp_1", None, "hello"))
    assert store.response("resp_1", team) == {"id": "resp_1", "output": ["hello"]}
    assert store.turn("resp_1", team) == turn("resp_1", None, "hello")
    assert store.response("resp_1", other) is None
    assert store.turn("resp_1", other) is None
    assert store.response("resp_2", team) is None


def test_a_conversation_comes_back_first_turn_first(
    database: Database, folders: tuple[str, str]
) -> None:
    store = ResponseStore(database)
    team, other = folders
    store.add(team, turn("resp_1", None, "one"))
    store.add(team, turn("resp_2", "resp_1", "two"))
    store.add(team, turn("resp_3", "resp_2", "three"))
    store.add(team, turn("resp_4", "resp_1", "a branch"))
    assert [t.id for t in store.conversation("resp_3", team)] == ["resp_1", "resp_2", "resp_3"]
    assert [t.id for t in store.conversation("resp_4", team)] == ["resp_1", "resp_4"]
    assert store.conversation("resp_3", team)[0].messages == turn("resp_1", None, "one").messages
    with pytest.raises(NotFoundError, match="Previous response with id 'resp_3' not found"):
        store.conversation("resp_3", other)


def test_deleting_a_turn_breaks_the_conversations_after_it(
    database: Database, folders: tuple[str, str]
) -> None:
    store = ResponseStore(database)
    team, other = folders
    store.add(team, turn("resp_1", None, "one"))
    store.add(team, turn("resp_2", "resp_1", "two"))
    assert not store.delete("resp_1", other)
    assert store.delete("resp_1", team)
    assert not store.delete("resp_1", team)
    with pytest.raises(NotFoundError, match="continues response 'resp_1', which was deleted"):
        store.conversation("resp_2", team)
    assert store.turn("resp_2", team) is not None


def test_responses_past_their_retention_are_swept(
    database: Database, folders: tuple[str, str]
) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = ResponseStore(database, clock=lambda: now[0])
    team, other = folders
    store.add(team, turn("resp_old", None, "first"))
    store.add(other, turn("resp_old_other", None, "theirs"))
    now[0] += timedelta(days=20)
    store.add(team, turn("resp_new", "resp_old", "second"))

    assert store.delete_older_than(now[0] - timedelta(days=10)) == 2
    assert store.turn("resp_old", team) is None
    assert store.turn("resp_old_other", other) is None
    assert store.response("resp_new", team) == {"id": "resp_new", "output": ["second"]}
    # The turn it continued is gone: the conversation cannot be rebuilt, and says why.
    with pytest.raises(NotFoundError, match="resp_old"):
        store.conversation("resp_new", team)
    assert store.delete_older_than(now[0] - timedelta(days=10)) == 0
