"""One Optuna trial: sample, train with pruning, track in MLflow, report the state.

The trainer knows nothing of Optuna or MLflow: the ``TrialCallback`` below reports every
epoch to both and raises ``TrialPruned`` when the pruner says so.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from core import Callback, CollatzDataset, MultiBaseEncoder, Trainer
from search import keys
from search.events import Log, TrialEvent, report
from search.locations import mask
from search.signals import ignore_signals
from search.spec.runconfig import RunConfig
from search.spec.space import suggest
from search.spec.study_file import MINIMIZED_METRICS, StudyConfig
from search.tracking.datasets import trial_inputs
from search.tracking.names import FINAL_TAG, VAL_EXACT_MATCH
from search.tracking.runs import (
    CHECKPOINT_ARTIFACTS,
    StudyTracker,
    class_metrics,
    fetch_init,
    flatten_test_metrics,
)
from search.tracking.system_metrics import system_metrics
from search.trial.training import build_data, execute

__all__ = ["TrialOutcome", "run_config_for", "run_trial"]

MIN_CLASS_COUNT = 5  # per-(k, k′) validation curves only for classes with this many samples


@dataclass
class TrialOutcome:
    """How one trial ended, and what it cost (the worker adds this up; Optuna is told the state)."""

    state: TrialState
    value: float | None
    reason: str | None = None
    compute_seconds: float = 0.0  # inside training, validation and test evaluation
    train_steps: int = 0


def run_config_for(cfg: StudyConfig, params: dict[str, Any], trial_number: int) -> RunConfig:
    """The frozen config of one trial: the study's data and training sections + sampled params.

    Every field comes from the study file (``params`` holds every ``[search]`` parameter that
    is set); a trial has no time budget of its own: epochs and the study's timeout bound it.
    """
    t, d = cfg.training, cfg.data
    study_fields: dict[str, Any] = {
        "data_range": tuple(d.range),
        "train_size": d.train_size,
        "val_size": d.val_size,
        "test_size": d.test_size,
        "data_seed": d.seed,
        "batch_size": t.batch_size,
        "eval_batch_size": t.eval_batch_size,
        "epochs": t.epochs,
        "samples_per_epoch": t.samples_per_epoch,
        "early_stopping_patience": t.early_stopping_patience,
        "monitor": cfg.study.metric,
        "monitor_mode": "max" if cfg.study.direction == "maximize" else "min",
        "optimizer": t.optimizer,
        "weight_decay": t.weight_decay,
        "scheduler": t.scheduler,
        "warmup": t.warmup,
        "lr_floor": t.lr_floor,
        "balance": t.balance,
        "max_grad_norm": t.max_grad_norm,
        "time_budget": None,
        "seed": cfg.study.seed + trial_number,
        "device": t.device,
        "precision": t.precision,
        "threads": t.threads,
    }
    return RunConfig(**{**study_fields, **params})


def trial_run_config(study: optuna.Study, number: int | None = None) -> RunConfig:
    """The RunConfig trial ``number`` (default: the best) of ``study`` trained with."""
    from search.spec.study_file import parse_study

    trial = keys.require_completed(study) if number is None else _trial(study, number)
    saved = keys.study_config(study)
    if saved is None:
        raise ValueError(f"study '{study.study_name}' was not made by collatz-hpo (no study config)")
    cfg = parse_study(saved, source=f"study '{study.study_name}'")
    params, final = keys.trial_params(trial), keys.final_seconds(trial)
    if final is not None:
        return final_run_config(cfg, params, trial.number, final, keys.final_init_from(trial))
    return run_config_for(cfg, params, trial.number)


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            if not keys.trial_params(t):
                raise ValueError(f"trial {number} of study '{study.study_name}' has no params yet")
            return t
    raise ValueError(f"study '{study.study_name}' has no trial {number}")


def final_run_config(
    cfg: StudyConfig,
    params: dict[str, Any],
    trial_number: int,
    seconds: float,
    init_from: str | None = None,
) -> RunConfig:
    """The final run's config: a trial's, trained for ``seconds`` with ``[final]``'s threads and
    epoch bound, no early stopping (its schedule is planned over that budget), from the
    checkpoint ``init_from`` when ``[final] init`` chose one."""
    assert cfg.final is not None
    return dataclasses.replace(
        run_config_for(cfg, params, trial_number),
        time_budget=seconds,
        threads=cfg.final.threads,
        epochs=cfg.final.epochs,
        early_stopping_patience=None,
        init_from=init_from,
    )


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


class TrialCallback(Callback):
    """Per epoch: metrics to MLflow (step = epoch), the pruning signal to Optuna, prune if told,
    a progress line.

    The pruner sees ``study.prune_on`` (default: the objective metric), negated when its direction
    differs from the study's, at step = epoch or samples seen (``study.pruner.unit``).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        tracker: StudyTracker,
        run_id: str,
        cfg: StudyConfig,
        val: CollatzDataset,
        log: Log,
        epochs: int,
        prune: bool = True,
    ) -> None:
        self.trial, self.tracker, self.run_id = trial, tracker, run_id
        self.metric, self.val, self.epochs, self.log = cfg.study.metric, val, epochs, log
        self.signal = cfg.study.prune_on or cfg.study.metric
        self.sign = -1.0 if (self.signal in MINIMIZED_METRICS) != (cfg.study.direction == "minimize") else 1.0
        self.by_samples = cfg.study.pruner.unit == "samples"
        self.prune = prune
        self.compute_seconds = 0.0  # inside training and validation, for the overhead benchmark
        self.train_steps = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.compute_seconds += metrics.get("epoch_time", 0.0) + metrics.get("val_time", 0.0)
        self.train_steps = trainer.global_step
        logged = {k: v for k, v in metrics.items() if k != "epoch"}
        if trainer.last_val_correct is not None:
            rates = per_class_rates(trainer.last_val_correct.cpu().numpy(), self.val.k, self.val.k_prime)
            logged.update(class_metrics(VAL_EXACT_MATCH, rates))
        self.tracker.log_metrics(self.run_id, logged, step=epoch)
        value = metrics[self.metric]
        step = trainer.samples_seen if self.by_samples else epoch
        self.trial.report(self.sign * metrics[self.signal], step)
        text = (
            f"trial {self.trial.number} epoch {epoch}/{self.epochs} {self.metric} {value:.4f} "
            f"({metrics.get('samples_per_sec', 0):,.0f} samples/s)"
        )
        event = TrialEvent("epoch", self.trial.number, text, epoch=epoch, epochs=self.epochs)
        report(self.log, dataclasses.replace(event, metric=self.metric, value=value))
        if self.prune and self.trial.should_prune():  # a final run is not compared, not pruned
            shown = f"{self.signal} {metrics[self.signal]:.4f}"
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({shown})")


