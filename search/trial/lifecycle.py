"""One trial's life: start (sample, open its MLflow run) → train → record, returning one outcome.

``_settle`` is the one place where what stopped a trial becomes its state: pruned, failed,
interrupted (Ctrl-C or SIGTERM). The worker that asked for the trial tells Optuna that outcome.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from core import CollatzDataset, MultiBaseEncoder
from search import keys
from search.events import TrialEvent, report
from search.locations import mask
from search.signals import ignore_signals
from search.spec.runconfig import RunConfig
from search.spec.space import suggest
from search.tracking.datasets import trial_inputs
from search.tracking.names import (
    CUDA_VISIBLE_TAG,
    DEVICE_TAG,
    FINAL_TAG,
    REPLICATE_TAG,
    RETRY_OF_TAG,
    TEST_PREDICTIONS_ARTIFACT,
)
from search.tracking.runs import CHECKPOINT_ARTIFACTS, fetch_init, flatten_test_metrics
from search.tracking.system_metrics import system_metrics
from search.trial.body import TrialEnv, TrialOutcome, interrupted_outcome
from search.trial.callback import PruningCallback, ReportingCallback
from search.trial.checkpoints import CheckpointUploads
from search.trial.config import config_of
from search.trial.resume import resume
from search.trial.training import Splits, build_data, execute, resolve_device

__all__ = ["run_trial"]


@dataclass(frozen=True)
class Plan:
    """What one trial trains: its params, its RunConfig, its MLflow run's tags, its callback."""

    params: dict[str, Any]
    run_cfg: RunConfig
    tags: dict[str, str]
    callback: type[ReportingCallback]  # a search trial's prunes; a replicate's, a final run's do not


def run_trial(trial: optuna.Trial, env: TrialEnv, tags: Mapping[str, str] | None = None) -> TrialOutcome:
    """Run one asked trial to its end and record it in MLflow; the caller tells Optuna."""
    plan = _plan(trial, env, tags or {})
    # the stack holds the run's system-metrics sampling: from its start until it is recorded
    with tempfile.TemporaryDirectory(prefix=f"trial-{trial.number}-") as tmp, contextlib.ExitStack() as stack:
        run = TrialRun(trial, env, plan, Path(tmp), stack)
        return run.record(_settle(run))


def _plan(trial: optuna.Trial, env: TrialEnv, tags: Mapping[str, str]) -> Plan:
    """Sample the trial's params (recorded on it) and read what it trains: a search trial, or the
    seed replicate or final run its user attributes mark it as."""
    params = suggest(trial, env.cfg.search)
    keys.set_trial_params(trial, params)
    run_cfg = config_of(env.cfg, trial, params)
    replicate = keys.replicate_of(trial)
    if replicate is not None:  # a seed replicate ([confirm]): the search's budget, never pruned
        return Plan(params, run_cfg, {**tags, REPLICATE_TAG: str(replicate)}, ReportingCallback)
    if keys.final_seconds(trial) is None:
        return Plan(params, run_cfg, dict(tags), PruningCallback)
    final_tags = {**tags, FINAL_TAG: str(trial.user_attrs.get(keys.FINAL_OF_ATTR))}
    return Plan(params, run_cfg, final_tags, ReportingCallback)


def _settle(run: TrialRun) -> TrialOutcome:
    """Train and say how it ended: the one place where an exception becomes the trial's state."""
    try:
        return run.train()
    except optuna.TrialPruned as exc:
        return TrialOutcome(TrialState.PRUNED, None, str(exc))
    except KeyboardInterrupt:
        ignore_signals()  # a second signal must not cut the recording (here and in the worker)
        return interrupted_outcome()
    except Exception as exc:  # a failed trial is recorded and the study goes on
        return run.failed(exc)


