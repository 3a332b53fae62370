"""A study's life: open it (storage, Optuna study, MLflow tracker, parent run), check that it
still matches its study file, recover what dead workers left behind, summarise it.

``open_study`` is the one opening shared by ``launch``, ``join`` and every worker process.
``launch`` and ``join`` then make sure of the study's parent run; ``launch`` recovers first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search import keys
from search.errors import StudyError
from search.events import Log
from search.locations import Locations, first_line, mask, prepare
from search.study.storage import ResilientStorage, open_storage, study_lock
from search.tracking.names import objective_params

if TYPE_CHECKING:  # MLflow, pandas and the study-file models load where a study runs, not for `status`
    from search.spec.study_file import StudyConfig
    from search.tracking.runs import StudyTracker

__all__ = ["OpenStudy", "create_or_load", "load_existing_study", "open_study", "recover", "summarize"]

# Settings that may change between launches of one study without changing what it measures.
# (The final run and the warm start happen once; later launches may change them freely, and
# [confirm] only adds seed replicates, which `confirm --top/--seeds` may ask for at any time.)
_FREE_KEYS = {
    ("study", "n_trials"),
    ("study", "timeout"),
    ("study", "timeout_stops_trials"),
    ("study", "seed"),
    ("study", "warm_start"),
    ("study", "outage_window"),
    ("training", "system_metrics"),
    ("confirm",),
    ("training", "checkpoint_every"),
    ("final",),
}


@dataclass
class OpenStudy:
    """A study opened by one process: its storage, Optuna study and MLflow tracker."""

    cfg: StudyConfig
    locations: Locations
    storage: ResilientStorage
    study: optuna.Study
    tracker: StudyTracker

    @property
    def heartbeat_interval(self) -> int | None:
        return self.storage.get_heartbeat_interval()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The study lock: "count the trials, then ask for one" runs under it."""
        return study_lock(self.locations.storage, self.cfg.study.name, self.storage.engine)

    def counts(self) -> dict[str, int]:
        return keys.state_counts(self.study.get_trials(deepcopy=False))

    def search_counts(self) -> dict[str, int]:
        """The state counts of the search trials: those that count towards ``n_trials`` (final
        runs and seed replicates do not)."""
        return keys.state_counts(keys.search_trials(self.study.get_trials(deepcopy=False)))

    def update_parent(self) -> None:
        """State counts, best trial and trials table on the study's parent run."""
        from search.study.table import best_figures, trials_table

        run_id = keys.parent_run_id(self.study)
        if run_id is not None:
            best, table = keys.best_trial(self.study), trials_table(self.study)
            self.tracker.update_parent(run_id, self.counts(), best, table, best_figures(self.study))

    def ensure_parent_run(self) -> None:
        """Make sure the study's MLflow parent run exists and is RUNNING: under the study lock, so
        workers that open the study together make one."""
        with self.lock():
            run_id = self.tracker.ensure_parent_run(
                keys.parent_run_id(self.study), _study_params(self.cfg), self.cfg.to_dict()
            )
            if run_id != keys.parent_run_id(self.study):
                keys.set_parent_run_id(self.study, run_id)

    def finish_parent(self, status: str = "FINISHED") -> None:
        run_id = keys.parent_run_id(self.study)
        if run_id is not None:
            self.tracker.end_run(run_id, status)


def quiet_libraries() -> None:
    """Our progress lines are the output; Optuna's and MLflow's INFO chatter is not."""
    import logging
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # We run heartbeats and stale-trial handling ourselves around ask-and-tell, on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def open_study(cfg: StudyConfig, locations: Locations, worker_index: int = 0, log: Log = print) -> OpenStudy:
    """Open (creating if absent) the study of ``cfg`` under the study lock; ``log`` tells what was
    done (a grid or warm start enqueued). ``launch`` and ``join`` then make sure of the parent run
    (``OpenStudy.ensure_parent_run``); ``launch`` first recovers what dead workers left (``recover``)."""
    quiet_libraries()
    prepare(locations)
    storage = open_storage(locations.storage, cfg)
    with study_lock(locations.storage, cfg.study.name, storage.engine):
        study = create_or_load(cfg, storage, worker_index, log)
        return OpenStudy(cfg, locations, storage, study, _open_tracker(cfg, locations))


def open_to_run(cfg: StudyConfig, locations: Locations, log: Log = print) -> OpenStudy:
    """The study opened by a process that runs it to its end (``launch``, ``confirm``): what dead
    workers left RUNNING closed first, under the study lock, and the parent run made sure of."""
    opened = open_study(cfg, locations, 0, log=log)
    with opened.lock():
        recover(opened, log)
    opened.ensure_parent_run()
    return opened


def _open_tracker(cfg: StudyConfig, locations: Locations) -> StudyTracker:
    """The study's MLflow tracker; an unusable tracking URI is a one-line ``StudyError``."""
    from search.tracking.runs import StudyTracker

    try:
        return StudyTracker(
            locations.tracking_uri, cfg.study.name, locations.artifact_root, cfg.study.outage_window
        )
    except Exception as exc:
        raise StudyError(
            f"cannot use MLflow tracking URI {mask(locations.tracking_uri)}: {first_line(exc)}"
        ) from exc