def _write_predictions(path: Path, test: CollatzDataset, predictions: Any, base: int) -> None:
    """CSV of n, true κ, predicted κ (empty when undecodable), right or not: the study's final word."""
    decoded = MultiBaseEncoder(base).decode_batch(predictions)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["n", "kappa", "predicted", "correct", "k", "k_prime"])
        for n, kappa, pred, k, kp in zip(
            test.values.tolist(),
            test.kappa.tolist(),
            decoded,
            test.k.tolist(),
            test.k_prime.tolist(),
            strict=True,
        ):
            writer.writerow([n, kappa, "" if pred is None else pred, int(pred == int(kappa)), k, kp])


DataCache = dict[int, tuple[CollatzDataset, CollatzDataset, CollatzDataset]]


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    cfg: StudyConfig,
    tracker: StudyTracker,
    log: Log,
    data_cache: DataCache,
    scratch: str | Path | None = None,
    tags: dict[str, str] | None = None,
) -> TrialOutcome:
    """Run one asked trial to its end and record it in MLflow; the caller tells Optuna."""
    params, run_cfg, tags, final = _sample(trial, cfg, tags)
    config = {"study": cfg.study.name, "trial": trial.number, "params": params, "run": run_cfg.to_dict()}
    mlflow_params = {**run_cfg.to_dict(), "trial_number": trial.number}
    try:
        run_id = tracker.start_trial_run(trial.number, keys.parent_run_id(study), mlflow_params, config, tags)
    except Exception as exc:  # tracking gone past its outage window, artifact store full, ...
        return _not_started(trial, log, exc)
    keys.set_run_id(trial, run_id)
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    report(log, TrialEvent("start", trial.number, f"trial {trial.number} started: {shown}", shown))
    monitor = system_metrics(run_id, tracker.tracking_uri, cfg.training.system_metrics)
    with tempfile.TemporaryDirectory(prefix=f"trial-{trial.number}-", dir=scratch) as tmp, monitor:
        ckpt_dir = Path(tmp, "checkpoints")
        cb: TrialCallback | None = None
        try:
            tracker.log_inputs(run_id, trial_inputs(run_cfg))
            if run_cfg.base not in data_cache:
                data_cache[run_cfg.base] = build_data(run_cfg)
            data = data_cache[run_cfg.base]
            cb = TrialCallback(trial, tracker, run_id, cfg, data[1], log, run_cfg.epochs, prune=final is None)
            local_cfg = fetch_init(run_cfg, tracker.client, Path(tmp, "init"))
            result = execute(local_cfg, ckpt_dir, callbacks=[cb], log=None, data=data)
            cb.compute_seconds += result.eval_seconds
            value = _best(result.history[cfg.study.metric], cfg.study.direction == "maximize")
            test = flatten_test_metrics(result.test)
            tracker.log_metrics(run_id, {**test, "best_epoch": result.best_epoch}, step=result.best_epoch)
            preds = Path(tmp, "test_predictions.csv")
            _write_predictions(preds, data[2], result.test["predictions"], run_cfg.base)
            tracker.log_artifacts(run_id, [preds], "")
            keys.record_result(trial, result.test["exact_match"], result.stop_reason)
            outcome = TrialOutcome(TrialState.COMPLETE, value, result.stop_reason)
        except optuna.TrialPruned as exc:
            outcome = TrialOutcome(TrialState.PRUNED, None, str(exc))
        except KeyboardInterrupt:
            ignore_signals()  # a second signal must not cut the cleanup
            # The interrupt may have cut a storage call: what fails here, the worker's
            # record_interrupted redoes (Optuna state, reason and a run left RUNNING).
            with contextlib.suppress(Exception), tracker.client.impatient():
                _close(trial, tracker, run_id, ckpt_dir, TrialOutcome(TrialState.FAIL, None, "interrupted"))
            raise
        except Exception as exc:  # a failed trial is recorded and the study goes on
            reason = f"{type(exc).__name__}: {exc}"
            log(f"trial {trial.number} failed: {mask(reason)}")
            log(mask("".join(traceback.format_exception(exc, limit=-3))).rstrip())
            outcome = TrialOutcome(TrialState.FAIL, None, reason)
        if cb is not None:
            outcome.compute_seconds, outcome.train_steps = cb.compute_seconds, cb.train_steps
        keys.record_cost(trial, outcome.compute_seconds, outcome.train_steps)
        outcome = _close(trial, tracker, run_id, ckpt_dir, outcome)
    return outcome


