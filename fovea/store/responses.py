"""Stored responses of the Responses API, one row each, per folder. Synchronous: call off the
event loop.

A row keeps one turn: the chat messages its input became (images as sent, data URLs included)
and the response. A conversation is read back by following ``previous_response_id`` to its
first turn, so each image is stored once, with the turn that sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select

from fovea.errors import NotFoundError
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import StoredResponseRecord
from fovea.store.transaction import transaction


@dataclass(frozen=True)
class StoredTurn:
    """One stored response: the chat messages of its input, and the response object."""

    id: str
    previous_response_id: str | None
    messages: list[dict[str, Any]]
    response: dict[str, Any]


class ResponseStore:
    """Each method is one transaction; another folder's response is absent."""

    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def add(self, folder_id: str, turn: StoredTurn) -> None:
        record = StoredResponseRecord(
            id=turn.id,
            folder_id=folder_id,
            previous_response_id=turn.previous_response_id,
            created_at=self._clock(),
            messages=turn.messages,
            response=turn.response,
        )
        with transaction(self._database) as session:
            session.add(record)

    def response(self, response_id: str, folder_id: str) -> dict[str, Any] | None:
        """The response object ``response_id`` of ``folder_id`` (its input left unread)."""
        query = select(StoredResponseRecord.response).where(
            StoredResponseRecord.id == response_id, StoredResponseRecord.folder_id == folder_id
        )
        with transaction(self._database) as session:
            return session.scalar(query)

    def turn(self, response_id: str, folder_id: str) -> StoredTurn | None:
        with transaction(self._database) as session:
            return _turn(session.get(StoredResponseRecord, response_id), folder_id)

    def conversation(self, response_id: str, folder_id: str) -> list[StoredTurn]:
        """The turns that end with ``response_id``, first turn first. ``NotFoundError`` if it is
        absent, or if an earlier turn it continues was deleted."""
        turns: list[StoredTurn] = []
        with transaction(self._database) as session:
            next_id: str | None = response_id
            while next_id is not None:
                turn = _turn(session.get(StoredResponseRecord, next_id), folder_id)
                if turn is None:
                    raise _missing(response_id, next_id)
                turns.append(turn)
                next_id = turn.previous_response_id
        turns.reverse()
        return turns

    def delete(self, response_id: str, folder_id: str) -> bool:
        """Whether there was such a response to delete."""
        with transaction(self._database) as session:
            result = session.execute(
                delete(StoredResponseRecord).where(
                    StoredResponseRecord.id == response_id,
                    StoredResponseRecord.folder_id == folder_id,
                )
            )
            return cast(CursorResult[Any], result).rowcount > 0

    def delete_older_than(self, moment: datetime) -> int:
        """Delete the responses made before ``moment``; returns how many there were. A
        conversation continuing one of them cannot be continued any more (as after ``delete``)."""
        with transaction(self._database) as session:
            result = session.execute(
                delete(StoredResponseRecord).where(StoredResponseRecord.created_at < moment)
            )
            return int(cast(CursorResult[Any], result).rowcount)


def _turn(record: StoredResponseRecord | None, folder_id: str) -> StoredTurn | None:
    if record is None or record.folder_id != folder_id:
        return None
    return StoredTurn(record.id, record.previous_response_id, record.messages, record.response)


def _missing(response_id: str, missing_id: str) -> NotFoundError:
    if missing_id == response_id:
        message = f"Previous response with id '{response_id}' not found."
    else:
        message = (
            f"Previous response with id '{response_id}' continues response '{missing_id}', "
            "which was deleted: its conversation cannot be rebuilt. Start a new conversation "
            "(send the whole history as input)."
        )
    return NotFoundError(message, param="previous_response_id")
