"""The console in a real browser: batches uploaded, watched, cancelled and downloaded from the
page; usage drawn from the usage API; API keys created (the secret shown once) and revoked;
what a key without the rights sees; and that each page fits a phone.

The checks wait on what the page shows (Playwright's ``expect`` waits); a batch on the demo
model gets a generous timeout on a busy machine.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from playwright.sync_api import Locator, Page, expect

from tests.web.conftest import PHONE, WebServer, screenshot, sign_in

BATCH_DONE_MS = 240_000
DAY_S = 86_400


def demo_model(web_server: WebServer) -> str:
    return f"gpt://{web_server.folder_id}/gemma-3-demo"


def chat_lines(web_server: WebServer, count: int, max_tokens: int, prefix: str) -> str:
    lines = (
        {
            "custom_id": f"{prefix}-{number}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": demo_model(web_server),
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"Count to {number}."}],
            },
        }
        for number in range(1, count + 1)
    )
    return "".join(json.dumps(line) + "\n" for line in lines)


def start_batch(page: Page, path: Path) -> Locator:
    """Upload ``path`` with the page's form, start it, and return its row in the table."""
    page.get_by_label("Input file (JSONL)").set_input_files(path)
    page.get_by_role("button", name="Start batch").click()
    started = page.get_by_text(re.compile(r"^Started batch_\w+\.$"))
    expect(started).to_be_visible()
    batch_id = started.inner_text().removeprefix("Started ").removesuffix(".")
    return page.locator(f'tr[data-batch-id="{batch_id}"]')


def batch_id_of(row: Locator) -> str:
    batch_id = row.get_attribute("data-batch-id")
    assert batch_id is not None
    return batch_id


