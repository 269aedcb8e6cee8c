"""Where files' bytes live: ``FileStorage``, addressed by key (``<folder_id>/<name>``).

``DirectoryStorage`` keeps them under one directory. Replicas of one Fovea share it by pointing
``FOVEA_STORAGE_DIR`` at the same shared volume (NFS, CephFS, a cloud file share): a file
uploaded through one replica is read by the batch runner of another. Writes are staged under a
unique ``.part`` name, fsynced and renamed into place, so a reader never sees half a file and a
killed writer leaves only a ``.part`` (swept at start). An object store would implement the same
interface, with ``local_path`` a cached copy (the batch runner reads lines at offsets, Parquet
is converted from a local file).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import BinaryIO, Protocol

PARTIAL_SUFFIX = ".part"


class FileStorage(Protocol):
    """Bytes by key; every method blocks (call off the event loop)."""

    def staging_path(self, key: str) -> Path:
        """A new local path, never handed out before, to write the bytes of ``key`` to."""
        ...

    def commit(self, staged: Path, key: str) -> int:
        """Make the staged bytes durable as ``key`` (replacing any); returns their size."""
        ...

    def local_path(self, key: str) -> Path:
        """A local path to read ``key``'s bytes from (or to keep a derived copy beside)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; absent is not an error."""
        ...

    def sweep_partials(self, older_than_s: float) -> int:
        """Remove staged writes untouched for ``older_than_s`` (left by killed writers)."""
        ...


class DirectoryStorage:
    """``FileStorage`` in a directory (local, or a volume every replica mounts)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def staging_path(self, key: str) -> Path:
        path = self.root / f"{key}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, staged: Path, key: str) -> int:
        path = self.root / key
        size = staged.stat().st_size
        os.replace(staged, path)
        _sync_dir(path.parent)  # the rename is on disk before anything points at the file
        return size

    def local_path(self, key: str) -> Path:
        return self.root / key

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def sweep_partials(self, older_than_s: float) -> int:
        removed = 0
        cutoff = time.time() - older_than_s
        for partial_file in self.root.glob(f"*/*{PARTIAL_SUFFIX}"):
            if partial_file.stat().st_mtime < cutoff:
                partial_file.unlink(missing_ok=True)
                removed += 1
        return removed


def sync_file(sink: BinaryIO) -> None:
    """Flush and fsync: the bytes are on disk before anything points at them."""
    sink.flush()
    os.fsync(sink.fileno())


def _sync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
