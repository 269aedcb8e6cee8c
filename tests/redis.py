"""A private Redis server for the test session (Debian's ``redis-server``: ``make test``
installs it): daemonised on a free port with persistence off, its files in a temporary
directory, stopped when the session ends. When it cannot start, the tests that need it fail
with the reason: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.private_servers import is_running, start_owned, stop_abandoned
from tests.processes import free_port

INSTALL_HINT = "install it with `make test` (Debian's redis-server and the 'redis' package)"
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 10
DIR_PREFIX = "fovea-redis-"
PID_FILE = "redis.pid"


class RedisUnavailable(RuntimeError):
    """The private server could not be started; the message says why and what to do."""


class RedisServer:
    """A throwaway server: ``start()``, ``url()`` per test (``flush()`` between), ``stop()``."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self.port = 0

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RedisUnavailable(f"redis-server is not installed: {INSTALL_HINT}")
        self.port = free_port()
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self._dir),
            "--save", "", "--appendonly", "no", "--daemonize", "yes",
            "--pidfile", str(self._dir / PID_FILE), "--logfile", str(self._dir / "redis.log"),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RedisUnavailable(f"redis-server failed ({done.returncode}): {self._detail(done)}")
        self._wait_until_ready()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        import redis

        with redis.Redis.from_url(self.url()) as client:
            client.flushall()

    def stop(self) -> None:
        # Redis deletes its pidfile as it exits: read the pid once, then wait on the process.
        try:
            pid = int((self._dir / PID_FILE).read_text())
        except (OSError, ValueError):
            pid = None
        if pid is not None and is_running(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while is_running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _wait_until_ready(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT_S
        with redis.Redis.from_url(self.url(), socket_timeout=1) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError as error:
                    if time.monotonic() > deadline:
                        detail = self._log_tail()
                        message = f"redis-server did not answer: {error}\n{detail}"
                        raise RedisUnavailable(message) from error
                time.sleep(0.02)

    def _detail(self, done: subprocess.CompletedProcess[str]) -> str:
        return (done.stderr.strip() or done.stdout.strip()) + "\n" + self._log_tail()

    def _log_tail(self) -> str:
        log = self._dir / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def start_server() -> RedisServer:
    """A started private server, or ``RedisUnavailable`` saying what is missing."""
    try:
        import redis  # noqa: F401
    except ImportError as error:
        raise RedisUnavailable(f"the redis package is not installed: {INSTALL_HINT}") from error
    stop_abandoned(Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"), RedisServer)
    return start_owned(RedisServer, DIR_PREFIX)
