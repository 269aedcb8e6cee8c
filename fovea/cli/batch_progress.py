"""Following a running batch from the command line: a Rich progress bar on stderr.

The bar shows lines done (completed + failed) of the total, the failed count, the rate in lines a
minute and the time left. The rate is measured from what this command has seen, so a clock that
differs from the server's does not skew it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

if TYPE_CHECKING:
    import openai
    from openai.types import Batch

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
POLL_INTERVAL_S = 1.0


@dataclass
class LineRate:
    """Lines a minute since the first observation."""

    start_time: float | None = None
    start_done: int = 0

    def per_minute(self, num_done: int, now: float) -> float | None:
        """The rate so far, or ``None`` until some line has finished since the start."""
        if self.start_time is None:
            self.start_time, self.start_done = now, num_done
            return None
        elapsed = now - self.start_time
        if elapsed <= 0 or num_done <= self.start_done:
            return None
        return (num_done - self.start_done) / elapsed * 60


def follow(client: openai.OpenAI, batch: Batch) -> Batch:
    """Poll ``batch`` about every second until it ends; return its last state.

    Ctrl-C stops the following (exit status 130), never the batch.
    """
    rate = LineRate()
    try:
        with _progress() as progress:
            task = progress.add_task(batch.id, **_fields(batch, rate))
            while batch.status not in TERMINAL_STATUSES:
                time.sleep(POLL_INTERVAL_S)
                batch = client.batches.retrieve(batch.id)
                progress.update(task, **_fields(batch, rate))
            return batch
    except KeyboardInterrupt:
        typer.echo(
            f"\nStopped following; the batch goes on. See it with: fovea batch status {batch.id}",
            err=True,
        )
        raise typer.Exit(130) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.fields[status]:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=Console(stderr=True),
    )


def _fields(batch: Batch, rate: LineRate) -> dict[str, Any]:
    counts = batch.request_counts
    num_total = counts.total if counts is not None else 0
    num_failed = counts.failed if counts is not None else 0
    num_done = counts.completed + num_failed if counts is not None else 0
    per_minute = rate.per_minute(num_done, time.monotonic())
    return {
        # Unknown (a pulsing bar) until the server has counted the lines.
        "total": num_total or None,
        "completed": num_done,
        "status": batch.status,
        "failed": num_failed,
        "rate": "- lines/min" if per_minute is None else f"{per_minute:.1f} lines/min",
        "eta": _eta(num_total - num_done, per_minute),
    }


def _eta(num_left: int, per_minute: float | None) -> str:
    if num_left <= 0:
        return "0:00"
    if per_minute is None:
        return "-"
    minutes, seconds = divmod(round(num_left / per_minute * 60), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
