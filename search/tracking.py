"""MLflow tracking of a study: one experiment, one parent run, one child run per trial.

Our own small layer over ``MlflowClient`` (optuna-integration's ``MLflowCallback`` is
deprecated and makes no parent run). Run status follows the Optuna trial state:
COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED. Nothing here logs a storage URL unmasked.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from search.storage import mask

__all__ = ["STATUS_OF_STATE", "ExperimentTracker", "StudyTracker", "class_metrics", "flatten_test_metrics"]

STATUS_OF_STATE = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
ROLE_TAG = "collatz_hpo.role"
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
_BATCH = 900  # MLflow caps a log_batch at 1000 metrics


def _clean_params(params: Mapping[str, Any]) -> list[Param]:
    return [Param(str(k), mask(str(v))[:6000]) for k, v in params.items()]


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def class_metrics(prefix: str, by_class: Mapping[tuple[int, int], Mapping[str, float]]) -> dict[str, float]:
    """``{prefix}_k{k}_kp{k′}`` → exact match of each (k, k′) class."""
    return {f"{prefix}_k{k}_kp{kp}": v["exact_match"] for (k, kp), v in by_class.items()}


def flatten_test_metrics(test: Mapping[str, Any]) -> dict[str, float]:
    """Scalar test metrics plus exact match per k, per k′ and per (k, k′) class."""
    keys = (
        "exact_match",
        "token_accuracy",
        "undecodable_rate",
        "wrong_loop_length_share",
        "wrong_k_share",
        "wrong_k_prime_share",
        "other_error_share",
    )
    out = {f"test_{k}": float(test[k]) for k in keys if k in test}
    out.update({f"test_exact_match_k{k}": v["exact_match"] for k, v in test.get("by_k", {}).items()})
    out.update({f"test_exact_match_kp{k}": v["exact_match"] for k, v in test.get("by_k_prime", {}).items()})
    out.update(class_metrics("test_exact_match", test.get("by_class", {})))
    return out


class StudyTracker:
    """Writes one study's runs to an MLflow tracking server or embedded store."""

    def __init__(self, tracking_uri: str, study_name: str, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._ensure_experiment(artifact_root)
        self._checked: set[int] = set()  # FAIL trials whose run is known to be closed

    def _ensure_experiment(self, artifact_root: str | None) -> str:
        exp = self.client.get_experiment_by_name(self.study_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if artifact_root is not None:
            location = Path(artifact_root, self.study_name).resolve().as_uri()
        try:
            return self.client.create_experiment(
                self.study_name, artifact_location=location, tags={"optuna.study_name": self.study_name}
            )
        except MlflowException:  # another worker created it first
            exp = self.client.get_experiment_by_name(self.study_name)
            if exp is None:
                raise
            return exp.experiment_id

    # --- the study's parent run ---------------------------------------------------------------
    def ensure_parent_run(self, study: Any, params: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        """The study's parent run (created once; its id is kept on the Optuna study)."""
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                if run.info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                return run_id
            except MlflowException:
                pass  # the tracking store was reset: make a new parent run
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.study_name}",
            tags={ROLE_TAG: "study", "optuna.study_name": self.study_name},
        )
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=_clean_params(params))
        self._log_json(run_id, config, "study_config.json")
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id

    def finish_parent_run(self, study: Any, status: str = "FINISHED") -> None:
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is not None:
            self.client.set_terminated(run_id, status=status)

    def update_parent(self, study: Any) -> None:
        """Best trial (tags + metric) and the trials table (CSV) on the parent run."""
        import optuna

        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id is None:
            return
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        tags = {
            "n_trials_complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
            "n_trials_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "n_trials_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
        }
        metrics: dict[str, float] = {}
        try:
            best = study.best_trial
        except ValueError:
            best = None
        if best is not None:
            tags.update({"best_trial": best.number, "best_run_id": best.user_attrs.get(RUN_ATTR, "")})
            tags.update({f"best.{k}": v for k, v in best.user_attrs.get("params", best.params).items()})
            metrics["best_value"] = float(best.value)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, int(time.time() * 1000), len(finished)) for k, v in metrics.items()],
            tags=[RunTag(k, mask(str(v))) for k, v in tags.items()],
        )
        frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "trials.csv")
            frame.to_csv(path, index=False)
            self.client.log_artifact(run_id, str(path))

    # --- one trial's child run ------------------------------------------------------------------
    def start_trial_run(
        self,
        study: Any,
        trial: Any,
        params: Mapping[str, Any],
        config: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        parent = study.user_attrs.get(PARENT_ATTR)
        tags = {
            "optuna.study_name": self.study_name,
            "optuna.trial_number": str(trial.number),
            "optuna.trial_state": "RUNNING",
            ROLE_TAG: "trial",
            **(tags or {}),
        }
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.number}", tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=_clean_params(params))
        self._log_json(run_id, config, "config.json")
        trial.set_user_attr(RUN_ATTR, run_id)
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in _finite(metrics).items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + _BATCH])

    def log_artifacts(self, run_id: str, paths: Iterable[Path], artifact_path: str) -> None:
        for path in paths:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path), artifact_path)

    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        """Close the child run with the status of the trial's Optuna ``state``."""
        tags = [RunTag("optuna.trial_state", state)]
        if reason:
            tags.append(RunTag("fail_reason", mask(reason)[:5000]))
        self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, status=STATUS_OF_STATE.get(state, "FAILED"))

    def close_orphans(self, study: Any) -> int:
        """Runs still RUNNING whose trial has ended (a dead worker's): close them. Returns count."""
        closed = 0
        for trial in study.get_trials(deepcopy=False):
            run_id = trial.user_attrs.get(RUN_ATTR)
            # COMPLETE/PRUNED runs are closed by their worker before it tells Optuna; only a
            # FAIL can hide a dead worker's run. Each is looked up once per tracker.
            if run_id is None or trial.state.name != "FAIL" or trial.number in self._checked:
                continue
            self._checked.add(trial.number)
            try:
                run = self.client.get_run(run_id)
            except MlflowException:
                continue
            if run.info.status == "RUNNING":
                reason = trial.user_attrs.get("fail_reason", "worker died (no heartbeat or process gone)")
                self.end_trial_run(run_id, trial.state.name, reason if trial.state.name == "FAIL" else None)
                closed += 1
        return closed

    def _log_json(self, run_id: str, data: Mapping[str, Any], name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, name)
            path.write_text(mask(json.dumps(data, indent=2, default=str)))
            self.client.log_artifact(run_id, str(path))


