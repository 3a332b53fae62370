"""A running trial's checkpoints in the artifact store: uploaded at the study file's interval, so
that a retry of the trial (its worker killed or interrupted) resumes from the latest one
(``search.trial.resume``).

The Trainer writes ``last.pt`` after every epoch (``best.pt`` when the monitored metric improved)
before it calls the callbacks; ``CheckpointUploads`` then uploads it to the trial run's
``checkpoints/`` when ``[training] checkpoint_every`` says so, and records where it lies on the
trial (``keys.CHECKPOINT_ATTR``). An upload goes through the study's tracker (retried across the
outage window); one that fails anyway is a line in the log, and the trial trains on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from core import Callback, Trainer
from search import keys
from search.spec.sections import MAX_UPLOAD_SHARE
from search.tracking.names import CHECKPOINT_ARTIFACTS
from search.trial.body import TrialEnv

__all__ = ["CheckpointUploads"]

#: After an upload of u seconds, the default interval waits WAIT_PER_UPLOAD_SECOND · u seconds.
WAIT_PER_UPLOAD_SECOND = (1 - MAX_UPLOAD_SHARE) / MAX_UPLOAD_SHARE


class CheckpointUploads(Callback):
    """Uploads ``folder``'s ``last.pt`` (and ``best.pt`` when it changed since) to run ``run_id``
    every ``[training] checkpoint_every``, but not after the last epoch, nor one that ends training
    (``trainer.stop_reason``): the trial's record uploads its checkpoints then.
    ``step_of(trainer, epoch)``: the pruner's step of an epoch."""

    def __init__(
        self,
        trial: optuna.Trial,
        env: TrialEnv,
        run_id: str,
        folder: Path,
        epochs: int,
        step_of: Callable[[Trainer, int], int],
    ) -> None:
        self.trial, self.env, self.run_id, self.folder, self.epochs = trial, env, run_id, folder, epochs
        self.every = env.cfg.training.checkpoint_every
        self.step_of = step_of
        self.latest: keys.CheckpointAt | None = None  # what last.pt holds, once an epoch ended
        self.best_changed = False
        self.saved_seconds = 0.0
        self.upload_seconds = 0.0  # all uploads of this trial
        self.last_cost = 0.0  # seconds of the latest upload
        self.since = time.monotonic()  # when training started or the latest upload ended
        self.last_epoch = 0  # the epoch uploaded last (or resumed from)

    def on_train_start(self, trainer: Trainer) -> None:
        self.since, self.last_epoch = time.monotonic(), trainer.epoch

    def on_checkpoint(self, trainer: Trainer, path: Path, kind: str) -> None:
        self.best_changed |= kind == "best"
        if kind == "last":
            self.saved_seconds = trainer.elapsed  # the training time last.pt holds (about)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        step, seconds = self.step_of(trainer, epoch), round(self.saved_seconds, 3)
        self.latest = keys.CheckpointAt(self.trial.number, self.run_id, epoch, step, seconds)
        if epoch < self.epochs and trainer.stop_reason is None and self.due(epoch):
            self.upload()

    def due(self, epoch: int) -> bool:
        """Whether ``checkpoint_every`` has passed since the latest upload (or the start)."""
        if self.every.epochs is not None:
            return epoch - self.last_epoch >= self.every.epochs
        waited = time.monotonic() - self.since
        if self.every.minutes is not None:
            return waited >= 60 * self.every.minutes
        return waited >= WAIT_PER_UPLOAD_SECOND * self.last_cost

    def upload(self) -> None:
        """Upload ``last.pt`` (and a changed ``best.pt``) now and record it on the trial."""
        assert self.latest is not None
        # last.pt last: one that did not arrive leaves the store's last.pt as the record says
        names = ["best.pt", "last.pt"] if self.best_changed else ["last.pt"]
        start = time.monotonic()
        try:
            self.env.tracker.log_artifacts(
                self.run_id, [self.folder / n for n in names], CHECKPOINT_ARTIFACTS
            )
            self.upload_seconds += time.monotonic() - start
            self.record()
        except Exception as exc:  # the trial trains on: a retry resumes from an earlier upload
            self.env.log(
                f"trial {self.trial.number}: checkpoint upload at epoch {self.latest.epoch} failed "
                f"({type(exc).__name__}: {exc}); training goes on"
            )
        self.last_cost = time.monotonic() - start
        self.since, self.last_epoch, self.best_changed = time.monotonic(), self.latest.epoch, False

    def record(self) -> None:
        """Where the latest checkpoint lies, on the trial (after its final upload too)."""
        if self.latest is not None:
            at = dataclasses.replace(self.latest, upload_seconds=round(self.upload_seconds, 3))
            keys.set_checkpoint(self.trial, at)
