"""MLflow tracking: one object owns the client; a study is one experiment, one parent run and a
child run per trial.

Our own small layer over ``MlflowClient`` (optuna-integration's ``MLflowCallback`` is deprecated
and makes no parent run). ``Tracker`` holds the client and the experiment and does run-level
work; ``StudyTracker`` adds the study's conventions (run names, roles, the parent run, status
from the Optuna state); the guide-shaped ``ExperimentTracker`` is one run on a ``Tracker``.
Trackers write MLflow only: Optuna facts come in as arguments, run ids go back as results.
Nothing here logs a storage URL unmasked.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from search import keys
from search.locations import mask
from search.retry import DEFAULT_WINDOW
from search.spec.runconfig import STORE_URI, RunConfig
from search.tracking import names
from search.tracking.client import ResilientClient
from search.tracking.datasets import study_inputs

# Kept importable from here (``search.trial`` imports them with the trackers); defined in ``names``.
from search.tracking.names import CHECKPOINT_ARTIFACTS, class_metrics, flatten_test_metrics

if TYPE_CHECKING:
    import pandas as pd
    from optuna.trial import FrozenTrial

    from core import Callback

__all__ = [
    "STATUS_OF_STATE",
    "ExperimentTracker",
    "StudyTracker",
    "Tracker",
    "CHECKPOINT_ARTIFACTS",
    "checkpoint_uri",
    "class_metrics",
    "fetch_init",
    "flatten_test_metrics",
]

STATUS_OF_STATE = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_BATCH = 900  # MLflow caps a log_batch at 1000 metrics


def checkpoint_uri(run_id: str, name: str = "best.pt") -> str:
    """Where a trial run's checkpoint lies in the store (``run_trial`` uploads them there)."""
    return f"{STORE_URI}{run_id}/{names.checkpoint_path(name)}"


def fetch_init(cfg: RunConfig, tracking: str | ResilientClient, dst: str | Path) -> RunConfig:
    """``cfg`` with its ``runs:/RUN_ID/PATH`` ``init_from`` copied from the store into ``dst``
    (``cfg`` itself when it starts from a local file or from scratch). The run's recorded params
    keep the URI; the copy is what training reads. ``tracking``: the client (a study's, riding out
    its window) or the tracking URI."""
    if not cfg.init_in_store:
        return cfg
    client = tracking if isinstance(tracking, ResilientClient) else ResilientClient(tracking)
    return cfg.replace(init_from=client.download(cfg.init_from, dst))


def _now() -> int:
    return int(time.time() * 1000)


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


class Tracker:
    """The MLflow client of one experiment (created if absent, restored if deleted).

    Its client rides out tracking-server outages of ``outage_window`` seconds (``tracking_client``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: str | None = None,
        experiment_tags: Mapping[str, str] | None = None,
        outage_window: float = DEFAULT_WINDOW,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = ResilientClient(tracking_uri, outage_window)
        self.experiment_id = self._ensure_experiment(experiment, artifact_root, experiment_tags)

    def _ensure_experiment(self, name: str, artifact_root: str | None, tags: Mapping[str, str] | None) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = Path(artifact_root, name).resolve().as_uri() if artifact_root is not None else None
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=dict(tags or {}))
        except MlflowException:  # another worker created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def start_run(
        self, name: str | None, tags: Mapping[str, str], params: Mapping[str, Any] | None = None
    ) -> str:
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=dict(tags)).info.run_id
        if params:
            try:
                self.log_params(run_id, params)
            except Exception as exc:
                self._abandon(run_id, exc)
                raise
        return run_id

    def _abandon(self, run_id: str, exc: Exception) -> None:
        """Close a run whose start failed half-way (FAILED, with the reason), if the server answers."""
        if self.client.reachable:
            with contextlib.suppress(Exception):
                self.set_tags(run_id, {names.FAIL_REASON_TAG: f"{type(exc).__name__}: {exc}"})
                self.end_run(run_id, "FAILED")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, params=_clean_params(params))

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
        """Finite numbers only (NaN and non-numbers are skipped), in batches MLflow accepts."""
        now = _now()
        self.log_points(run_id, [Metric(k, v, now, step) for k, v in _finite(metrics).items()])

    def log_points(self, run_id: str, points: Sequence[Metric]) -> None:
        """Metric points as they are (their own timestamps and steps), in batches MLflow accepts."""
        for i in range(0, len(points), _BATCH):
            self.client.log_batch(run_id, metrics=list(points[i : i + _BATCH]))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, mask(str(v))[:5000]) for k, v in tags.items()])

    def log_artifacts(
        self, run_id: str, paths: Iterable[Path | str], artifact_path: str | None = None
    ) -> None:
        for path in paths:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path), artifact_path)

    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        """Dataset inputs (``search.tracking.datasets``): the UI's Dataset column and ``run.inputs``."""
        self.client.log_inputs(run_id, datasets=list(inputs))

    def log_json(self, run_id: str, data: Mapping[str, Any], name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, name)
            path.write_text(mask(json.dumps(data, indent=2, default=str)))
            self.client.log_artifact(run_id, str(path))

    def status(self, run_id: str) -> str | None:
        """The run's status (RUNNING, FINISHED, ...), or None when the store has no such run."""
        try:
            return self.client.get_run(run_id).info.status
        except MlflowException:
            return None

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


