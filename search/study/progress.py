"""What a researcher sees while ``launch`` runs: the study's progress in one place.

On a terminal, one live display (rich): trials counted of ``n_trials``, complete/pruned/failed,
the best value and trial, elapsed time and an estimate of the time left, and one status line per
worker (its trial, epoch and last value), with each finished trial printed above it. Elsewhere
(CI, log files, ``| tee``) the same facts come as plain lines, one per event: a trial started, a
trial ended (with the study's counts, best and times), a message. Per-epoch lines are shown with
``launch --verbose``.

Events are produced where trials run (``objective``, ``workers``) and passed to whatever ``log``
they were given: :func:`report` hands them to a :class:`StudyProgress`, or prints their line to a
plain ``log`` (``worker``, the API). Worker processes put theirs on a multiprocessing queue
(:class:`QueueLog`) that :func:`relay` drains into the launching process's display: no database
reads for progress. rich is imported only for the live display.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from search.events import Log, TrialEvent

__all__ = ["QueueLog", "StudyProgress", "is_terminal", "relay"]


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal that can show a live display."""
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


# --- worker processes -----------------------------------------------------------------------------


class QueueLog:
    """The log of a spawned worker process: its lines and events go to the launching process."""

    def __init__(self, queue: Any, index: int) -> None:
        self.queue, self.index = queue, index

    def __call__(self, msg: str) -> None:
        self.queue.put(("line", self.index, msg))

    def event(self, event: TrialEvent) -> None:
        self.queue.put(("event", self.index, event))


