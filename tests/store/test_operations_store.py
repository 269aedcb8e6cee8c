"""A deferred completion's stored request: kept to run it (and run it again after a restart),
dropped once answered when the client opted out of logging."""

from __future__ import annotations

from fovea.iam.service import IamService
from fovea.store.database import Database
from fovea.store.operations import OperationKind, OperationStore


def test_an_opted_out_request_is_dropped_once_answered(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    folder, _, _ = IamService(database).bootstrap()
    store = OperationStore(database)
    request = {"model": "m", "messages": [{"role": "user", "content": "secret question"}]}

    def created() -> str:
        return store.create(
            folder_id=folder.id,
            kind=OperationKind.COMPLETION,
            created_by="sa",
            description="Async GPT Completion",
            request=request,
        ).id

    kept, dropped = created(), created()
    assert store.finish(kept, response={"text": "answer"})
    assert store.finish(dropped, response={"text": "answer"}, forget_request=True)
    assert store.get(kept).request == request
    assert store.get(dropped).request is None
    assert store.get(dropped).response == {"text": "answer"}
    assert not store.finish(dropped, error={"status": 500}, forget_request=True)  # once only
    database.dispose()
