"""Where files' bytes live: ``FileStorage``, addressed by key (``<folder_id>/<name>``).

``DirectoryStorage`` keeps them under one directory. Replicas of one Fovea share it by pointing
``FOVEA_STORAGE_DIR`` at the same shared volume (NFS, CephFS, a cloud file share): a file
uploaded through one replica is read by the batch runner of another. Writes are staged under a
unique ``.part`` name, fsynced and renamed into place, so a reader never sees half a file and a
killed writer leaves only a ``.part``. The name carries the writer's host and pid: at start a
replica sweeps the partials of its host's dead processes at once, any other after a day. A full
disk is ``InsufficientStorageError`` (507), never a half-written file. An object store would
implement the same interface, with ``local_path`` a cached copy (the batch runner reads lines
at offsets, Parquet is converted from a local file).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from fovea.errors import InsufficientStorageError

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"
_FULL = (errno.ENOSPC, errno.EDQUOT)
_HOST = re.sub(r"[^A-Za-z0-9]", "-", socket.gethostname())[:40] or "host"
# This process's staged writes carry its pid; one carrying the same pid but older than this
# process is a previous process's (a container restarted as pid 1).
_STARTED_AT = time.time()
_WRITER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>[0-9]+)~[0-9a-f]+\.part$")


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
        """Remove staged writes left by killed writers: at once those of a process of this host
        that is gone, others once untouched for ``older_than_s``."""
        ...

    def keys_untouched_for(self, seconds: float) -> Iterator[str]:
        """The keys of committed bytes not written for ``seconds`` (staged writes left out)."""
        ...


class DirectoryStorage:
    """``FileStorage`` in a directory (local, or a volume every replica mounts)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def staging_path(self, key: str) -> Path:
        path = partial_path(self.root / key)
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
            try:
                modified = partial_file.stat().st_mtime
            except FileNotFoundError:  # committed or removed meanwhile
                continue
            if modified < cutoff or _writer_gone(partial_file.name, modified):
                partial_file.unlink(missing_ok=True)
                removed += 1
        return removed

    def keys_untouched_for(self, seconds: float) -> Iterator[str]:
        cutoff = time.time() - seconds
        for path in self.root.glob("*/*"):
            if path.name.startswith(".") or path.name.endswith(PARTIAL_SUFFIX):
                continue
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    yield f"{path.parent.name}/{path.name}"
            except FileNotFoundError:  # removed meanwhile
                continue


def partial_path(path: Path) -> Path:
    """A new name beside ``path`` to stage its bytes under (named after this process, so that a
    killed writer's partial is found and swept)."""
    writer = f"{_HOST}~{os.getpid()}~{secrets.token_hex(4)}"
    return path.with_name(f"{path.name}.{writer}{PARTIAL_SUFFIX}")


@contextmanager
def full_disk_refused() -> Iterator[None]:
    """A full disk (or quota) while writing files becomes ``InsufficientStorageError``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        log.error("the file storage is full: %s", exc)
        raise InsufficientStorageError(
            "The server's file storage is full: the file was not stored. Delete files you no "
            "longer need (DELETE /v1/files/{file_id}) or ask the operator to free space, "
            "then retry"
        ) from exc


def _writer_gone(name: str, modified: float) -> bool:
    """Whether the staged write ``name`` was left by a process of this host that is gone."""
    match = _WRITER.search(name)
    if match is None or match["host"] != _HOST:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return modified < _STARTED_AT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


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