@contextlib.contextmanager
def relay(queue: Any, progress: StudyProgress) -> Iterator[None]:
    """Pass what worker processes put on ``queue`` to ``progress`` while the block runs.

    The block ends after the workers have exited, so everything they put is read before the end
    marker (a worker flushes its queue before it exits).
    """

    def forward() -> None:
        while (item := queue.get()) is not None:
            kind, index, payload = item
            if kind == "event":
                progress.event(payload, index)
            else:
                progress.line(payload, index)

    thread = threading.Thread(target=forward, name="collatz-hpo-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        queue.put(None)
        thread.join(timeout=30)


# --- the display ----------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    s = max(0, round(seconds))
    hours, rest = divmod(s, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class WorkerStatus:
    """What one worker is doing, as the display shows it."""

    trial: int | None = None
    params: str = ""
    epoch: str = ""
    value: str = ""


@dataclass
class StudyProgress:
    """The study's progress in the launching process, from the events of its workers.

    Counts start from the study as opened (earlier launches count) and follow the events; the
    estimate of the time left is the remaining count at this launch's rate, capped by the
    study's timeout. Use it as ``log`` (messages) and as a context manager (the live display).
    """

    name: str
    n_trials: int
    counts: dict[str, int]
    maximize: bool
    best: tuple[float, int] | None = None  # (value, trial)
    # the objective as printed (an exact match with its interval); None: bare, to 4 decimals
    objective_text: Callable[[float], str] | None = None
    workers: int = 1
    deadline: float | None = None  # wall clock after which no trial starts
    out: Log = print
    verbose: bool = False
    live: bool = False
    console: Any = None  # a rich Console (tests pass one that records)
    started: float = field(default_factory=time.time)
    status: dict[int, WorkerStatus] = field(default_factory=dict, init=False)  # by worker index

    def __post_init__(self) -> None:
        self.counts = {k: self.counts.get(k, 0) for k in ("complete", "pruned", "fail", "running")}
        self.counts["running"] = 0  # this launch's workers report theirs as they start
        self.at_start = self.done
        self.status = {i: WorkerStatus() for i in range(self.workers)}
        self._lock = threading.RLock()
        self._live: Any = None
        self.first_start: float | None = None  # when this launch's first trial started

    @classmethod
    def of(cls, study: Any, n_trials: int, **kwargs: Any) -> StudyProgress:
        """The progress of an opened Optuna ``study`` (its counts and best trial so far)."""
        from search import keys
        from search.study.table import study_figures

        best = keys.best_trial(study)
        return cls(
            name=study.study_name,
            n_trials=n_trials,
            counts=keys.state_counts(study.get_trials(deepcopy=False)),
            maximize=keys.maximized(study),
            best=(best.value, best.number) if best is not None else None,
            objective_text=study_figures(study).objective_text,
            **kwargs,
        )

    # --- facts
    @property
    def done(self) -> int:
        """Trials that count towards ``n_trials`` (COMPLETE + PRUNED)."""
        return self.counts["complete"] + self.counts["pruned"]

    def left_seconds(self) -> float | None:
        """Estimated seconds until ``n_trials`` are done (None: no trial finished yet)."""
        now = time.time()
        cap = max(0.0, self.deadline - now) if self.deadline is not None else None
        remaining = self.n_trials - self.done
        if remaining <= 0:
            return 0.0
        finished = self.done - self.at_start
        if finished <= 0 or self.first_start is None:
            return cap
        estimate = (now - self.first_start) / finished * remaining  # worker start-up excluded
        return estimate if cap is None else min(estimate, cap)

    def summary(self) -> str:
        """``3 of 24 done: 2 complete, 1 pruned, 0 failed, 1 running | best 0.2130 (trial 0) | ...``."""
        line = f"{self.done} of {self.n_trials} done: {self.states()}"
        if self.best is not None:
            line += f" | {self.best_text()}"
        left = self.left_seconds()
        return line + f" | elapsed {clock(time.time() - self.started)}, left {self._left(left)}"

    def best_text(self) -> str:
        """``best 61.70 % (58.65–64.66, n=1,000) (trial 9)``, or ``best: none yet``."""
        if self.best is None:
            return "best: none yet"
        value, trial = self.best
        shown = self.objective_text(value) if self.objective_text else f"{value:.4f}"
        return f"best {shown} (trial {trial})"

    def states(self) -> str:
        """``2 complete, 1 pruned, 0 failed, 1 running``."""
        c = self.counts
        return f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, {c['running']} running"

    @staticmethod
    def _left(seconds: float | None) -> str:
        return "?" if seconds is None else f"~{clock(seconds)}"

    # --- input
    def __call__(self, msg: str) -> None:
        """A message of the launching process (or of its one in-process worker)."""
        self.line(msg, None)

    def line(self, msg: str, worker: int | None) -> None:
        self._print(self._prefix(worker) + msg)

    def event(self, event: TrialEvent, worker: int | None = None) -> None:
        """A trial event of ``worker`` (None: the in-process worker 0)."""
        with self._lock:
            status = self.status.setdefault(worker or 0, WorkerStatus())
            if event.kind == "start":
                self.first_start = self.first_start or time.time()
                self.counts["running"] += 1
                self.status[worker or 0] = WorkerStatus(event.trial, event.detail, "starting")
            elif event.kind == "epoch":
                status.epoch = f"epoch {event.epoch}/{event.epochs}"
                status.value = f"{event.metric} {event.value:.4f}" if event.value is not None else ""
            elif event.kind == "end":
                self._end(event, worker or 0)
        if event.kind == "end":
            self._print(f"{self._prefix(worker)}{event.text} | {self.summary()}")
        elif (event.kind == "start" and not self.live) or (event.kind == "epoch" and self.verbose):
            self._print(self._prefix(worker) + event.text)

    def _end(self, event: TrialEvent, worker: int) -> None:
        key = {"COMPLETE": "complete", "PRUNED": "pruned"}.get(event.state or "", "fail")
        self.counts[key] += 1
        self.counts["running"] = max(0, self.counts["running"] - 1)
        if key == "complete" and event.value is not None and self._better(event.value):
            self.best = (event.value, event.trial)
        self.status[worker] = WorkerStatus()

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.maximize else value < self.best[0]

    def _prefix(self, worker: int | None) -> str:
        return "" if worker is None else f"[w{worker}] "

    # --- output
    def _print(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(text))  # above the live display
        else:
            self.out(text)

    def __enter__(self) -> StudyProgress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = self.console or Console()
            self._live = Live(console=console, get_renderable=self.render, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def render(self) -> Any:
        """The live display: a bar with counts, best and times, then one line per worker."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        with self._lock:
            head = Table.grid(padding=(0, 1))
            head.add_row(
                f"[bold]study {self.name}[/]",
                ProgressBar(total=self.n_trials, completed=min(self.done, self.n_trials), width=30),
                f"{self.done}/{self.n_trials} trials",
                f"elapsed {clock(time.time() - self.started)}",
                f"left {self._left(self.left_seconds())}",
            )
            head.add_row("", self.states(), self.best_text())
            rows = Table(box=None, show_header=False, padding=(0, 1))
            for index, s in sorted(self.status.items()):
                trial = f"trial {s.trial}" if s.trial is not None else "idle"
                rows.add_row(f"w{index}", trial, s.epoch, s.value, s.params)
            return Group(head, rows)
