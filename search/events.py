"""What a trial tells the world while it runs: one line, or a typed event a display can show.

Shared by the trial (which produces events) and the study (whose progress display consumes
them), so neither imports the other. ``Log`` is the one type of every ``log`` parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Log", "TrialEvent", "report"]

#: Where progress lines go: ``print``, a progress display, a worker process's queue.
Log = Callable[[str], None]


@dataclass(frozen=True)
class TrialEvent:
    """One step of a trial's life; ``text`` is its plain line (what a plain ``log`` prints)."""

    kind: str  # "start", "epoch" or "end"
    trial: int
    text: str
    detail: str = ""  # start: the params
    epoch: int | None = None
    epochs: int | None = None
    metric: str | None = None
    value: float | None = None  # epoch: the metric's value; end: the trial's value
    state: str | None = None  # end: COMPLETE, PRUNED or FAIL


def report(log: Log, event: TrialEvent, suffix: Callable[[], str] | None = None) -> None:
    """Give ``event`` to a progress display, or print its line (+ ``suffix()``) to a plain ``log``."""
    sink = getattr(log, "event", None)
    if sink is not None:
        sink(event)
    else:
        log(event.text + (suffix() if suffix is not None else ""))
