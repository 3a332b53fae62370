"""Workers of a study: a loop that decides whether to go on, a method that runs one trial
(ask → run → tell), and the local worker processes that ``launch --workers N`` spawns.

"Count the trials, then ask for one" runs under the study lock, so N workers on one storage
finish exactly ``n_trials`` COMPLETE + PRUNED trials: failed or interrupted trials do not
count and are replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import optuna
from optuna.trial import TrialState

from search import keys
from search.errors import StudyError
from search.events import Log, TrialEvent, report
from search.locations import Locations
from search.signals import ignore_signals, interrupt_when_parent_dies
from search.spec.study_file import parse_study
from search.study.opening import OpenStudy, close_failed_runs, open_study, summarize
from search.study.progress import QueueLog, StudyProgress, relay
from search.study.storage import heartbeat
from search.tracking.names import RETRY_OF_TAG
from search.tracking.runs import checkpoint_uri
from search.trial.lifecycle import DataCache, TrialOutcome, run_trial

__all__ = ["TrialBody", "Worker", "WorkerStats", "run_processes"]

# What runs one asked trial: ``objective.run_trial``'s signature (a load test passes a light one).
TrialBody = Callable[..., TrialOutcome]
WAIT_SECONDS = 1.0  # between looks at a study whose last trials run elsewhere and may still fail
INTERRUPT_GRACE = 1.0  # seconds workers that got Ctrl-C themselves have before SIGTERM is passed on
STOP_TIMEOUT = 60  # seconds a stopping worker may take to record its trial before it is killed


@dataclass
class WorkerStats:
    """Where one worker's time went: whole trial loops vs training and evaluation inside them."""

    trials: int = 0
    loop_seconds: float = 0.0  # ask → train → tell → parent-run update, summed over trials
    compute_seconds: float = 0.0  # training epochs, validation and test evaluation


class Next(Enum):
    """What the loop does next."""

    RUN = "run"  # a trial was asked for: run it
    WAIT = "wait"  # the count is reached with trials still running elsewhere: they may fail
    STOP = "stop"


class Worker:
    """One worker of an opened study: runs trials until the study holds ``n_trials`` counted ones.

    ``run`` raises KeyboardInterrupt after recording an interrupted trial as FAIL ("interrupted")
    with its MLflow run FAILED; ``StudyError`` after too many failed trials.
    """

    def __init__(
        self,
        opened: OpenStudy,
        index: int = 0,
        deadline: float | None = None,
        log: Log = print,
        trial_body: TrialBody = run_trial,
    ):
        self.opened, self.index, self.deadline, self.log = opened, index, deadline, log
        self.trial_body = trial_body
        self.target = opened.cfg.study.n_trials
        self.max_failures = max(3, self.target)
        self.failures = 0
        self.data_cache: DataCache = {}  # datasets by base: trials of one base share them
        self.current: optuna.Trial | None = None  # asked and not yet told: what an interrupt closes
        self.stats = WorkerStats()

    def run(self) -> WorkerStats:
        import torch

        torch.set_num_threads(self.opened.cfg.training.threads)
        try:
            while True:
                started = time.perf_counter()
                step = self._next()
                if step is Next.STOP:
                    close_failed_runs(self.opened)  # runs a tracking outage left open, if it is back
                    break
                if step is Next.WAIT:
                    time.sleep(WAIT_SECONDS)
                    continue
                outcome = self._run_one()
                self.stats.trials += 1
                self.stats.loop_seconds += time.perf_counter() - started
                self.stats.compute_seconds += outcome.compute_seconds
                if self.failures >= self.max_failures:
                    raise StudyError(
                        f"{self.failures} trials failed in this worker; last reason: {outcome.reason}"
                    )
        except KeyboardInterrupt:
            ignore_signals()  # record it before anything else stops us
            if self.current is not None:
                self._record_interrupted(self.current)
                self._report_end(self.current.number, "FAIL", None, " (interrupted)")
            raise
        return self.stats

    def _next(self) -> Next:
        """Decide: stop (deadline, or the count is reached), wait, or ask for a trial (``current``)."""
        if self.deadline is not None and time.time() >= self.deadline:
            self.log("timeout reached: no new trials")
            return Next.STOP
        opened = self.opened
        if opened.heartbeat_interval:
            close_failed_runs(opened)  # outside the lock: MLflow may be slow to answer
        with opened.lock():
            if opened.heartbeat_interval:
                optuna.storages.fail_stale_trials(opened.study)  # dead workers' trials: FAIL + retry
            counts = opened.counts()
            done, running = keys.counted(counts), counts["running"]
            if done + running < self.target:
                # ask() takes a WAITING trial (a retry or a grid point) first, else samples one
                self.current = opened.study.ask()
                keys.mark_worker(self.current)
                return Next.RUN
        return Next.STOP if done >= self.target or running == 0 else Next.WAIT

    def _run_one(self) -> TrialOutcome:
        """Run the asked trial, tell Optuna how it ended, update the parent run."""
        opened, trial = self.opened, self.current
        assert trial is not None
        retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
            opened.storage.get_trial(trial._trial_id)
        )
        if retry_of is not None:
            self.log(f"trial {trial.number} retries trial {retry_of} with the same params")
        tags = {RETRY_OF_TAG: str(retry_of)} if retry_of is not None else {}
        with heartbeat(opened.storage, trial._trial_id, opened.heartbeat_interval):
            outcome = self.trial_body(
                opened.study, trial, opened.cfg, opened.tracker, self.log, self.data_cache, tags=tags
            )
        if outcome.state == TrialState.COMPLETE:
            opened.study.tell(trial, outcome.value)
        else:
            opened.study.tell(trial, state=outcome.state)
        self.current = None
        self.failures += outcome.state == TrialState.FAIL
        try:
            opened.update_parent()
        except Exception as exc:  # tracking down past its window, artifact store full: next time
            self.log(f"study's parent run not updated: {type(exc).__name__}: {exc}")
        extra = f" ({outcome.reason})" if outcome.reason and outcome.state != TrialState.COMPLETE else ""
        self._report_end(trial.number, outcome.state.name, outcome.value, extra)
        return outcome

    def _report_end(self, number: int, state: str, value: float | None, extra: str) -> None:
        """A trial's end: an event for a progress display, or a line with the study's counts."""
        shown = f" value {value:.4f}" if value is not None else ""
        event = TrialEvent("end", number, f"trial {number} {state}{shown}{extra}", value=value, state=state)
        report(self.log, event, lambda: f" | {self._progress()}")

    def run_final(self, seconds: float) -> TrialOutcome | None:
        """The study's final run: its best configuration trained for ``seconds`` (once per study)."""
        study = self.opened.study
        trials = study.get_trials(deepcopy=False)
        if any(keys.final_seconds(t) is not None and t.state == TrialState.COMPLETE for t in trials):
            return None
        best = keys.best_trial(study)
        if best is None:
            self.log("final run skipped: no complete trial")
            return None
        init_from = None
        if self.opened.cfg.final is not None and self.opened.cfg.final.init == "best_trial":
            run_id = keys.run_id(best)
            init_from = checkpoint_uri(run_id) if run_id is not None else None
        start = f"from its best checkpoint ({init_from})" if init_from else "from scratch"
        self.log(f"final run: the configuration of trial {best.number} for {seconds:.0f}s, {start}")
        with self.opened.lock():
            study.enqueue_trial(best.params, user_attrs=keys.final_user_attrs(best, seconds, init_from))
            self.current = study.ask()
            keys.mark_worker(self.current)
        try:
            return self._run_one()
        except KeyboardInterrupt:
            ignore_signals()
            if self.current is not None:
                self._record_interrupted(self.current)
            raise

    def _progress(self) -> str:
        return f"{summarize(self.opened.study)} of {self.target}"

    def _record_interrupted(self, trial: optuna.Trial) -> None:
        """FAIL with reason "interrupted", wherever in its life the trial was stopped.

        The interrupt may have cut a storage call in half and left its database session unusable:
        such a session is discarded and the call made again.
        """
        study = self.opened.study
        for attempt in range(3):
            try:
                if keys.fail_reason(trial) is None:  # run_trial sets it when it saw the interrupt
                    keys.set_fail_reason(trial, "interrupted")
                study.tell(trial, state=TrialState.FAIL)
                break
            except optuna.exceptions.UpdateFinishedTrialError:
                break
            except Exception:
                if attempt == 2:
                    raise
                self.opened.storage.remove_session()
        with contextlib.suppress(Exception), self.opened.tracker.client.impatient():
            close_failed_runs(self.opened)  # its MLflow run, if one was left RUNNING