def api(web_server: WebServer, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=web_server.origin, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_a_batch_uploaded_from_the_page_completes_and_its_results_download(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(chat_lines(web_server, 3, max_tokens=8, prefix="question"))
    sign_in(page, web_server.editor_key, "/console")

    row = start_batch(page, questions)
    batch_id = batch_id_of(row)
    expect(row.locator(".status")).to_have_text("completed", timeout=BATCH_DONE_MS)
    expect(row).to_contain_text("3/3 completed, 0 failed")

    with page.expect_download() as jsonl_download:
        row.get_by_role("button", name="Download results (JSONL)").click()
    assert jsonl_download.value.suggested_filename == f"{batch_id}-output.jsonl"
    results = [
        json.loads(line) for line in Path(jsonl_download.value.path()).read_text().splitlines()
    ]
    assert sorted(r["custom_id"] for r in results) == ["question-1", "question-2", "question-3"]
    for result in results:
        assert result["response"]["status_code"] == 200
        answer = result["response"]["body"]["choices"][0]["message"]
        assert answer["role"] == "assistant"
        assert isinstance(answer["content"], str)

    with page.expect_download() as parquet_download:
        row.get_by_role("button", name="Download results (Parquet)").click()
    assert parquet_download.value.suggested_filename == f"{batch_id}-output.parquet"
    assert pq.read_table(parquet_download.value.path()).num_rows == 3
    screenshot(page, "console-batches-desktop.png")


def test_a_dataset_file_runs_on_the_model_and_options_chosen_on_the_page(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    rows = tmp_path / "dataset.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"request": [{"role": "user", "text": f"Name colour {n}."}]}) + "\n"
            for n in (1, 2)
        )
    )
    sign_in(page, web_server.editor_key, "/console")
    expect(page.get_by_label("Model")).to_have_value(f"{demo_model(web_server)}/latest")
    page.get_by_text("Completion options (optional)").click()
    page.get_by_label("Max tokens").fill("6")

    row = start_batch(page, rows)
    expect(row).to_contain_text("dataset rows")
    expect(row.locator(".status")).to_have_text("completed", timeout=BATCH_DONE_MS)
    expect(row).to_contain_text("2/2 completed, 0 failed")
    with page.expect_download() as download:
        row.get_by_role("button", name="Download results (Parquet)").click()
    table = pq.read_table(download.value.path()).to_pylist()
    assert len(table) == 2
    assert all(isinstance(r["response"], str) for r in table)
    with api(web_server, web_server.editor_key) as client:
        batch = client.get(f"/v1/batches/{batch_id_of(row)}").json()
    assert batch["completion_options"] == {"max_tokens": 6}


def test_a_running_batch_is_cancelled_from_the_page_and_a_viewer_cannot(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    many = tmp_path / "many.jsonl"
    many.write_text(chat_lines(web_server, 60, max_tokens=256, prefix="long"))
    sign_in(page, web_server.editor_key, "/console")
    row = start_batch(page, many)
    batch_id = batch_id_of(row)
    cancel = row.get_by_role("button", name=f"Cancel {batch_id}")
    expect(cancel).to_be_visible()

    # A viewer, in another tab, sees it run but has no control to cancel it.
    viewer = page.context.new_page()
    sign_in(viewer, web_server.viewer_key, "/console")
    viewer_row = viewer.locator(f'tr[data-batch-id="{batch_id}"]')
    expect(viewer_row.locator(".status")).to_have_text(re.compile("validating|in progress"))
    expect(viewer_row.get_by_role("button")).to_have_count(0)
    viewer.close()

    # Escape keeps it running; confirming cancels it.
    cancel.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Cancel {batch_id}?")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(row.locator(".status")).to_have_text(re.compile("validating|in progress"))
    cancel.click()
    dialog.get_by_role("button", name="Cancel batch").click()
    expect(row.locator(".status")).to_have_text(re.compile("cancelling|cancelled"))
    expect(row.get_by_role("button", name=f"Cancel {batch_id}")).to_have_count(0)
    # Waited for, so that no request of this batch runs on into the next tests.
    expect(row.locator(".status")).to_have_text("cancelled", timeout=BATCH_DONE_MS)


def test_a_file_that_is_not_json_lines_fails_in_the_servers_words(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    not_jsonl = tmp_path / "notes.jsonl"
    not_jsonl.write_text("hello there\nthis is not JSON\n")
    sign_in(page, web_server.editor_key, "/console")
    row = start_batch(page, not_jsonl)
    expect(row.locator(".status")).to_have_text("failed", timeout=BATCH_DONE_MS)
    with api(web_server, web_server.editor_key) as client:
        batch = client.get(f"/v1/batches/{batch_id_of(row)}").json()
    messages = [error["message"] for error in batch["errors"]["data"]]
    assert messages  # e.g. "Line 1 is not valid JSON"
    errors = page.locator("tr.batch-errors").filter(has_text=batch_id_of(row))
    for message in messages:
        expect(errors).to_contain_text(message)


def test_the_lines_that_fail_download_as_the_error_file(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.jsonl"
    lines = chat_lines(web_server, 2, max_tokens=4, prefix="mixed").splitlines()
    unknown = lines[1].replace("gemma-3-demo", "no-such-model")
    mixed.write_text(f"{lines[0]}\n{unknown}\n")
    sign_in(page, web_server.editor_key, "/console")
    row = start_batch(page, mixed)
    batch_id = batch_id_of(row)
    expect(row.locator(".status")).to_have_text("completed", timeout=BATCH_DONE_MS)
    expect(row).to_contain_text("1/2 completed, 1 failed")
    with page.expect_download() as download:
        row.get_by_role("button", name="Download errors (JSONL)").click()
    assert download.value.suggested_filename == f"{batch_id}-errors.jsonl"
    (failed,) = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert failed["custom_id"] == "mixed-2"
    assert failed["response"]["body"]["error"]["code"] == "model_not_found"


def test_the_usage_page_charts_and_lists_the_folders_requests_by_model_and_day(
    page: Page, web_server: WebServer
) -> None:
    with api(web_server, web_server.editor_key) as client:
        for word in ("one", "two"):
            answer = client.post(
                "/v1/chat/completions",
                json={
                    "model": demo_model(web_server),
                    "max_tokens": 4,
                    "messages": [{"role": "user", "content": f"Say {word}."}],
                },
            )
            assert answer.status_code == 200
        today = int(time.time()) // DAY_S * DAY_S
        usage = client.get(
            "/v1/organization/usage/completions",
            params={"start_time": today, "bucket_width": "1d", "group_by": "model"},
        ).json()
    (demo,) = [r for r in usage["data"][0]["results"] if r["model"] == "gemma-3-demo"]
    assert demo["num_model_requests"] >= 2

    sign_in(page, web_server.viewer_key, "/console#/usage")
    chart = page.get_by_role("img", name=re.compile("Tokens per day by model, last 7 days"))
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar").first).to_be_visible()
    expect(page.get_by_role("list", name="Models")).to_contain_text("gemma-3-demo")
    day = time.strftime("%Y-%m-%d", time.gmtime(today))
    row = page.locator("table.usage tbody tr").filter(has_text=day).filter(has_text="gemma-3-demo")
    cells = row.locator("td")
    expect(cells.nth(2)).to_have_text(str(demo["num_model_requests"]))
    expect(cells.nth(3)).to_have_text(f"{demo['input_tokens']:,}")
    expect(cells.nth(6)).to_have_text(f"{demo['output_tokens']:,}")
    screenshot(page, "console-usage-desktop.png")

    page.get_by_label("Range").select_option(label="Last 30 days")
    expect(page.get_by_role("img", name=re.compile("last 30 days"))).to_be_visible()
    expect(row.locator("td").nth(2)).to_have_text(str(demo["num_model_requests"]))


def test_a_key_is_created_with_its_secret_shown_once_and_revoked(
    page: Page, web_server: WebServer
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, web_server.admin_key, "/console#/keys")
    account = page.locator("option", has_text="ai-viewer").get_attribute("value")
    assert account is not None
    page.get_by_label("Service account", exact=True).select_option(account)
    page.get_by_label("Description", exact=True).fill("reporting robot")
    page.get_by_label("yc.ai.languageModels.execute").check()
    page.get_by_label("Expires (optional)").fill("2031-01-02T03:04")
    page.get_by_role("button", name="Create key").click()

    shown = page.get_by_role("region", name="Secret of the new key — shown once")
    expect(shown).to_contain_text("it will not be shown again")
    secret = shown.locator(".secret").inner_text()
    assert secret.startswith("fva.")
    key_id = secret.split(".")[1]
    shown.get_by_role("button", name="Copy").click()
    expect(shown).to_contain_text("Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    with httpx.Client(base_url=web_server.origin, timeout=60) as client:
        works = client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert works.status_code == 200
    row = page.locator(f'tr[data-key-id="{key_id}"]')
    expect(row).to_contain_text("reporting robot")
    expect(row).to_contain_text("yc.ai.languageModels.execute")
    expect(row).to_contain_text("2031")
    screenshot(page, "console-keys-desktop.png")

    page.reload()
    expect(row.locator(".status")).to_have_text("active")
    assert secret not in page.content()
    assert secret not in page.evaluate("() => JSON.stringify({...sessionStorage, ...localStorage})")

    row.get_by_role("button", name=f"Revoke {key_id}").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(row.locator(".status")).to_contain_text("revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    with httpx.Client(base_url=web_server.origin, timeout=60) as client:
        refused = client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


def test_a_viewer_key_sees_the_console_read_only(page: Page, web_server: WebServer) -> None:
    sign_in(page, web_server.viewer_key, "/console")
    expect(page.get_by_role("heading", name="Batches of the folder")).to_be_visible()
    expect(page.get_by_role("table")).to_be_visible()
    notice = page.get_by_role("status").filter(has_text="Read-only")
    expect(notice).to_contain_text("its roles on the folder: ai.viewer")
    expect(page.get_by_label("Input file (JSONL)")).to_have_count(0)
    expect(page.get_by_role("button", name="Start batch")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)

    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_label("Range")).to_be_visible()
    expect(page.locator(".usage-body .card").first).to_be_visible()

    page.get_by_role("link", name="API keys").click()
    notice = page.get_by_role("status").filter(has_text="This key may not manage API keys")
    expect(notice).to_contain_text("lacks the scope yc.iam.manage")
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_chat_only_key_sees_notices_instead_of_errors(page: Page, web_server: WebServer) -> None:
    sign_in(page, web_server.chat_key, "/console")
    expected = {
        "batches": ("This key may not read batches", "allows reading batches"),
        "usage": ("This key may not read usage", "allows reading usage"),
        "keys": ("This key may not manage API keys", "lacks the scope yc.iam.manage"),
    }
    for name, (says, server_words) in expected.items():
        page.goto(f"/console#/{name}")
        notice = page.get_by_role("status").filter(has_text=says)
        expect(notice).to_contain_text(server_words)
        expect(page.get_by_role("alert")).to_have_count(0)
        expect(page.get_by_role("table")).to_have_count(0)


def test_the_console_pages_fit_a_phone(page: Page, web_server: WebServer) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, web_server.admin_key, "/console")
    waits = {
        "batches": page.get_by_role("heading", name="Batches of the folder"),
        "usage": page.locator(".usage-body .card").first,
        "keys": page.locator("table.keys").first,
    }
    for name, ready in waits.items():
        page.goto(f"/console#/{name}")
        expect(ready).to_be_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        if name == "batches":
            screenshot(page, "console-batches-phone.png")
