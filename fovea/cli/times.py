"""Times and lifetimes given on the command line: ``30d``, ``12h`` or an ISO 8601 time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

_DURATION_PATTERN = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, option: str) -> timedelta:
    match = _DURATION_PATTERN.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise typer.BadParameter(
            f"{text!r} is not a lifetime such as 30d, 12h, 90m, 2w", param_hint=option
        )
    return timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time such as 2030-01-31T12:00:00Z",
            param_hint=option,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_since(text: str, option: str = "--since") -> datetime:
    """A time ago (``24h``, ``7d``) or an ISO 8601 time."""
    if _DURATION_PATTERN.fullmatch(text.strip()):
        return datetime.now(UTC) - parse_duration(text, option)
    return parse_time(text, option)
