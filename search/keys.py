"""Every Optuna user attribute that collatz-hpo writes, each with its reader.

Code that needs one of these facts calls the function here instead of spelling the key, so a
key is renamed in one place. The MLflow tags, params and metrics collatz-hpo writes live in
``search.tracking.names``, the same way.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.errors import CollatzHpoError

__all__ = [
    "COUNTED",
    "NoCompletedTrialError",
    "best_trial",
    "is_search",
    "maximized",
    "replicate_of",
    "require_completed",
    "search_trials",
    "state_counts",
    "trial_params",
]

# --- Optuna study user attributes ---------------------------------------------------------------
CONFIG_ATTR = "config"  # the study file as a dict: later launches must match it
GRID_ATTR = "grid_size"  # grid studies: how many points were enqueued (once)
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # the study's MLflow parent run
SLURM_JOBS_ATTR = "slurm_jobs"  # the SLURM job arrays `submit` queued for the study, oldest first

# --- Optuna trial user attributes ---------------------------------------------------------------
PARAMS_ATTR = "params"  # real hyperparameters (``nhead``, not ``nhead_d64``)
RUN_ATTR = "mlflow_run_id"  # the trial's MLflow child run
WORKER_ATTR = "worker"  # {"host", "pid"[, "slurm_job"]}: tells a dead worker's RUNNING trial from a live one
FAIL_REASON_ATTR = "fail_reason"
STOP_REASON_ATTR = "stop_reason"
TEST_EXACT_MATCH_ATTR = "test_exact_match"
COMPUTE_SECONDS_ATTR = "compute_seconds"  # inside training, validation and test evaluation
TRAIN_STEPS_ATTR = "train_steps"
TRAIN_SAMPLES_ATTR = "train_samples"  # training samples seen: a stratified study's budget per value
WARM_START_ATTR = "warm_start_from"  # "<study>:<trial>" a warm-started trial took its params from
FINAL_ATTR = "final"  # the final run (best configuration trained longer): its budget in seconds
FINAL_OF_ATTR = "final_of"  # the trial whose configuration the final run trains
FINAL_INIT_ATTR = "final_init_from"  # the checkpoint a final run starts from ([final] init)
REPLICATE_OF_ATTR = "replicate_of"  # a seed replicate ([confirm]): the search trial it retrains
REPLICATE_INDEX_ATTR = "replicate_index"  # which replicate of that trial it is: 1..seeds
# the trial's latest checkpoint in the artifact store (``CheckpointAt``): where a retry resumes
CHECKPOINT_ATTR = "checkpoint"
RESUMED_ATTR = "resumed_from"  # a retried trial: what it took over from its checkpoint (``Resumed``)
RETRY_ATTR = "retry"  # True: stopped through no fault of its own (interrupt, dead worker): retried
FIRST_ATTEMPT_ATTR = "first_attempt"  # a retry: the trial it retries first ran as (its seed)

#: What one attempt of a trial recorded: a retry of it starts without them (``RETRY_ATTR`` too).
ATTEMPT_ATTRS = (
    WORKER_ATTR,
    FAIL_REASON_ATTR,
    STOP_REASON_ATTR,
    TEST_EXACT_MATCH_ATTR,
    COMPUTE_SECONDS_ATTR,
    TRAIN_STEPS_ATTR,
    TRAIN_SAMPLES_ATTR,
    RESUMED_ATTR,
    RETRY_ATTR,
)

#: The states of search trials (``is_search``) that count towards ``n_trials``: failed or
#: interrupted ones are replaced; final runs and seed replicates never count.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class NoCompletedTrialError(CollatzHpoError, ValueError):
    """A study that has no COMPLETE trial yet, where one is needed (export, report)."""


# --- study facts ---------------------------------------------------------------------------------
def study_config(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(CONFIG_ATTR)


def study_metric(study: optuna.Study, default: str | None = None) -> str | None:
    """The objective metric named in the study file the study was created from."""
    return ((study_config(study) or {}).get("study") or {}).get("metric", default)


def maximized(study: optuna.Study) -> bool:
    """Whether the study's objective is maximized (its direction as Optuna stored it)."""
    return study.direction == StudyDirection.MAXIMIZE


def parent_run_id(study: optuna.Study) -> str | None:
    return study.user_attrs.get(PARENT_RUN_ATTR)


def set_parent_run_id(study: optuna.Study, run_id: str) -> None:
    study.set_user_attr(PARENT_RUN_ATTR, run_id)


def slurm_jobs(study: optuna.Study) -> list[str]:
    """The ids of the SLURM job arrays submitted for the study (``submit``), oldest first."""
    return list(study.user_attrs.get(SLURM_JOBS_ATTR, []))