class ExperimentTracker:
    """The guide's tracker API on MLflow: one run per tracker, always ended.

    ``ExperimentTracker(backend="mlflow", project_name=..., experiment_name=...)`` logs to the
    MLflow experiment ``project_name`` in a run named ``experiment_name``; the default store
    is the embedded one under ./mlruns. Use it as a context manager, or call ``finish()``.
    ``callback()`` gives a core ``Callback`` that logs every epoch's metrics.
    """

    def __init__(
        self,
        backend: str = "mlflow",
        project_name: str = "collatz-transformer",
        experiment_name: str | None = None,
        tracking_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if backend != "mlflow":
            raise ValueError(
                f"backend {backend!r} is not supported: collatz-hpo tracks with MLflow; use backend='mlflow'"
            )
        from search.storage import prepare, resolve_locations

        loc = resolve_locations(None, tracking_uri)
        prepare(loc)
        self.client = MlflowClient(tracking_uri=loc.tracking_uri)
        exp = self.client.get_experiment_by_name(project_name)
        if exp is None:
            location = Path(loc.artifact_root, project_name).as_uri() if loc.artifact_root else None
            experiment_id = self.client.create_experiment(project_name, artifact_location=location)
        else:
            experiment_id = exp.experiment_id
        run = self.client.create_run(experiment_id, run_name=experiment_name, tags=dict(tags or {}))
        self.run_id = run.info.run_id
        self.finished = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
        self.client.log_batch(self.run_id, params=_clean_params(flat))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in _finite(metrics).items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if not self.finished:
            self.client.set_terminated(self.run_id, status=status)
            self.finished = True

    def callback(self) -> Any:
        from core import Callback

        tracker = self

        class _EpochMetrics(Callback):
            def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
                tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

        return _EpochMetrics()

    def __enter__(self) -> ExperimentTracker:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish("FINISHED" if exc_type is None else "FAILED")

    def __del__(self) -> None:  # a forgotten finish() must not leave the run RUNNING
        try:
            if not self.finished:
                self.finish("FINISHED")
        except Exception:
            pass
