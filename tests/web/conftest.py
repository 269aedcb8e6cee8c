"""Browser tests of the playground and console: a real ``fovea serve`` on the demo model, driven
by Playwright in Debian's Chromium (``make install-chromium``; Playwright cannot download its own
browsers here, so its ``executable_path`` points at Debian's).

One server serves the whole module set (starting one loads the model); each test gets a fresh
browser context, so nothing a test stores in the page (the key in session storage) leaks into
the next. Every request a page makes is recorded: none may leave the server's origin.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from fovea.modelgen.demo import DemoModelFiles
from fovea.settings import Settings
from tests.conftest import make_keys
from tests.processes import free_port, link_demo_model, start_fovea, stop_process

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# The server's request limit, so that a picture the page lets through (under its own 20 MiB
# check) meets the server's 413: the server stays the judge.
MAX_REQUEST_BYTES = 3 * 1024 * 1024
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 360, "height": 740}


@dataclass
class WebServer:
    origin: str
    folder_id: str
    home: Path
    log: Path
    # Keys by what they may do (tests/web/conftest.py's server fixture makes them).
    chat_key: str  # ai.languageModels.user: chat only
    viewer_key: str  # ai.viewer: reads batches, files, usage
    editor_key: str  # ai.editor: batches and files too, and chat
    admin_key: str  # ai.admin with the yc.iam.manage scope: the IAM API too

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"


@pytest.fixture(scope="session")
def web_server(
    tmp_path_factory: pytest.TempPathFactory, demo_model: DemoModelFiles
) -> Iterator[WebServer]:
    home = tmp_path_factory.mktemp("web-home")
    link_demo_model(home, demo_model)
    keys = make_keys(Settings(home=home))
    iam = keys.iam

    def key_with(role: str, *scopes: str) -> str:
        account = iam.create_service_account(keys.folder_id, role.replace(".", "-").lower())
        iam.grant_role(keys.folder_id, account.id, role)
        if scopes:
            return iam.create_key(account.id, scopes=scopes).secret
        return iam.create_key(account.id).secret

    viewer_key = key_with("ai.viewer")
    editor_key = key_with("ai.editor")
    admin_key = key_with("ai.admin", "yc.ai.foundationModels.execute", "yc.iam.manage")
    keys.database.dispose()
    port = free_port()
    log = home / "server.log"
    origin = f"http://127.0.0.1:{port}"
    process = start_fovea(
        home, port, FOVEA_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES), FOVEA_AUTH_CACHE_TTL_S="0"
    )
    try:
        yield WebServer(
            origin, keys.folder_id, home, log, keys.api_key, viewer_key, editor_key, admin_key
        )
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `make install-chromium`")
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Requests:
    """Every URL the page asked for, to check that none left the server's origin, and every
    uncaught error of the page's scripts (there must be none)."""

    urls: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)

    def foreign(self, origin: str) -> list[str]:
        local = (origin, "data:", "blob:")
        return [url for url in self.urls if not url.startswith(local)]


@pytest.fixture
def requests_seen() -> Requests:
    return Requests()


@pytest.fixture
def context(
    browser: Browser, web_server: WebServer, requests_seen: Requests
) -> Iterator[BrowserContext]:
    context = browser.new_context(
        viewport=DESKTOP, base_url=web_server.origin, accept_downloads=True
    )
    context.set_default_timeout(30_000)
    context.on("request", lambda request: requests_seen.urls.append(request.url))
    context.on("weberror", lambda error: requests_seen.script_errors.append(str(error.error)))
    yield context
    context.close()
    assert requests_seen.foreign(web_server.origin) == []
    assert requests_seen.script_errors == []


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, key: str, path: str = "/") -> None:
    """Open ``path`` and sign in with ``key`` as a user would: type it, press Enter."""
    page.goto(path)
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    page.get_by_role("button", name="Sign out").wait_for()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot under docs/screenshots (the README shows them) when
    FOVEA_UPDATE_SCREENSHOTS=1, else under the test's temporary directory's sibling."""
    target = SCREENSHOTS if os.environ.get("FOVEA_UPDATE_SCREENSHOTS") == "1" else None
    path = (target or Path(os.environ.get("TMPDIR", "/tmp")) / "fovea-screenshots") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
