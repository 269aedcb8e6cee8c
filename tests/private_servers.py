"""What the test session's private servers (PostgreSQL, Redis) share: a scratch directory
that names the session owning it, the sweep of servers a killed session left running, and
starting one so that a failed start leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, TypeVar

OWNER_FILE = "owner.pid"  # the test session's process, to find servers killed sessions left


class Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def start_owned(make: Callable[[Path], S], prefix: str, parent: Path | None = None) -> S:
    """A server made in a new scratch directory owned by this process, started; stopped
    again (its files removed) when it does not start."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (directory / OWNER_FILE).write_text(str(os.getpid()))
    server = make(directory)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def stop_abandoned(directories: Iterable[Path], make: Callable[[Path], Server]) -> None:
    """Stop the servers of earlier sessions that were killed before they could."""
    for directory in directories:
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or a session still creating it
        if not is_running(owner):
            make(directory).stop()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    # A daemon's parent is init, which may not reap it here: a zombie has stopped.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
