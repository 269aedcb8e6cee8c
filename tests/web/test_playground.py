"""The playground in a real browser against a real server on the demo model: images dropped,
picked and removed, a streamed answer with its usage and time to first token, a stopped answer,
the page's own checks and the server's errors in its words, "Show code" run as shown, and the
layout on a phone.

The demo model only names shapes of its closed world (these pictures lie outside it), but its
answers are real: the tests look at what the page shows, never at what the words mean. Answers
are kept short, but for the one that is stopped.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Download, FilePayload, Locator, Page, Request, expect

from fovea.media.samples import draw_house, draw_sunset
from tests.web.conftest import DESKTOP, MAX_REQUEST_BYTES, PHONE, WebServer, screenshot, sign_in

CHAT_PATH = "/v1/chat/completions"
SHORT = "8"  # max tokens of most answers: the demo model writes ~40 tokens a second
# How long to wait on the server (a loaded 2-core machine is slow to encode pictures), not how
# long it may take: nothing here is timed.
SERVER_MS = 90_000


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


HOUSE = png(draw_house())
SUNSET = png(draw_sunset())


def tiny_png(shade: int) -> bytes:
    return png(Image.new("RGB", (32, 24), (shade, 128, 255 - shade)))


def noisy_png(min_bytes: int) -> bytes:
    """A PNG of random pixels (which do not compress) of at least ``min_bytes``."""
    side = int((min_bytes / 3) ** 0.5) + 16
    noise = random.Random(12).randbytes(side * side * 3)
    data = png(Image.frombytes("RGB", (side, side), noise))
    assert len(data) >= min_bytes
    return data


def data_url(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def file_payload(name: str, data: bytes, mime: str = "image/png") -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": data}


# -- the page, as a user works it -------------------------------------------------------------


def open_playground(page: Page, web_server: WebServer, max_tokens: str = SHORT) -> None:
    sign_in(page, web_server.chat_key)
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    page.get_by_label("Max tokens").fill(max_tokens)


def drop_images(page: Page, files: list[tuple[str, bytes]]) -> None:
    """Drag files onto the composer and drop them, as a file manager would."""
    payload = [[name, "image/png", base64.b64encode(data).decode()] for name, data in files]
    page.get_by_role("form", name="Composer").evaluate(
        """(composer, files) => {
          const transfer = new DataTransfer();
          for (const [name, type, encoded] of files) {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, {type}));
          }
          for (const kind of ["dragenter", "dragover", "drop"]) {
            const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
            composer.dispatchEvent(new DragEvent(kind, init));
          }
        }""",
        payload,
    )


def draft_images(page: Page) -> Locator:
    return page.get_by_role("list", name="Images to send").get_by_role("listitem")


def is_chat(request: Request) -> bool:
    return request.url.endswith(CHAT_PATH) and request.method == "POST"


def send(page: Page, text: str) -> dict[str, Any]:
    """Type a message, send it with Ctrl+Enter; return the request the page made."""
    page.get_by_label("Message").fill(text)
    with page.expect_request(is_chat) as sent:
        page.get_by_label("Message").press("Control+Enter")
    body = sent.value.post_data_json
    assert isinstance(body, dict)
    return body


def answers(page: Page) -> Locator:
    return page.locator("article.message.assistant")


def wait_for_answer(page: Page, index: int = -1) -> Locator:
    """The answer once its usage has arrived (the stream's last chunk)."""
    answer = answers(page).nth(index)
    expect(answer).to_contain_text("Completion tokens:", timeout=SERVER_MS)
    return answer


def answer_text(answer: Locator) -> str:
    return answer.locator(".content").text_content() or ""


def usage_shown(answer: Locator) -> dict[str, int]:
    meta = answer.locator(".meta").inner_text()
    found = re.findall(r"(Prompt|Image|Cached|Completion) tokens: (\d+)", meta)
    shown = {name.lower(): int(value) for name, value in found}
    ttft = re.search(r"Time to first token: (\d+) ms", meta)
    if ttft:
        shown["ttft_ms"] = int(ttft.group(1))
    return shown


def image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [part for part in message["content"] if part["type"] == "image_url"]


# -- a conversation with images ---------------------------------------------------------------


def test_two_dropped_images_get_a_streamed_answer_with_its_usage(
    page: Page, web_server: WebServer
) -> None:
    open_playground(page, web_server)
    expect(page.get_by_label("Model")).to_contain_text("gemma-3-demo · latest")
    expect(page.get_by_role("note")).to_contain_text("It sees a closed world")

    drop_images(page, [("house.png", HOUSE), ("sunset.png", SUNSET)])
    expect(draft_images(page)).to_have_count(2)
    expect(page.get_by_role("img", name="Image 1: house.png")).to_be_visible()
    page.get_by_label("Detail of image 2").select_option("low")
    body = send(page, "What differs between these pictures?")

    answer = wait_for_answer(page)
    said = answer_text(answer)
    assert said
    usage = usage_shown(answer)
    assert usage["prompt"] > usage["image"] > 0
    assert usage["completion"] > 0
    assert "ttft_ms" in usage
    # The question stays in the conversation with its pictures; the composer is empty again.
    question = page.locator("article.message.user")
    expect(question).to_contain_text("What differs between these pictures?")
    expect(question.get_by_role("img")).to_have_count(2)
    expect(draft_images(page)).to_have_count(0)
    expect(page.get_by_label("Message")).to_have_value("")

    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == int(SHORT)
    assert "temperature" not in body  # an empty field leaves the server's default
    parts = image_parts(body["messages"][0])
    assert [part["image_url"]["detail"] for part in parts] == ["auto", "low"]
    assert [part["image_url"]["url"] for part in parts] == [data_url(HOUSE), data_url(SUNSET)]

    # The answer goes back with the next question; the pictures stay with the first.
    body = send(page, "And now?")
    wait_for_answer(page, 1)
    first, reply, second = body["messages"]
    assert len(image_parts(first)) == 2
    assert reply == {"role": "assistant", "content": said}
    assert second == {"role": "user", "content": "And now?"}


def paste_image(page: Page, data: bytes) -> None:
    """Paste a picture into the message box, as from a screenshot tool's clipboard."""
    page.get_by_label("Message").evaluate(
        """(box, encoded) => {
          const transfer = new DataTransfer();
          const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], "image.png", {type: "image/png"}));
          const init = {clipboardData: transfer, bubbles: true, cancelable: true};
          box.dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        base64.b64encode(data).decode(),
    )


def test_images_are_picked_pasted_and_one_removed_before_sending(
    page: Page, web_server: WebServer
) -> None:
    open_playground(page, web_server)
    page.get_by_label("Add images").set_input_files(
        [
            file_payload("house.png", HOUSE),
            file_payload("grey.png", tiny_png(90)),
            file_payload("sunset.png", SUNSET),
        ]
    )
    paste_image(page, tiny_png(200))
    expect(draft_images(page)).to_have_count(4)
    expect(page.get_by_role("img", name="Image 4: image.png")).to_be_visible()
    page.get_by_role("button", name="Remove image 2").click()
    expect(draft_images(page)).to_have_count(3)
    expect(page.get_by_role("img", name="Image 2: sunset.png")).to_be_visible()
    # Focus moves on to the next image's button, not off the page.
    expect(page.get_by_role("button", name="Remove image 2")).to_be_focused()

    body = send(page, "Three pictures")
    wait_for_answer(page)
    sent = [part["image_url"]["url"] for part in image_parts(body["messages"][0])]
    assert sent == [data_url(HOUSE), data_url(SUNSET), data_url(tiny_png(200))]
    expect(page.locator("article.message.user").get_by_role("img")).to_have_count(3)


def test_stop_ends_a_long_answer_and_the_next_message_is_answered(
    page: Page, web_server: WebServer
) -> None:
    open_playground(page, web_server, max_tokens="1000")
    page.get_by_label("Temperature").fill("0")  # this prompt then runs to the limit
    send(page, "Write a very long story about the sea.")
    answer = answers(page).last
    # Stop once the answer has begun.
    expect(answer.locator(".content")).to_have_text(re.compile(r"\S"), timeout=SERVER_MS)
    page.get_by_role("button", name="Stop").click()

    expect(answer).to_contain_text("Stopped", timeout=SERVER_MS)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    stopped = answer_text(answer)
    assert stopped

    page.get_by_label("Max tokens").fill(SHORT)
    body = send(page, "Go on.")
    wait_for_answer(page, 1)
    assert body["messages"][1] == {"role": "assistant", "content": stopped}


# -- what the page refuses, what the server refuses --------------------------------------------


def test_an_image_over_the_servers_request_limit_shows_its_413_in_its_own_words(
    page: Page, web_server: WebServer
) -> None:
    big = noisy_png(MAX_REQUEST_BYTES + 1024 * 1024)  # under the page's 20 MiB, over the server's 3
    open_playground(page, web_server)
    page.get_by_label("Add images").set_input_files(file_payload("noise.png", big))
    expect(draft_images(page)).to_have_count(1)
    page.get_by_label("Message").fill("Too big?")
    with page.expect_request(is_chat) as sent:
        page.get_by_role("button", name="Send").click()

    # The same bytes straight to the API: the page shows what the API answers.
    replay = httpx.post(
        f"{web_server.origin}{CHAT_PATH}",
        content=sent.value.post_data_buffer,
        headers={
            "Authorization": f"Bearer {web_server.chat_key}",
            "Content-Type": "application/json",
        },
        timeout=60,
    )
    assert replay.status_code == 413
    words = replay.json()["error"]["message"]
    assert "too large" in words
    expect(page.get_by_role("alert")).to_contain_text(f"{words} (HTTP 413)", timeout=SERVER_MS)
    # The message comes back to the composer, its picture with it, to be fixed.
    expect(draft_images(page)).to_have_count(1)
    expect(page.get_by_label("Message")).to_have_value("Too big?")
    expect(answers(page)).to_have_count(0)


def test_the_page_refuses_a_file_that_is_not_an_image_or_is_too_large_without_a_request(
    page: Page, web_server: WebServer
) -> None:
    open_playground(page, web_server)
    chat_requests: list[str] = []
    page.on(
        "request", lambda request: chat_requests.append(request.url) if is_chat(request) else None
    )
    page.get_by_label("Add images").set_input_files(
        [
            file_payload("notes.txt", b"not a picture", "text/plain"),
            file_payload("huge.png", b"\x89PNG" + bytes(21 * 1024 * 1024)),
        ]
    )
    alerts = page.get_by_role("alert")
    expect(alerts.filter(has_text="notes.txt was not added")).to_contain_text(
        "PNG, JPEG, WebP, GIF or BMP"
    )
    expect(alerts.filter(has_text="huge.png was not added")).to_contain_text("at most 20 MiB")
    expect(draft_images(page)).to_have_count(0)
    page.get_by_role("button", name="Send").click()
    expect(alerts).to_contain_text("Write a message or add an image first")
    assert chat_requests == []


def test_more_images_than_the_model_takes_are_refused_in_words(
    page: Page, web_server: WebServer
) -> None:
    open_playground(page, web_server, max_tokens="2")
    # The page keeps a message within the model's max_images (8 for the demo)...
    drop_images(page, [(f"square{n}.png", tiny_png(20 * n)) for n in range(9)])
    expect(draft_images(page)).to_have_count(8)
    expect(page.get_by_role("alert")).to_contain_text(
        "1 image was not added: gemma-3-demo accepts at most 8 images per request."
    )
    send(page, "Eight")
    wait_for_answer(page)
    # ...and the server judges the whole conversation: a ninth image in the next message.
    drop_images(page, [("one-more.png", tiny_png(250))])
    send(page, "Nine")
    expect(page.get_by_role("alert")).to_contain_text(
        "Too many images: the request has 9 images; model gemma-3-demo accepts at most 8 "
        "per request (HTTP 400)",
        timeout=SERVER_MS,
    )
    expect(draft_images(page)).to_have_count(1)
    expect(answers(page)).to_have_count(1)


# -- settings -----------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_answer(page: Page, web_server: WebServer) -> None:
    open_playground(page, web_server, max_tokens="12")
    page.get_by_label("Temperature").fill("1")
    page.get_by_label("Seed").fill("7")
    texts = []
    for _ in range(3):
        page.get_by_role("button", name="New chat").click()
        body = send(page, "Tell me about the weather.")
        texts.append(answer_text(wait_for_answer(page)))
        assert (body["temperature"], body["seed"]) == (1, 7)
    # The first run computes the whole prompt, the others reuse it from the prefix cache, and
    # llama.cpp's sums are not bit-identical across batch splits: compare like with like.
    assert texts[1] == texts[2]


def test_json_mode_answers_a_json_object(page: Page, web_server: WebServer) -> None:
    open_playground(page, web_server, max_tokens="48")
    page.get_by_label("JSON mode").check()
    page.get_by_label("Temperature").fill("1")
    page.get_by_label("Seed").fill("1")
    body = send(page, "Describe a cat as a JSON object.")
    assert body["response_format"] == {"type": "json_object"}
    answer = wait_for_answer(page)
    text = answer_text(answer)
    # The grammar makes the answer an object from its first character (the demo alone writes
    # prose); whether the 270M model closes it within 48 tokens depends on the draw, and the
    # page says so when it did not.
    assert text.startswith("{")
    if "Cut at the max tokens limit" in answer.inner_text():
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    else:
        assert isinstance(json.loads(text), dict)


# -- show code ----------------------------------------------------------------------------------


# What a shell or a Python string could get wrong, if the code quoted it wrong.
TRICKY = 'What differs? Say "$HOME", `this`, \\n and \\ literally.'


def open_code_with_a_two_image_conversation(page: Page, web_server: WebServer) -> Locator:
    """A sent message with two pictures, its answer and a draft; the code dialog open."""
    open_playground(page, web_server)
    page.get_by_label("System prompt").fill("Answer in one line.")
    page.get_by_label("Temperature").fill("0")
    drop_images(page, [("house.png", HOUSE), ("sunset.png", SUNSET)])
    page.get_by_label("Detail of image 1").select_option("high")
    send(page, TRICKY)
    wait_for_answer(page)
    page.get_by_label("Message").fill("And which is brighter?")  # the draft is in the code too
    page.get_by_role("button", name="Show code").click()
    dialog = page.get_by_role("dialog", name="Code for this conversation")
    expect(dialog).to_be_visible()
    return dialog


def code_in(dialog: Locator, tab: str) -> str:
    dialog.get_by_role("tab", name=tab).click()
    return dialog.get_by_role("tabpanel", name=tab).locator("pre").text_content() or ""


def named(name: str) -> Callable[[Download], bool]:
    return lambda download: download.suggested_filename == name


def save_images(page: Page, dialog: Locator, folder: Path) -> list[str]:
    """Download the images the dialog names, as the user would, into ``folder``."""
    names = dialog.locator(".code-files code").all_text_contents()
    with ExitStack() as stack:
        downloads = [stack.enter_context(page.expect_download(named(name))) for name in names]
        dialog.get_by_role("button", name="Download images").click()
    for name, download in zip(names, downloads, strict=True):
        download.value.save_as(folder / name)
    return names


@pytest.mark.parametrize(
    ("tab", "program", "command"),
    [
        ("Python", "chat.py", [sys.executable]),
        ("SDK", "chat_sdk.py", [sys.executable]),
        ("curl", "chat.sh", ["bash"]),
    ],
)
def test_show_code_runs_as_shown(
    page: Page, web_server: WebServer, tmp_path: Path, tab: str, program: str, command: list[str]
) -> None:
    dialog = open_code_with_a_two_image_conversation(page, web_server)
    code = code_in(dialog, tab)
    assert web_server.chat_key not in code
    assert "FOVEA_API_KEY" in code
    names = save_images(page, dialog, tmp_path)
    assert names == ["house.png", "sunset.png"]
    (tmp_path / program).write_text(code, encoding="utf-8")

    run = subprocess.run(
        [*command, program],
        cwd=tmp_path,
        env={**os.environ, "FOVEA_API_KEY": web_server.chat_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    answer = run.stdout
    if tab == "curl":  # curl prints the API's JSON
        answer = json.loads(run.stdout)["choices"][0]["message"]["content"]
    assert answer.strip()


def test_show_code_is_for_the_conversation_shown(
    page: Page, web_server: WebServer, tmp_path: Path
) -> None:
    dialog = open_code_with_a_two_image_conversation(page, web_server)
    said = answer_text(answers(page).last)
    python = code_in(dialog, "Python")
    assert f'base_url="{web_server.origin}/v1"' in python
    assert f'model="gpt://{web_server.folder_id}/gemma-3-demo/latest"' in python
    assert '{"role": "system", "content": "Answer in one line."}' in python
    assert '"image_url": {"url": data_url("house.png"), "detail": "high"}' in python
    assert '{"role": "user", "content": "And which is brighter?"}' in python
    assert "temperature=0," in python
    assert f"max_tokens={SHORT}," in python
    sdk = code_in(dialog, "SDK")
    assert f'folder_id="{web_server.folder_id}"' in sdk
    assert 'sdk.chat.completions("gemma-3-demo")' in sdk

    # What bash hands to curl (here to cat) is the conversation, quotes and pictures intact.
    curl = code_in(dialog, "curl")
    save_images(page, dialog, tmp_path)
    printed = subprocess.run(
        ["bash", "-c", "curl() { cat; }\n" + curl],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    request = json.loads(printed.stdout)
    assert request["messages"] == [
        {"role": "system", "content": "Answer in one line."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": TRICKY},
                {"type": "image_url", "image_url": {"url": data_url(HOUSE), "detail": "high"}},
                {"type": "image_url", "image_url": {"url": data_url(SUNSET)}},
            ],
        },
        {"role": "assistant", "content": said},
        {"role": "user", "content": "And which is brighter?"},
    ]
    assert (request["temperature"], request["max_tokens"]) == (0, int(SHORT))


# -- keyboard and layout ------------------------------------------------------------------------


def test_the_playground_works_from_the_keyboard(page: Page, web_server: WebServer) -> None:
    open_playground(page, web_server)
    page.get_by_label("Message").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Add images")).to_be_focused()
    outline = page.locator("label", has_text="Add images").evaluate(
        "(label) => getComputedStyle(label).outlineStyle"
    )
    assert outline == "solid"  # the hidden input's focus shows on its label
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()

    show = page.get_by_role("button", name="Show code")
    show.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Code for this conversation")
    expect(dialog).to_be_visible()
    dialog.get_by_role("tab", name="Python").focus()
    page.keyboard.press("ArrowRight")
    expect(dialog.get_by_role("tab", name="curl")).to_be_focused()
    expect(dialog.get_by_role("tabpanel", name="curl")).to_contain_text("curl ")
    page.keyboard.press("End")
    expect(dialog.get_by_role("tab", name="SDK")).to_have_attribute("aria-selected", "true")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    dialog.get_by_role("tabpanel", name="SDK").get_by_role("button", name="Copy").focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("status")).to_have_text("Copied.")
    code = dialog.get_by_role("tabpanel", name="SDK").locator("pre").text_content()
    assert page.evaluate("navigator.clipboard.readText()") == code
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(show).to_be_focused()


def test_the_page_fits_a_phone_and_a_desktop(page: Page, web_server: WebServer) -> None:
    open_playground(page, web_server)
    drop_images(page, [("house.png", HOUSE), ("sunset.png", SUNSET)])
    send(page, "What differs between these two pictures?")
    wait_for_answer(page)
    page.get_by_label("Message").blur()
    screenshot(page, "playground-desktop.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]

    page.set_viewport_size({"width": PHONE["width"], "height": PHONE["height"]})
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("button", name="Send").scroll_into_view_if_needed()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    screenshot(page, "playground-phone.png")
    page.get_by_role("button", name="Show code").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
