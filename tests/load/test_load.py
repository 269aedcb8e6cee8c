"""Many clients at once against a real ``fovea serve`` on the demo model, one folder, a mix of
well-formed, malformed and oversized chat requests (bench/load.py is the long version).

Under load the server answers every request (no 5xx, no connection dropped without a
response), refuses what is over the folder's quota with 429 and ``Retry-After``, refuses a
malformed request with its 400 even while the folder is at its limit, and gives back the files,
threads and memory the load took.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from fovea.store.quotas import Quota, QuotaStore
from tests.conftest import Keys, make_keys
from tests.processes import free_port, start_fovea, stop_process, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
CLIENTS = 50
REQUESTS_PER_CLIENT = 4
MAX_IMAGE_BYTES = 1_000_000  # so that an oversized image is 2 MB, not 30
MIB = 1024 * 1024
DROPPED = -1  # the connection ended with no response


def _body(messages: object, **extra: object) -> bytes:
    return json.dumps(
        {"model": "gemma-3-demo", "max_tokens": 1, "messages": messages, **extra}
    ).encode()


def _image(data: bytes) -> dict[str, object]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


QUESTION = [{"role": "user", "content": "Name a colour."}]
TWO_IMAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare these two pictures"},
            _image((IMAGES / "sunset.png").read_bytes()),
            _image((IMAGES / "house.png").read_bytes()),
        ],
    }
]
WELL_FORMED = {
    "text": _body(QUESTION),
    "streaming": _body(QUESTION, stream=True),
    "two images": _body(TWO_IMAGES),
}
MALFORMED = {
    "null content": _body([{"role": "user", "content": None}]),
    "bad JSON": b'{"model": "gemma-3-demo", "messages": [',
    "wrong types": _body("hello", temperature="hot"),
}
OVERSIZED = _body([{"role": "user", "content": [_image(os.urandom(2 * MAX_IMAGE_BYTES))]}])
KINDS = [*WELL_FORMED.items(), *MALFORMED.items(), ("oversized image", OVERSIZED)]


@dataclass
class Server:
    url: str
    key: str
    keys: Keys
    process: psutil.Process

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("home")
    catalog = home / "models.toml"
    catalog.write_text(
        '[[deployments]]\nname = "gemma-3-demo"\nchat_template = "gemma3"\ncontext_length = 2048\n'
        f'[deployments.branches.latest]\nmodel = "{demo_model.model}"\n'
        f'mmproj = "{demo_model.mmproj}"\n'
    )
    keys = make_keys(Settings(home=home))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_fovea(
        home, port, FOVEA_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES), FOVEA_LOG_LEVEL="warning"
    )
    try:
        yield Server(f"{base}/v1/chat/completions", keys.api_key, keys, psutil.Process(process.pid))
    finally:
        stop_process(process)
        keys.database.dispose()


@dataclass
class Outcome:
    kind: str
    status: int
    retry_after: str | None = None


async def _send(client: httpx.AsyncClient, url: str, kind: str, body: bytes) -> Outcome:
    try:
        async with client.stream("POST", url, content=body) as response:
            async for _ in response.aiter_bytes():
                pass
    except httpx.TransportError:
        return Outcome(kind, DROPPED)
    return Outcome(kind, response.status_code, response.headers.get("retry-after"))


async def _load(server: Server) -> list[Outcome]:
    """``CLIENTS`` clients, each sending ``REQUESTS_PER_CLIENT`` requests one after another,
    every client starting at another kind."""
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=300, limits=limits, headers=server.headers()) as client:

        async def one_client(index: int) -> list[Outcome]:
            turns = range(index, index + REQUESTS_PER_CLIENT)
            return [await _send(client, server.url, *KINDS[t % len(KINDS)]) for t in turns]

        per_client = await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    return [outcome for outcomes in per_client for outcome in outcomes]


@dataclass
class PeakRss:
    """The process's RSS sampled on a thread while the load runs."""

    process: psutil.Process
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up(server: Server) -> None:
    """One request of each kind alone: the baseline has every path's pools and caches."""
    with httpx.Client(timeout=300, headers=server.headers()) as client:
        for _, body in KINDS:
            client.post(server.url, content=body)


def test_fifty_clients_get_answers_and_leave_nothing_behind(server: Server) -> None:
    _warm_up(server)
    before = server.process.memory_info().rss
    fds, threads = server.process.num_fds(), server.process.num_threads()

    with PeakRss(server.process) as rss:
        outcomes = asyncio.run(_load(server))

    statuses = Counter((o.kind, o.status) for o in outcomes)
    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    assert not [o for o in outcomes if o.status == DROPPED], statuses
    assert not [o for o in outcomes if o.status >= 500], statuses
    for outcome in outcomes:
        if outcome.kind in WELL_FORMED:
            assert outcome.status in (200, 429), statuses
        elif outcome.kind in MALFORMED:
            assert outcome.status == 400, statuses
        else:
            assert outcome.status == 413, statuses
    assert any(o.status == 200 for o in outcomes), statuses
    refusals = [o for o in outcomes if o.status == 429]
    assert all(o.retry_after and int(o.retry_after) >= 1 for o in refusals), statuses

    # Load-sized growth (a file, a thread or megabytes per request) would be far past these.
    # What remains is pooled: database connections (up to 5), and worker threads, which exit
    # after 10 s idle.
    assert rss.peak < before + 400 * MIB
    process = server.process
    wait_for(
        lambda: process.num_fds() <= fds + 12 and process.num_threads() <= threads + 2,
        "the server's connections and threads to go back to their pools",
    )
    assert process.memory_info().rss < before + 150 * MIB


def test_a_malformed_request_gets_its_400_while_the_folder_is_at_its_limit(
    server: Server,
) -> None:
    quotas = QuotaStore(server.keys.database)
    # A folder allowed no generation at all is at its limit for every request.
    quotas.set(Quota(server.keys.folder_id, concurrent=0))
    try:
        with httpx.Client(timeout=300, headers=server.headers()) as client:
            refused = wait_for(
                lambda: _refused(client.post(server.url, content=WELL_FORMED["text"])),
                "the server to apply the folder's quota",
            )
            assert int(refused.headers["retry-after"]) >= 1
            for name, body in MALFORMED.items():
                response = client.post(server.url, content=body)
                assert response.status_code == 400, (name, response.text)
                assert response.json()["error"]["type"] == "invalid_request_error"
            assert client.post(server.url, content=OVERSIZED).status_code == 413
    finally:
        quotas.remove(server.keys.folder_id)


def _refused(response: httpx.Response) -> httpx.Response | None:
    return response if response.status_code == 429 else None