def add_slurm_job(study: optuna.Study, job_id: str) -> None:
    """Record a submitted job array (call under the study lock: two submits may race)."""
    study.set_user_attr(SLURM_JOBS_ATTR, [*slurm_jobs(study), job_id])


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """``{"complete": .., "pruned": .., "fail": .., "running": .., "waiting": ..}``."""
    out = {s.name.lower(): 0 for s in TrialState}
    for t in trials:
        out[t.state.name.lower()] += 1
    return out


def counted(counts: Mapping[str, int]) -> int:
    """Trials that count towards ``n_trials`` (COMPLETE + PRUNED), given the counts of search trials."""
    return counts["complete"] + counts["pruned"]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial, or None while there is none."""
    try:
        return study.best_trial
    except ValueError:
        return None


def require_completed(study: optuna.Study) -> FrozenTrial:
    """The best trial; ``NoCompletedTrialError`` (with the state counts) while there is none."""
    best = best_trial(study)
    if best is None:
        counts = state_counts(study.get_trials(deepcopy=False))
        states = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise NoCompletedTrialError(f"study '{study.study_name}' has no completed trial yet ({states})")
    return best


# --- trial facts ---------------------------------------------------------------------------------
def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's real hyperparameters (Optuna's params rename ``nhead`` per d_model)."""
    return trial.user_attrs.get(PARAMS_ATTR, trial.params)


def set_trial_params(trial: optuna.Trial, params: Mapping[str, Any]) -> None:
    trial.set_user_attr(PARAMS_ATTR, dict(params))