# --- local worker processes (`launch --workers N`) -------------------------------------------------


def _worker_main(
    cfg_dict: dict,
    source: str,
    locations: Locations,
    index: int,
    deadline: float | None,
    queue: Any,
    parent: int,
    events: Any,
) -> None:
    """Entry point of a spawned worker process; its stats go back through ``queue``, its lines
    and trial events through ``events`` (to the launching process's progress display)."""
    interrupt_when_parent_dies(parent)
    cfg = parse_study(cfg_dict, source)
    log = QueueLog(events, index)
    try:
        opened = open_study(cfg, locations, index, log=log)
        queue.put(dataclasses.asdict(Worker(opened, index, deadline, log).run()))
    except KeyboardInterrupt:
        sys.exit(130)
    except StudyError as exc:
        log(f"error: {exc}")
        sys.exit(1)


def run_processes(
    opened: OpenStudy, workers: int, deadline: float | None, progress: StudyProgress | None = None
) -> tuple[list[WorkerStats], int]:
    """Run ``workers`` spawned worker processes to their end: (their stats, how many failed).

    What they log reaches ``progress`` (default: plain lines on stdout) through a queue.
    Ctrl-C reaches the whole process group; a SIGINT or SIGTERM sent to this process alone is
    passed on as SIGTERM. Each worker records its running trial as interrupted and stops.
    """
    cfg = opened.cfg
    progress = progress or StudyProgress.of(opened.study, cfg.study.n_trials, workers=workers)
    ctx = mp.get_context("spawn")
    queue, events = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(cfg.to_dict(), cfg.source, opened.locations, i, deadline, queue, os.getpid(), events),
            name=f"collatz-hpo-worker-{i}",
        )
        for i in range(workers)
    ]
    with relay(events, progress):
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            ignore_signals()
            _stop(procs)
            raise
    stats = []
    while not queue.empty():
        stats.append(WorkerStats(**queue.get()))
    return stats, sum(p.exitcode not in (0, None) for p in procs)


def _stop(procs: list[Any]) -> None:
    """Pass an interrupt on to the workers and wait until they have recorded their trials."""
    # Workers that got the Ctrl-C themselves are already cleaning up (and ignore further
    # signals after their first instant); give them that instant before passing it on.
    end = time.time() + INTERRUPT_GRACE
    while time.time() < end and any(p.is_alive() for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(timeout=STOP_TIMEOUT)
        if p.is_alive():
            p.kill()
