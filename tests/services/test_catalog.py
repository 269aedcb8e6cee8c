"""Reading the model catalog: upstream deployments, and mistakes reported with what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from fovea.services.catalog import parse_model_uri
from fovea.settings import CatalogFileError, Settings, load_catalog

UPSTREAM = """
[[deployments]]
name = "gemma-3-27b-it"
backend = "upstream"
vision = true
[deployments.upstream]
metrics = true
{extra}
[[deployments.branches.latest.replicas]]
url = "http://10.0.0.11:8000/v1"
model = "google/gemma-3-27b-it"
api_key_env = "FOVEA_TEST_REPLICA_KEY"
"""


def load(tmp_path: Path, text: str) -> object:
    (tmp_path / "models.toml").write_text(text)
    return load_catalog(Settings(home=tmp_path, catalog=tmp_path / "models.toml"))


def test_a_replica_key_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOVEA_TEST_REPLICA_KEY", "sk-secret")
    catalog = load(tmp_path, UPSTREAM.format(extra=""))
    (deployment,) = catalog.deployments  # type: ignore[attr-defined]
    (replica,) = deployment.branches["latest"].replicas
    assert replica.api_key == "sk-secret"
    assert deployment.upstream.metrics is True
    assert "sk-secret" not in deployment.model_dump_json()  # never echoed back


def test_a_missing_key_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOVEA_TEST_REPLICA_KEY", raising=False)
    with pytest.raises(CatalogFileError, match="FOVEA_TEST_REPLICA_KEY, which is not set"):
        load(tmp_path, UPSTREAM.format(extra=""))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (UPSTREAM.format(extra='api_key = "sk-in-the-file"'), "api_key"),
        (
            '[[deployments]]\nname = "x"\nbackend = "upstream"\n'
            '[deployments.branches.latest]\nmodel = "a.gguf"\n',
            "an upstream branch needs at least one entry in 'replicas'",
        ),
        (
            '[[deployments]]\nname = "x"\n[deployments.branches.latest]\n'
            '[[deployments.branches.latest.replicas]]\nurl = "http://h/v1"\nmodel = "m"\n',
            "a llamacpp branch needs 'model'",
        ),
        (
            '[[deployments]]\nname = "x"\nbackend = "upstream"\n'
            '[[deployments.branches.latest.replicas]]\nurl = "ftp://h/v1"\nmodel = "m"\n',
            "url",
        ),
        (
            '[[deployments]]\nname = "x"\ndefault_temperature = 3\n'
            '[deployments.branches.latest]\nmodel = "a.gguf"\n',
            "default_temperature",
        ),
    ],
)
def test_mistakes_stop_start_up_with_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.setenv("FOVEA_TEST_REPLICA_KEY", "sk-secret")
    with pytest.raises(CatalogFileError, match="is invalid") as error:
        load(tmp_path, text)
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("value", "scheme", "folder", "branch"),
    [
        ("emb://b1gfolder/text-search-doc/latest", "emb", "b1gfolder", "latest"),
        ("emb://b1gfolder/text-search-query", "emb", "b1gfolder", "latest"),
        ("gpt://b1gfolder/gemma-3-demo/rc", "gpt", "b1gfolder", "rc"),
        ("text-search-doc", None, None, "latest"),
    ],
)
def test_model_uris_name_their_kind_by_scheme(
    value: str, scheme: str | None, folder: str | None, branch: str
) -> None:
    uri = parse_model_uri(value)
    assert (uri.scheme, uri.folder_id, uri.branch) == (scheme, folder, branch)
    assert uri.canonical("b1gfolder").startswith(f"{scheme or 'gpt'}://b1gfolder/")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[deployments]]\nname = "x"\ndimensions = [256]\n'
            '[deployments.branches.latest]\nmodel = "a.gguf"\n',
            "'dimensions' and 'pooling' are for kind",
        ),
        (
            '[[deployments]]\nname = "x"\nkind = "embedding"\nbackend = "upstream"\n'
            '[[deployments.branches.latest.replicas]]\nurl = "http://h/v1"\nmodel = "m"\n',
            "embedding deployments are served by the llamacpp backend",
        ),
        (
            '[[deployments]]\nname = "x"\nkind = "embedding"\n[deployments.branches.latest]\n'
            'model = "a.gguf"\nmmproj = "p.gguf"\n',
            "an embedding deployment takes no 'mmproj'",
        ),
        (
            '[[deployments]]\nname = "x"\nkind = "rerank"\n[deployments.branches.latest]\n'
            'model = "a.gguf"\n',
            "kind",
        ),
    ],
)
def test_embedding_deployment_mistakes_say_what_to_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(CatalogFileError, match="is invalid") as error:
        load(tmp_path, text)
    assert expected in str(error.value)


def test_the_shipped_catalog_has_the_clouds_embedding_names(tmp_path: Path) -> None:
    catalog = load_catalog(Settings(home=tmp_path))
    kinds = {d.name: (d.kind, d.demo) for d in catalog.deployments}
    assert kinds["text-search-doc"] == kinds["text-search-query"] == ("embedding", True)
    assert kinds["gemma-3-demo"] == ("chat", True)