class StudyTracker(Tracker):
    """One study's runs: the experiment named after it, its parent run and a run per trial.

    Run status follows the Optuna trial state: COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED.
    """

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        artifact_root: str | None = None,
        outage_window: float = DEFAULT_WINDOW,
    ) -> None:
        self.study_name = study_name
        tags = {names.STUDY_TAG: study_name}
        super().__init__(tracking_uri, study_name, artifact_root, tags, outage_window)
        self._closed: set[str] = set()  # FAIL trials' runs known to be closed

    # --- the study's parent run
    def ensure_parent_run(
        self, run_id: str | None, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> str:
        """The parent run ``run_id`` (RUNNING again), or a new one when there is none."""
        if run_id is not None:
            status = self.status(run_id)
            if status is not None:  # None: the tracking store was reset, make a new parent run
                if status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                return run_id
        tags = {names.ROLE_TAG: names.STUDY_ROLE, names.STUDY_TAG: self.study_name}
        run_id = self.start_run(f"study-{self.study_name}", tags, params)
        self.log_json(run_id, config, "study_config.json")
        self.log_inputs(run_id, study_inputs(config))
        return run_id

    def update_parent(
        self,
        run_id: str,
        counts: Mapping[str, int],
        best: FrozenTrial | None,
        table: pd.DataFrame,
        figures: names.BestFigures | None = None,
    ) -> None:
        """State counts and the best trial (tags + metrics: its value, and its ``figures`` with
        their intervals) and the trials table (CSV) on the parent."""
        tags: dict[str, Any] = {}
        if best is None:
            summary = names.ParentSummary(counts)
        else:
            summary = names.ParentSummary(counts, best.number, keys.run_id(best), keys.trial_params(best))
            finished = counts["complete"] + counts["pruned"] + counts["fail"]
            values = {names.BEST_VALUE_METRIC: float(best.value), **(figures.to_metrics() if figures else {})}
            now = _now()
            self.client.log_batch(run_id, metrics=[Metric(k, v, now, finished) for k, v in values.items()])
            tags = figures.to_tags() if figures else {}
        self.set_tags(run_id, {**summary.to_tags(), **tags})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "trials.csv")
            table.to_csv(path, index=False)
            self.client.log_artifact(run_id, str(path))

    # --- one trial's child run
    def start_trial_run(
        self,
        number: int,
        parent: str | None,
        params: Mapping[str, Any],
        config: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        all_tags = {
            names.STUDY_TAG: self.study_name,
            names.TRIAL_NUMBER_TAG: str(number),
            names.TRIAL_STATE_TAG: "RUNNING",
            names.ROLE_TAG: names.TRIAL_ROLE,
            **(tags or {}),
        }
        if parent:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent
        run_id = self.start_run(f"trial-{number}", all_tags, params)
        try:
            self.log_json(run_id, config, names.RUN_CONFIG_ARTIFACT)
        except Exception as exc:  # a full artifact store: the trial FAILs, its run must not stay RUNNING
            self._abandon(run_id, exc)
            raise
        return run_id

    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        """Close the child run with the status of the trial's Optuna ``state``."""
        tags = {names.TRIAL_STATE_TAG: state}
        if reason:
            tags[names.FAIL_REASON_TAG] = reason
        self.set_tags(run_id, tags)
        self.end_run(run_id, STATUS_OF_STATE.get(state, "FAILED"))

    def close_failed_run(self, run_id: str, reason: str) -> bool:
        """Close a FAIL trial's run if its dead worker left it RUNNING (each run looked up once)."""
        if run_id in self._closed:
            return False
        if self.status(run_id) != "RUNNING":
            self._closed.add(run_id)
            return False
        self.end_trial_run(run_id, "FAIL", reason)
        self._closed.add(run_id)  # only now: a server that was down is asked again next time
        return True


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
        from search.locations import prepare, resolve_locations

        loc = resolve_locations(None, tracking_uri)
        prepare(loc)
        self.tracker = Tracker(loc.tracking_uri, project_name, loc.artifact_root)
        self.run_id = self.tracker.start_run(experiment_name, tags or {})
        self.finished = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.tracker.log_params(
            self.run_id, {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step or 0)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.tracker.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if not self.finished:
            self.tracker.end_run(self.run_id, status)
            self.finished = True

    def callback(self) -> Callback:
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
