"""Installing the demo's trained vision projector: the shipped file, checked, copied once.

The text GGUF (250 MB, assembled from a package) is left out: these tests are about the
projectors beside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fovea.cli.models import models_app
from fovea.modelgen import demo


@pytest.fixture(autouse=True)
def no_text_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "prepare_text_model", lambda models_dir: models_dir)


def test_the_shipped_file_is_the_one_its_checksum_names() -> None:
    shipped = hashlib.sha256(demo.TRAINED_MMPROJ.read_bytes()).hexdigest()
    assert shipped == demo.TRAINED_MMPROJ_SHA256
    assert demo.TRAINED_MMPROJ.stat().st_size < 16 * 1024 * 1024  # a few MB in the repository


def test_the_demo_serves_the_trained_tower_and_keeps_a_random_one(tmp_path: Path) -> None:
    files = demo.prepare_demo_model(tmp_path)
    assert files.mmproj.read_bytes() == demo.TRAINED_MMPROJ.read_bytes()
    assert files.random_mmproj.exists()
    assert files.random_mmproj.read_bytes() != files.mmproj.read_bytes()
    installed = files.mmproj.stat().st_mtime_ns, files.random_mmproj.stat().st_mtime_ns
    again = demo.prepare_demo_model(tmp_path)
    assert again == files
    assert (files.mmproj.stat().st_mtime_ns, files.random_mmproj.stat().st_mtime_ns) == installed


def test_an_older_installs_random_projector_is_replaced(tmp_path: Path) -> None:
    files = demo.demo_files(tmp_path)
    files.mmproj.parent.mkdir(parents=True)
    files.mmproj.write_bytes(b"GGUF from an install before the trained tower")
    files.mmproj.with_suffix(".json").write_text("{}")  # that install's stamp
    demo.prepare_demo_model(tmp_path)
    assert files.mmproj.read_bytes() == demo.TRAINED_MMPROJ.read_bytes()
    assert not files.mmproj.with_suffix(".json").exists()


def _damaged_copy(tmp_path: Path) -> Path:
    data = bytearray(demo.TRAINED_MMPROJ.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(bytes(data))
    return damaged


def test_a_damaged_shipped_file_is_refused_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "TRAINED_MMPROJ", _damaged_copy(tmp_path))
    with pytest.raises(demo.DemoModelError, match="is damaged: its SHA-256 is") as error:
        demo.prepare_demo_model(tmp_path / "models")
    assert "reinstall Fovea" in str(error.value)
    assert not demo.demo_files(tmp_path / "models").mmproj.exists()  # nothing half-installed


def test_prepare_demo_says_what_is_wrong_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "TRAINED_MMPROJ", tmp_path / "missing.gguf")
    monkeypatch.setenv("FOVEA_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(models_app, ["prepare-demo"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # as the terminal wraps it
    assert "missing.gguf cannot be read (No such file or directory)" in said
    assert "reinstall Fovea" in said
    assert result.exception is None or isinstance(result.exception, SystemExit)
