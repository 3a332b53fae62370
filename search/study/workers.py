"""A worker of a study: a loop that decides whether to go on, and a method that runs one asked
trial (run → tell → parent-run update).

"Count the trials, then ask for one" runs under the study lock, so N workers on one storage
finish exactly ``n_trials`` COMPLETE + PRUNED trials: failed or interrupted trials do not
count and are replaced; final runs and seed replicates do not count either. Once the search is
done, with ``[confirm]``, the workers run the seed replicates of its leaders (``study.leaders``).
A stratified study (``[study] stratify``) fixes the new trial's value there too (``study.strata``).
Worker processes (``launch --workers N``): ``study.processes``; the final run: ``study.final``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import optuna
from optuna.trial import TrialState

from search import keys
from search.errors import StudyError
from search.events import Log, TrialEvent, report
from search.locations import mask
from search.signals import ignore_signals
from search.study import strata
from search.study.leaders import next_replicate
from search.study.opening import OpenStudy, close_failed_runs, summarize
from search.study.storage import heartbeat
from search.tracking.names import RETRY_OF_TAG
from search.trial.body import INTERRUPTED, DataCache, TrialBody, TrialEnv, TrialOutcome, interrupted_outcome
from search.trial.lifecycle import run_trial
from search.trial.resume import enqueue_retries

__all__ = ["Worker", "WorkerStats"]

WAIT_SECONDS = 1.0  # between looks at a study whose last trials run elsewhere and may still fail


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

    An interrupt (Ctrl-C, SIGTERM) ends the worker's asked trial FAIL ("interrupted"), its MLflow
    run FAILED, then goes on as KeyboardInterrupt; ``StudyError`` after too many failed trials.
    Interrupted trials and those of dead workers are retried, from their latest uploaded
    checkpoint, before any new trial is sampled (``search.trial.resume``). At ``deadline`` (the
    study's timeout) it starts no new trial; with ``timeout_stops_trials`` its search trial still
    training stops there too, PRUNED (seed replicates and the final run keep their own budgets).
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
        self.current: optuna.Trial | None = None  # asked and not yet told: what an interrupt ends
        self.stats = WorkerStats()

    def run(self) -> WorkerStats:
        import torch

        torch.set_num_threads(self.opened.cfg.training.threads)
        with self._interruptible():
            while True:
                started = time.perf_counter()
                step = self._next()
                if step is Next.STOP:
                    close_failed_runs(self.opened)  # runs a tracking outage left open, if it is back
                    break
                if step is Next.WAIT:
                    time.sleep(WAIT_SECONDS)
                    continue
                assert self.current is not None
                outcome = self._run_one(self.current)
                self.stats.trials += 1
                self.stats.loop_seconds += time.perf_counter() - started
                self.stats.compute_seconds += outcome.compute_seconds
                if self.failures >= self.max_failures:
                    raise StudyError(
                        f"{self.failures} trials failed in this worker; last reason: {outcome.reason}"
                    )
        return self.stats

    def run_asked(self, trial: optuna.Trial) -> TrialOutcome:
        """Run a trial asked outside the loop (the final run) as the loop runs its own."""
        self.current = trial
        with self._interruptible():
            return self._run_one(trial)

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
            counts = opened.search_counts()
            done, running = keys.counted(counts), counts["running"]
            if done + running < self.target:
                enqueue_retries(opened.study, opened.cfg.study.max_retries)  # interrupted, dead locally
                # a WAITING trial (a retry, a grid point) first, else a new one: a stratified study's
                # with the value that has the fewest trials, fixed before the sampler samples the rest
                self.current = strata.ask(opened)
                keys.mark_worker(self.current)
                return Next.RUN
            if done >= self.target and opened.cfg.confirm is not None:  # the search is done: [confirm]
                self.current, running = next_replicate(opened, self.log)
                if self.current is not None:
                    keys.mark_worker(self.current)
                    return Next.RUN
                return Next.WAIT if running else Next.STOP
        return Next.STOP if done >= self.target or running == 0 else Next.WAIT

    def _run_one(self, trial: optuna.Trial) -> TrialOutcome:
        """Run the asked trial, tell Optuna how it ended, update the parent run."""
        opened = self.opened
        retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
            opened.storage.get_trial(trial._trial_id)
        )
        if retry_of is not None:
            self.log(f"trial {trial.number} retries trial {retry_of} with the same params")
        tags = {RETRY_OF_TAG: str(retry_of)} if retry_of is not None else {}
        stops = opened.cfg.study.timeout_stops_trials  # then a search trial stops at the deadline
        deadline = self.deadline if stops else None
        env = TrialEnv(opened.study, opened.cfg, opened.tracker, self.log, self.data_cache, deadline)
        with heartbeat(opened.storage, trial._trial_id, opened.heartbeat_interval):
            outcome = self.trial_body(trial, env, tags)
        if outcome.interrupted:  # the trial saw the interrupt and made it its outcome
            self._end_interrupted(trial, outcome)
            raise KeyboardInterrupt(outcome.reason)
        self._tell(trial, outcome)
        self.failures += outcome.state == TrialState.FAIL
        try:
            opened.update_parent()
        except Exception as exc:  # tracking down past its window, artifact store full: next time
            self.log(f"study's parent run not updated: {type(exc).__name__}: {exc}")
        extra = f" ({outcome.reason})" if outcome.reason and outcome.state != TrialState.COMPLETE else ""
        self._report_end(trial.number, outcome.state.name, outcome.value, extra)
        return outcome

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Record how the trial ended in Optuna: its fail reason, then its state."""
        if outcome.state == TrialState.FAIL and outcome.reason:
            keys.set_fail_reason(trial, mask(outcome.reason))
        if outcome.interrupted:  # it did not fail: it is retried when the study runs again
            keys.mark_for_retry(trial)
        if outcome.state == TrialState.COMPLETE:
            self.opened.study.tell(trial, outcome.value)
        else:
            self.opened.study.tell(trial, state=outcome.state)
        self.current = None

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """An interrupt that stops the worker outside a trial's body (asking, telling) ends the
        asked trial as one that saw it (``_end_interrupted``), then goes on."""
        try:
            yield
        except KeyboardInterrupt:
            ignore_signals()  # record it before anything else stops us
            if self.current is not None:
                self._end_interrupted(self.current, interrupted_outcome())
            raise

    def _end_interrupted(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Tell an interrupted trial, wherever in its life it was stopped, and close its MLflow run
        if it is still RUNNING.

        The interrupt may have cut a storage call in half and left its database session unusable:
        such a session is discarded and the call made again.
        """
        for attempt in range(3):
            try:
                self._tell(trial, outcome)
                break
            except optuna.exceptions.UpdateFinishedTrialError:
                break
            except Exception:
                if attempt == 2:
                    raise
                self.opened.storage.remove_session()
        self.current = None
        with contextlib.suppress(Exception), self.opened.tracker.client.impatient():
            close_failed_runs(self.opened)  # its MLflow run, if one was left RUNNING
        self._report_end(trial.number, "FAIL", None, f" ({INTERRUPTED})")

    def _report_end(self, number: int, state: str, value: float | None, extra: str) -> None:
        """A trial's end: an event for a progress display, or a line with the study's counts."""
        shown = f" value {value:.4f}" if value is not None else ""
        event = TrialEvent("end", number, f"trial {number} {state}{shown}{extra}", value=value, state=state)
        report(self.log, event, lambda: f" | {self._progress()}")

    def _progress(self) -> str:
        return summarize(self.opened.study, of=self.target)