def _sample(
    trial: optuna.Trial, cfg: StudyConfig, tags: dict[str, str] | None
) -> tuple[dict[str, Any], RunConfig, dict[str, str], float | None]:
    """The trial's params (recorded), its RunConfig, its run tags and its final-run budget, if any."""
    params = suggest(trial, cfg.search)
    keys.set_trial_params(trial, params)
    final = keys.final_seconds(trial)
    if final is None:
        return params, run_config_for(cfg, params, trial.number), dict(tags or {}), None
    tags = {**(tags or {}), FINAL_TAG: str(trial.user_attrs.get(keys.FINAL_OF_ATTR))}
    init_from = keys.final_init_from(trial)
    return params, final_run_config(cfg, params, trial.number, final, init_from), tags, final


def _not_started(trial: optuna.Trial, log: Log, exc: Exception) -> TrialOutcome:
    """A trial whose MLflow run could not be made: FAIL with the reason, the study goes on."""
    reason = mask(f"{type(exc).__name__}: {exc}")
    log(f"trial {trial.number} failed: {reason}")
    keys.set_fail_reason(trial, reason)
    return TrialOutcome(TrialState.FAIL, None, reason)


def _close(
    trial: optuna.Trial, tracker: StudyTracker, run_id: str, ckpt_dir: Path, out: TrialOutcome
) -> TrialOutcome:
    """Upload the checkpoints and close the run. A failure here (a full artifact store, a server
    gone past its outage window) FAILs the trial; a run left open is closed FAILED by recovery."""
    try:
        if tracker.client.reachable and ckpt_dir.is_dir():
            tracker.log_artifacts(run_id, sorted(ckpt_dir.glob("*.pt")), CHECKPOINT_ARTIFACTS)
    except Exception as exc:
        out = _failed(out, f"checkpoint upload failed: {type(exc).__name__}: {exc}")
    try:
        if not tracker.client.reachable:  # it waited a whole outage window already in this trial
            raise ConnectionError("tracking server unreachable")
        if out.reason and out.state == TrialState.FAIL:
            keys.set_fail_reason(trial, mask(out.reason))
        tracker.end_trial_run(run_id, out.state.name, out.reason if out.state == TrialState.FAIL else None)
    except Exception as exc:
        out = _failed(out, f"MLflow run not closed: {type(exc).__name__}: {exc}")
        keys.set_fail_reason(trial, mask(out.reason or ""))
    return out


def _failed(out: TrialOutcome, why: str) -> TrialOutcome:
    """``out`` turned into a FAIL (its own failure reason first, if it had one)."""
    reason = f"{out.reason}; {why}" if out.state == TrialState.FAIL and out.reason else why
    return dataclasses.replace(out, state=TrialState.FAIL, value=None, reason=reason)


def _best(values: list[float], maximize: bool) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        raise FloatingPointError("no finite value of the study metric")
    return max(finite) if maximize else min(finite)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