class TrialRun:
    """One trial's MLflow run and scratch folder, from its start to its record."""

    def __init__(
        self, trial: optuna.Trial, env: TrialEnv, plan: Plan, tmp: Path, stack: contextlib.ExitStack
    ) -> None:
        self.trial, self.env, self.plan, self.tmp, self.stack = trial, env, plan, tmp, stack
        self.run_id: str | None = None  # set once the MLflow run is started
        self.callback: ReportingCallback | None = None
        self.uploads: CheckpointUploads | None = None
        self.checkpoints = tmp / "checkpoints"

    def start(self) -> str:
        """Open the trial's MLflow run (its id recorded on the trial) and announce the trial."""
        trial, env, plan = self.trial, self.env, self.plan
        config = {
            "study": env.cfg.study.name,
            "trial": trial.number,
            "params": plan.params,
            "run": plan.run_cfg.to_dict(),
        }
        mlflow_params = {**plan.run_cfg.to_dict(), "trial_number": trial.number}
        parent = keys.parent_run_id(env.study)
        tags = {**plan.tags, **device_tags(plan.run_cfg)}
        self.run_id = run_id = env.tracker.start_trial_run(trial.number, parent, mlflow_params, config, tags)
        keys.set_run_id(trial, run_id)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in plan.params.items())
        report(env.log, TrialEvent("start", trial.number, f"trial {trial.number} started: {shown}", shown))
        monitor = system_metrics(run_id, env.tracker.tracking_uri, env.cfg.training.system_metrics)
        self.stack.enter_context(monitor)  # sampling until the run is recorded
        return run_id

    def train(self) -> TrialOutcome:
        """Start the run, train (a retry: on from its failed trial's checkpoint), log the test
        metrics and predictions: a COMPLETE outcome."""
        run_id = self.start()
        trial, env, run_cfg, tracker = self.trial, self.env, self.plan.run_cfg, self.env.tracker
        tracker.log_inputs(run_id, trial_inputs(run_cfg))
        data = _splits(env, run_cfg)
        self.callback = cb = self.plan.callback(trial, env, run_id, data.val, run_cfg.epochs)
        self.uploads = CheckpointUploads(trial, env, run_id, self.checkpoints, run_cfg.epochs, cb.step_of)
        resume_from = resume(trial, env, run_id, self.checkpoints, self.plan.tags.get(RETRY_OF_TAG))
        local_cfg = fetch_init(run_cfg, tracker.client, self.tmp / "init")
        callbacks = [cb, self.uploads]
        result = execute(local_cfg, self.checkpoints, callbacks, log=None, data=data, resume_from=resume_from)
        cb.compute_seconds += result.eval_seconds
        value = _best(result.history[env.cfg.study.metric], keys.maximized(env.study))
        test = flatten_test_metrics(result.test)
        tracker.log_metrics(run_id, {**test, "best_epoch": result.best_epoch}, step=result.best_epoch)
        preds = self.tmp / TEST_PREDICTIONS_ARTIFACT
        _write_predictions(preds, data.test, result.test["predictions"], run_cfg.base)
        tracker.log_artifacts(run_id, [preds], "")
        keys.record_result(trial, result.test["exact_match"], result.stop_reason)
        return TrialOutcome(TrialState.COMPLETE, value, result.stop_reason)

    def failed(self, exc: Exception) -> TrialOutcome:
        """FAIL with the reason, told in the log (with where it broke, once the run started:
        a run that could not start says it all in one line)."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.run_id is None:  # tracking gone past its outage window, artifact store full, ...
            reason = mask(reason)
            self.env.log(f"trial {self.trial.number} failed: {reason}")
            return TrialOutcome(TrialState.FAIL, None, reason)
        self.env.log(f"trial {self.trial.number} failed: {mask(reason)}")
        self.env.log(mask("".join(traceback.format_exception(exc, limit=-3))).rstrip())
        return TrialOutcome(TrialState.FAIL, None, reason)

    def record(self, outcome: TrialOutcome) -> TrialOutcome:
        """The outcome's cost on the trial, its checkpoints and state on the MLflow run (if one
        started). After an interrupt, as much of it as a short wait allows: the worker closes
        a run left RUNNING."""
        if self.run_id is None:
            return outcome
        if self.callback is not None:
            cb = self.callback
            outcome.compute_seconds, outcome.train_steps = cb.compute_seconds, cb.train_steps
            outcome.train_samples = cb.train_samples
        if outcome.interrupted:
            with contextlib.suppress(Exception):  # what it computed: counted once, not again by a retry
                self.record_cost(outcome)
            with contextlib.suppress(Exception), self.env.tracker.client.impatient():
                outcome = self.close(outcome)
            return outcome
        self.record_cost(outcome)
        return self.close(outcome)

    def record_cost(self, outcome: TrialOutcome) -> None:
        keys.record_cost(self.trial, outcome.compute_seconds, outcome.train_steps, outcome.train_samples)

    def close(self, out: TrialOutcome) -> TrialOutcome:
        """Upload the checkpoints and close the run. A failure here (a full artifact store, a server
        gone past its outage window) FAILs the trial; a run left open is closed FAILED by recovery."""
        tracker, run_id = self.env.tracker, self.run_id
        assert run_id is not None
        try:
            if tracker.client.reachable and self.checkpoints.is_dir():
                tracker.log_artifacts(run_id, sorted(self.checkpoints.glob("*.pt")), CHECKPOINT_ARTIFACTS)
                if out.state == TrialState.FAIL and self.uploads is not None:
                    self.uploads.record()  # where a retry resumes (if it is retried)
        except Exception as exc:
            out = _failed(out, f"checkpoint upload failed: {type(exc).__name__}: {exc}")
        try:
            if not tracker.client.reachable:  # it waited a whole outage window already in this trial
                raise ConnectionError("tracking server unreachable")
            tracker.end_trial_run(
                run_id, out.state.name, out.reason if out.state == TrialState.FAIL else None
            )
        except Exception as exc:
            out = _failed(out, f"MLflow run not closed: {type(exc).__name__}: {exc}")
        return out


def device_tags(run_cfg: RunConfig) -> dict[str, str]:
    """The device a trial trains on, and its worker's CUDA_VISIBLE_DEVICES (``launch --devices``)."""
    try:
        device = resolve_device(run_cfg.device)
    except RuntimeError:  # cuda asked for, none visible: training says so
        device = torch.device(run_cfg.device)
    shown = str(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if device.index is None else device.index
        shown = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    tags = {DEVICE_TAG: shown}
    if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        tags[CUDA_VISIBLE_TAG] = visible
    return tags


def _splits(env: TrialEnv, run_cfg: RunConfig) -> Splits:
    """The datasets of the run's base, built once per worker."""
    if run_cfg.base not in env.data_cache:
        env.data_cache[run_cfg.base] = build_data(run_cfg)
    return env.data_cache[run_cfg.base]


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
