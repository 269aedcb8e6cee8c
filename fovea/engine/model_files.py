"""Model files checked before llama.cpp opens them, so a failed load says what is wrong with
which file (missing, not a GGUF, cut short) rather than llama.cpp's "failed to load"."""

from __future__ import annotations

from pathlib import Path

GGUF_MAGIC = b"GGUF"
GGUF_HEADER_BYTES = 24  # magic, version, tensor count, metadata count


class ModelFileError(Exception):
    """A model file the catalog names is missing or is not a usable GGUF."""


def check_gguf(path: Path, role: str = "model") -> None:
    """Raise ``ModelFileError`` naming ``path`` and the problem unless it looks like a GGUF."""
    try:
        with path.open("rb") as source:
            header = source.read(GGUF_HEADER_BYTES)
    except FileNotFoundError:
        raise ModelFileError(f"the {role} file {path} does not exist") from None
    except IsADirectoryError:
        raise ModelFileError(f"the {role} file {path} is a directory, not a GGUF file") from None
    except OSError as exc:
        raise ModelFileError(f"the {role} file {path} cannot be read: {exc}") from None
    if not header.startswith(GGUF_MAGIC):
        raise ModelFileError(
            f"the {role} file {path} is not a GGUF file (it does not start with {GGUF_MAGIC!r})"
        )
    if len(header) < GGUF_HEADER_BYTES:
        raise ModelFileError(f"the {role} file {path} is cut short ({len(header)} bytes)")


def unloadable(path: Path, role: str = "model") -> ModelFileError:
    """What to say when llama.cpp refuses a file that passed ``check_gguf``."""
    return ModelFileError(
        f"llama.cpp could not load the {role} file {path}: it may be truncated or corrupt, or "
        "of an architecture this build does not support"
    )
