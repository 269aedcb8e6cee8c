"""The one clock of the stores and services that stamp rows: injectable, so that tests can fix
or move time; ``utcnow`` is every default."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)