def run_id(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(RUN_ATTR)


def set_run_id(trial: optuna.Trial, value: str) -> None:
    trial.set_user_attr(RUN_ATTR, value)


def mark_worker(trial: optuna.Trial) -> None:
    """Record this process as the trial's worker (see ``dead_worker``), and the SLURM job it runs
    in, if any (``status`` shows which trial each job runs)."""
    worker: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    job = this_slurm_job()
    if job is not None:
        worker["slurm_job"] = job
    trial.set_user_attr(WORKER_ATTR, worker)


def this_slurm_job() -> str | None:
    """``<array>_<task>`` (or the plain job id) of the SLURM job this process runs in; None outside."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def worker_slurm_job(trial: FrozenTrial) -> str | None:
    """The SLURM job whose worker ran the trial (None: not run under SLURM)."""
    return (trial.user_attrs.get(WORKER_ATTR) or {}).get("slurm_job")


def dead_worker(trial: FrozenTrial) -> bool:
    """Whether the trial's worker ran on this host under a pid that is gone."""
    worker = trial.user_attrs.get(WORKER_ATTR) or {}
    if worker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(worker.get("pid", -1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_reason(trial: FrozenTrial, default: str | None = None) -> str | None:
    return trial.user_attrs.get(FAIL_REASON_ATTR, default)


def set_fail_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON_ATTR, reason)


def stop_reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(STOP_REASON_ATTR)


def set_stop_reason(trial: optuna.Trial, reason: str) -> None:
    """Why training ended early: a budget, early stopping, the study's timeout (a PRUNED trial)."""
    trial.set_user_attr(STOP_REASON_ATTR, reason)


def test_exact_match(trial: FrozenTrial) -> float | None:
    return trial.user_attrs.get(TEST_EXACT_MATCH_ATTR)


def compute_seconds(trial: FrozenTrial) -> float:
    return trial.user_attrs.get(COMPUTE_SECONDS_ATTR, 0.0)


def train_steps(trial: FrozenTrial) -> int:
    return trial.user_attrs.get(TRAIN_STEPS_ATTR, 0)


def train_samples(trial: FrozenTrial) -> int | None:
    """Training samples the trial saw itself (None: recorded before samples were)."""
    return trial.user_attrs.get(TRAIN_SAMPLES_ATTR)


def record_result(trial: optuna.Trial, test_exact_match: float | None, stop_reason: str | None) -> None:
    """What a trial that trained to its end measured on the held-out test set."""
    if test_exact_match is not None:
        trial.set_user_attr(TEST_EXACT_MATCH_ATTR, test_exact_match)
    if stop_reason:
        set_stop_reason(trial, stop_reason)


def record_cost(trial: optuna.Trial, seconds: float, steps: int, samples: int = 0) -> None:
    """Where a trial's time went (read by ``benchmarks/bench_study.py``, the trials table and the
    report's budget per stratum): what this trial computed itself, so a sum over trials counts each
    second once (what a retried trial took over from its checkpoint is in ``resumed``)."""
    trial.set_user_attr(COMPUTE_SECONDS_ATTR, round(seconds, 3))
    trial.set_user_attr(TRAIN_STEPS_ATTR, steps)
    trial.set_user_attr(TRAIN_SAMPLES_ATTR, samples)


def first_attempt(trial: FrozenTrial | optuna.Trial) -> int:
    """The number of the trial's first attempt: its own, or the one a retry retries."""
    return int(trial.user_attrs.get(FIRST_ATTEMPT_ATTR, trial.number))


def mark_for_retry(trial: optuna.Trial) -> None:
    """Ask for a retry of the trial once it is FAIL: it was stopped, it did not fail."""
    trial.set_user_attr(RETRY_ATTR, True)


def wants_retry(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(RETRY_ATTR))


@dataclass(frozen=True)
class CheckpointAt:
    """A checkpoint in the artifact store: trial ``trial``'s run ``run_id``, its ``checkpoints/``,
    written after ``epoch`` (pruner step ``step``, ``compute_seconds`` of training in it);
    ``upload_seconds``: what that trial's uploads took so far."""

    trial: int
    run_id: str
    epoch: int
    step: int
    compute_seconds: float
    upload_seconds: float = 0.0


def checkpoint(trial: FrozenTrial | optuna.Trial) -> CheckpointAt | None:
    """The trial's latest uploaded checkpoint (a retry's: its failed trial's, until it uploads one)."""
    saved = trial.user_attrs.get(CHECKPOINT_ATTR)
    return CheckpointAt(**saved) if saved else None


def set_checkpoint(trial: optuna.Trial, at: CheckpointAt) -> None:
    trial.set_user_attr(CHECKPOINT_ATTR, dataclasses.asdict(at))


@dataclass(frozen=True)
class Resumed:
    """What a retried trial took over: trial ``trial``'s checkpoint in run ``run_id`` after ``epoch``,
    with ``compute_seconds`` and ``train_steps`` of training that this trial did not do again."""

    trial: int
    run_id: str
    epoch: int
    compute_seconds: float
    train_steps: int


def resumed(trial: FrozenTrial) -> Resumed | None:
    saved = trial.user_attrs.get(RESUMED_ATTR)
    return Resumed(**saved) if saved else None


def set_resumed(trial: optuna.Trial, what: Resumed) -> None:
    trial.set_user_attr(RESUMED_ATTR, dataclasses.asdict(what))


def final_seconds(trial: FrozenTrial) -> float | None:
    """The time budget of a final run; None for a search trial."""
    return trial.user_attrs.get(FINAL_ATTR)


def final_user_attrs(of: FrozenTrial, seconds: float, init_from: str | None = None) -> dict[str, Any]:
    """What marks an enqueued trial as the final run of ``of``'s configuration (started from
    the checkpoint ``init_from``, or from scratch)."""
    attrs: dict[str, Any] = {FINAL_ATTR: seconds, FINAL_OF_ATTR: of.number}
    if init_from is not None:
        attrs[FINAL_INIT_ATTR] = init_from
    return attrs


def final_of(trial: FrozenTrial) -> int | None:
    """The trial whose configuration (and, with ``[final] init``, checkpoint) a final run trains."""
    return trial.user_attrs.get(FINAL_OF_ATTR)


def final_init_from(trial: FrozenTrial) -> str | None:
    """The checkpoint a final run starts from; None: from scratch (or not a final run)."""
    return trial.user_attrs.get(FINAL_INIT_ATTR)


def replicate_of(trial: FrozenTrial | optuna.Trial) -> int | None:
    """The search trial a seed replicate retrains (``[confirm]``); None for any other trial."""
    return trial.user_attrs.get(REPLICATE_OF_ATTR)


def replicate_index(trial: FrozenTrial | optuna.Trial) -> int | None:
    """Which replicate (1..seeds) of its search trial a seed replicate is; None for any other."""
    return trial.user_attrs.get(REPLICATE_INDEX_ATTR)


def replicate_user_attrs(of: FrozenTrial, index: int) -> dict[str, Any]:
    """What marks an enqueued trial as seed replicate ``index`` of ``of``'s configuration."""
    return {REPLICATE_OF_ATTR: of.number, REPLICATE_INDEX_ATTR: index}


def is_search(trial: FrozenTrial) -> bool:
    """Whether the trial is one of the search's: not a final run, not a seed replicate. Only
    search trials count towards ``n_trials`` and are candidates for ``[confirm]``."""
    return final_seconds(trial) is None and replicate_of(trial) is None


def search_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The search trials among ``trials`` (see ``is_search``)."""
    return [t for t in trials if is_search(t)]
