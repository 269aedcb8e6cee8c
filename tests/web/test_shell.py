"""The page's shell in a real browser: signing in with a key, where the key is kept, the pages,
the theme, and that nothing leaves the server's origin (the ``context`` fixture checks that
after every test)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import WebServer, sign_in


def test_a_wrong_key_is_refused_with_the_servers_words(page: Page) -> None:
    page.goto("/")
    wrong = "fva.aaaaaaaaaaaaaaaaaaaa." + "0" * 40
    page.get_by_label("API key").fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("401")
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()


def test_a_key_signs_in_and_stays_in_this_tabs_session_storage_only(
    page: Page, web_server: WebServer
) -> None:
    sign_in(page, web_server.chat_key)
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    expect(page.get_by_text(f"folder {web_server.folder_id}")).to_be_visible()
    stored = page.evaluate("() => Object.values(sessionStorage)")
    assert web_server.chat_key in stored
    assert web_server.chat_key not in page.evaluate("() => JSON.stringify(localStorage)")
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # A second tab is a new session: it asks for the key again.
    other = page.context.new_page()
    other.goto("/")
    expect(other.get_by_label("API key")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_the_pages_are_reached_from_the_navigation_by_keyboard(
    page: Page, web_server: WebServer
) -> None:
    sign_in(page, web_server.admin_key, "/console")
    expect(page.get_by_role("link", name="Batches")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name="Usage").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_title("Usage · Fovea")
    expect(page.get_by_role("link", name="Usage")).to_have_attribute("aria-current", "page")


def test_the_theme_follows_the_system_and_the_toggle(page: Page) -> None:
    page.emulate_media(color_scheme="dark")
    page.goto("/")
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "dark")
    page.get_by_role("button", name="Switch to the light theme").click()
    expect(html).to_have_attribute("data-theme", "light")
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    page.reload()  # the choice is kept
    expect(html).to_have_attribute("data-theme", "light")
    page.get_by_role("button", name="Switch to the dark theme").click()
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") != background