def _diff(a: Any, b: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The first key path where two study-file dicts differ in what they measure (None: same)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if path + (key,) in _FREE_KEYS:
                continue
            found = _diff(a.get(key), b.get(key), path + (key,))
            if found is not None:
                return found
        return None
    return None if a == b else path


def create_or_load(
    cfg: StudyConfig, storage: optuna.storages.BaseStorage, worker_index: int = 0, log: Log = print
) -> optuna.Study:
    """The study of ``cfg`` (created if absent, with its grid or warm start enqueued); refuses one
    made from a different study file."""
    from search.study.samplers import enqueue_grid, enqueue_warm_start, make_pruner, make_sampler

    _check_warm_start_source(cfg, storage)
    study = optuna.create_study(
        study_name=cfg.study.name,
        storage=storage,
        direction=cfg.study.direction,
        sampler=make_sampler(cfg, worker_index),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    if study.direction.name.lower() != cfg.study.direction:
        raise StudyError(f"study '{cfg.study.name}' exists with direction {study.direction.name.lower()}")
    saved = keys.study_config(study)
    if saved is None:
        enqueue_grid(study, cfg)
        enqueue_warm_start(study, storage, cfg, log)
        study.set_user_attr(keys.CONFIG_ATTR, cfg.to_dict())
    else:
        key = _diff(_with_defaults(saved), cfg.to_dict())
        if key is not None:
            raise StudyError(
                f"study '{cfg.study.name}' already exists with a different {'.'.join(key)}; "
                "give the study a new name to change what it measures"
            )
    return study


def _check_warm_start_source(cfg: StudyConfig, storage: optuna.storages.BaseStorage) -> None:
    """A new study's warm start names a study of this storage (checked before anything is created)."""
    ws = cfg.study.warm_start
    if ws is None:
        return
    names = {s.study_name for s in storage.get_all_studies()}
    if cfg.study.name not in names and ws.study not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StudyError(f"study.warm_start: no study named '{ws.study}' in this storage (studies: {known})")


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A study file saved by an earlier version, with the keys added since at their defaults."""
    from search.spec.study_file import ConfigError, parse_study

    try:
        return parse_study(saved).to_dict()
    except ConfigError:
        return saved


def load_existing_study(name: str, locations: Locations) -> optuna.Study:
    """The study ``name`` of an existing store; a one-line ``StudyError`` when there is none."""
    missing = locations.missing_store()
    if missing is not None:
        raise StudyError(f"no study named '{name}': {missing} does not exist")
    quiet_libraries()
    storage = open_storage(locations.storage)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study named '{name}' in {mask(locations.storage)} (studies: {known})") from None


def recover(opened: OpenStudy, log: Log) -> int:
    """Close what dead workers left RUNNING: their trials become FAIL (marked for a retry, which
    the next worker to ask for a trial enqueues), their MLflow runs FAILED.

    A RUNNING trial is a dead worker's when it ran on this host under a pid that is gone;
    with heartbeats (server databases) Optuna also fails trials whose heartbeat went stale.
    """
    study, storage = opened.study, opened.storage
    if opened.heartbeat_interval:
        optuna.storages.fail_stale_trials(study)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if keys.dead_worker(trial):
            storage.set_trial_user_attr(trial._trial_id, keys.FAIL_REASON_ATTR, "worker died")
            storage.set_trial_user_attr(trial._trial_id, keys.RETRY_ATTR, True)  # a worker retries it
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed += 1
    closed = close_failed_runs(opened)
    if failed or closed:
        log(f"recovered: {failed} trial(s) of dead workers marked FAIL, {closed} MLflow run(s) closed")
    return failed


def close_failed_runs(opened: OpenStudy) -> int:
    """Close the MLflow runs of FAIL trials that their dead worker left RUNNING; returns how many.

    COMPLETE/PRUNED runs are closed by their worker before it tells Optuna; only a FAIL can hide
    a dead worker's run.
    """
    from search.tracking.client import TrackingUnavailable

    closed = 0
    if not opened.tracker.client.reachable:  # the server is down: the next call after it returns
        return closed
    for trial in opened.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = keys.run_id(trial)
        if run_id is not None:
            reason = keys.fail_reason(trial, "worker died (no heartbeat or process gone)")
            try:
                closed += opened.tracker.close_failed_run(run_id, reason)
            except TrackingUnavailable:
                break
    return closed


def summarize(study: optuna.Study, of: int | None = None, best: bool = True) -> str:
    """``3 complete, 1 pruned, 0 failed, 0 running | best 61.70 % (58.65–64.66, n=1,000) (trial 9),
    held-out 60.10 % (...)``: an exact-match figure carries its interval; another objective (a loss)
    is printed as it is. ``of``: the study's n_trials, shown after the counts; ``best=False``: the
    counts only (``status`` names the best trial on a line of its own)."""
    from search.study.table import best_text

    c = keys.state_counts(study.get_trials(deepcopy=False))
    line = f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, {c['running']} running"
    line += f" of {of}" if of is not None else ""
    text = best_text(study) if best else None
    return line + (f" | best {text}" if text else "")


def _study_params(cfg: StudyConfig) -> dict[str, Any]:
    """What the parent run shows as params: the study's settings at a glance."""
    s = cfg.study
    return {
        "study_name": s.name,
        **objective_params(s.metric, s.direction),
        "n_trials": s.n_trials,
        "sampler": s.sampler,
        "pruner": s.pruner.type,
        "seed": s.seed,
        "data_range": list(cfg.data.range),
        "train_size": cfg.data.train_size,
        "epochs": cfg.training.epochs,
    }
