"""The web playground's files as the server serves them (the page itself is tested in a real
browser in tests/web)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from fovea.app import create_app
from fovea.settings import Settings
from tests.conftest import FAKE_CATALOG, Keys, auth, make_keys
from tests.fakes import ScriptedEngine


def test_the_page_is_served_at_the_root_playground_and_console(client: TestClient) -> None:
    for path in ("/", "/playground", "/console"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/web/js/app.js">' in response.text


def test_the_page_may_reach_nothing_but_this_server(client: TestClient) -> None:
    policy = client.get("/").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_every_file_the_page_names_is_served_with_its_type(client: TestClient) -> None:
    static = Path(__file__).resolve().parents[2] / "fovea" / "web" / "static"
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    files = [p for p in static.rglob("*") if p.suffix in types]
    assert any(p.name == "app.js" for p in files)
    for path in files:
        response = client.get(f"/web/{path.relative_to(static)}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(types[path.suffix]), path
        assert response.headers["cache-control"] == "no-cache"


def test_a_missing_file_and_an_unknown_path_are_json_404s(client: TestClient) -> None:
    for path in ("/web/js/nothing.js", "/no-such-page", "/web/../fovea/settings.py"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"]


def test_the_page_can_be_switched_off(tmp_path: Path) -> None:
    catalog = tmp_path / "models.toml"
    catalog.write_text(FAKE_CATALOG)
    settings = Settings(home=tmp_path, catalog=catalog, web_ui=False)
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as api_only:
        assert api_only.get("/").status_code == 404
        assert api_only.get("/web/js/app.js").status_code == 404
        assert api_only.get("/healthz").status_code == 200


def test_the_models_list_says_which_model_is_a_demo(tmp_path: Path) -> None:
    catalog = tmp_path / "models.toml"
    demo_catalog = FAKE_CATALOG.replace('name = "text-only"', 'name = "text-only"\ndemo = true')
    catalog.write_text(demo_catalog)
    settings = Settings(home=tmp_path, catalog=catalog)
    with TestClient(create_app(settings, engine_factory=ScriptedEngine)) as client:
        keys: Keys = make_keys(settings)
        models = client.get("/v1/models", headers=auth(keys.api_key)).json()["data"]
        keys.database.dispose()
    demo = {m["id"].split("/")[3]: m["demo"] for m in models}
    assert demo == {"gemma-3-demo": False, "text-only": True}
