"""What a trial does after each epoch: metrics to MLflow, the pruning signal to Optuna, a progress
line; a search trial also stops when the pruner says so (a final run is not compared, not pruned).

The trainer knows nothing of Optuna or MLflow: these callbacks are its only link to them.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import optuna

from core import Callback, CollatzDataset, Trainer
from search import keys
from search.events import TrialEvent, report
from search.spec.runconfig import reported_sign
from search.tracking.names import VAL_EXACT_MATCH
from search.tracking.runs import class_metrics
from search.trial.body import TrialEnv

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
        self.train_steps = 0
        self.first_step = 0  # the trainer's step when training (or resuming) began

    def on_train_start(self, trainer: Trainer) -> None:
        self.first_step = trainer.global_step

    def step_of(self, trainer: Trainer, epoch: int) -> int:
        """The pruner's step at the end of ``epoch``: the epoch, or the samples seen by then."""
        return trainer.samples_seen if self.by_samples else epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.compute_seconds += metrics.get("epoch_time", 0.0) + metrics.get("val_time", 0.0)
        self.train_steps = trainer.global_step - self.first_step
        logged = {k: v for k, v in metrics.items() if k != "epoch"}
        if trainer.last_val_correct is not None:
            rates = per_class_rates(trainer.last_val_correct.cpu().numpy(), self.val.k, self.val.k_prime)
            logged.update(class_metrics(VAL_EXACT_MATCH, rates))
        self.tracker.log_metrics(self.run_id, logged, step=epoch)
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


class PruningCallback(ReportingCallback):
    """A search trial's callback: it reports, then raises ``TrialPruned`` when the pruner says so."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        super().on_epoch_end(trainer, epoch, metrics)
        if self.trial.should_prune():
            shown = f"{self.signal} {metrics[self.signal]:.4f}"
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({shown})")
