"""What a trial does after each epoch: metrics to MLflow, the pruning signal to Optuna, a progress
line; a search trial also stops when the pruner says so, or (``timeout_stops_trials``) at the
study's timeout (a final run or a seed replicate is not compared, not pruned, not cut).

The trainer knows nothing of Optuna or MLflow: these callbacks are its only link to them.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import NoReturn

import numpy as np
import optuna

from core import Callback, CollatzDataset, StopTraining, Trainer
from search import keys
from search.events import TrialEvent, report
from search.spec.runconfig import reported_sign
from search.tracking.names import VAL_EXACT_MATCH
from search.tracking.runs import class_metrics
from search.trial.body import TrialEnv
from search.trial.training import validation_lead

__all__ = ["PruningCallback", "ReportingCallback", "per_class_rates"]

MIN_CLASS_COUNT = 5  # per-(k, k′) validation curves only for classes with this many samples


def per_class_rates(correct: np.ndarray, k: np.ndarray, kp: np.ndarray) -> dict[tuple[int, int], dict]:
    """Exact match of each (k, k′) class among validation rows (classes with enough rows)."""
    out = {}
    keys = k.astype(np.int64) * 1000 + kp.astype(np.int64)
    for key in np.unique(keys).tolist():
        rows = keys == key
        count = int(rows.sum())
        if count >= MIN_CLASS_COUNT:
            out[(key // 1000, key % 1000)] = {"count": count, "exact_match": float(correct[rows].mean())}
    return out


class ReportingCallback(Callback):
    """Per epoch: metrics to MLflow (step = epoch), the pruning signal to Optuna, a progress line.
    A final run's callback: it reports, it is never pruned.

    The pruner sees ``study.prune_on`` (default: the objective metric), negated when its direction
    differs from the study's, at step = epoch or samples seen (``study.pruner.unit``).
    """

    def __init__(
        self, trial: optuna.Trial, env: TrialEnv, run_id: str, val: CollatzDataset, epochs: int
    ) -> None:
        cfg = env.cfg
        self.trial, self.tracker, self.run_id, self.log = trial, env.tracker, run_id, env.log
        self.metric, self.val, self.epochs = cfg.study.metric, val, epochs
        self.signal = cfg.study.prune_on or cfg.study.metric
        self.sign = reported_sign(self.signal, keys.maximized(env.study))
        self.by_samples = cfg.study.pruner.unit == "samples"
        # what this trial computed itself (a resumed one: since its checkpoint), for the cost records
        self.compute_seconds = 0.0  # inside training and validation
        self.train_steps = self.train_samples = 0
        self.first_step = self.first_sample = 0  # the trainer's counts when training (or resuming) began

    def on_train_start(self, trainer: Trainer) -> None:
        self.first_step, self.first_sample = trainer.global_step, trainer.samples_seen

    def step_of(self, trainer: Trainer, epoch: int) -> int:
        """The pruner's step at the end of ``epoch``: the epoch, or the samples seen by then."""
        return trainer.samples_seen if self.by_samples else epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.record_epoch(trainer, epoch, metrics)
        value = metrics[self.metric]
        with warnings.catch_warnings():
            # a retry resumed from an earlier checkpoint than its values say: Optuna keeps the first
            warnings.filterwarnings("ignore", message="The reported value is ignored")
            self.trial.report(self.sign * metrics[self.signal], self.step_of(trainer, epoch))
        text = (
            f"trial {self.trial.number} epoch {epoch}/{self.epochs} {self.metric} {value:.4f} "
            f"({metrics.get('samples_per_sec', 0):,.0f} samples/s)"
        )
        event = TrialEvent("epoch", self.trial.number, text, epoch=epoch, epochs=self.epochs)
        report(self.log, dataclasses.replace(event, metric=self.metric, value=value))

    def record_epoch(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch's cost on this callback, its metrics (per class too) on the MLflow run."""
        self.compute_seconds += metrics.get("epoch_time", 0.0) + metrics.get("val_time", 0.0)
        self.train_steps = trainer.global_step - self.first_step
        self.train_samples = trainer.samples_seen - self.first_sample
        logged = {k: v for k, v in metrics.items() if k != "epoch"}
        if trainer.last_val_correct is not None:
            rates = per_class_rates(trainer.last_val_correct.cpu().numpy(), self.val.k, self.val.k_prime)
            logged.update(class_metrics(VAL_EXACT_MATCH, rates))
        self.tracker.log_metrics(self.run_id, logged, step=epoch)


class PruningCallback(ReportingCallback):
    """A search trial's callback: it reports, then raises ``TrialPruned`` when the pruner says so,
    or when the study's timeout comes while it trains (``TrialEnv.deadline``, set by
    ``timeout_stops_trials``), so that its worker is free at the deadline.

    At the deadline less the last validation's time it stops after the batch; that partial epoch
    is validated and logged to MLflow, not reported to the pruner (part of an epoch is not the
    epoch other trials reported); the trial is PRUNED, its earlier reports kept. An epoch that
    ends that late is reported, then the trial is PRUNED (unless it was its last).
    """

    def __init__(
        self, trial: optuna.Trial, env: TrialEnv, run_id: str, val: CollatzDataset, epochs: int
    ) -> None:
        super().__init__(trial, env, run_id, val, epochs)
        self.deadline = env.deadline
        self.timeout_reason = f"stopped at the study's timeout ({_duration(env.cfg.study.timeout or 0.0)})"
        self.cut = False  # whether the deadline stopped training inside an epoch

    def at_deadline(self, trainer: Trainer) -> bool:
        """Whether no more training fits before the deadline (a validation must still fit)."""
        return self.deadline is not None and time.time() + validation_lead(trainer) >= self.deadline

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        if self.at_deadline(trainer):
            self.cut = True
            raise StopTraining(self.timeout_reason)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.cut:
            self.record_epoch(trainer, epoch, metrics)
            self.stop_at_timeout()
        super().on_epoch_end(trainer, epoch, metrics)
        if self.trial.should_prune():
            shown = f"{self.signal} {metrics[self.signal]:.4f}"
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({shown})")
        if epoch < self.epochs and trainer.stop_reason is None and self.at_deadline(trainer):
            self.stop_at_timeout()

    def stop_at_timeout(self) -> NoReturn:
        """PRUNED, the reason on the trial (``status`` tells it from the pruner's prunes)."""
        keys.set_stop_reason(self.trial, self.timeout_reason)
        raise optuna.TrialPruned(self.timeout_reason)


def _duration(seconds: float) -> str:
    """A timeout as a person gives it: "35 min", "90 s"."""
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:g} s"
