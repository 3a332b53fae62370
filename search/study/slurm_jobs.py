"""What ``submit`` asks of SLURM, and what SLURM says of a study's jobs, without submitit.

``SlurmOptions`` are the resources of one worker (one array task) and the free ``--slurm
KEY=VALUE`` sbatch options; ``check_submittable`` refuses, before anything is written, a study
that SLURM workers could not share. Job states come from the controller (``squeue -t all``: it
also lists jobs that ended a few minutes ago, and it works where accounting, hence ``sacct``, is
off); ``cancel_study_jobs`` stops the study's arrays with ``scancel``. This module loads no
submitit, Optuna or MLflow at import: ``status`` and the CLI's parser stay fast.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.errors import CollatzHpoError, StudyError, one_line
from search.locations import Locations, mask, sqlite_path

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "LOG_ROOT",
    "SQUEUE_TIMEOUT",
    "JobState",
    "SlurmError",
    "SlurmOptionError",
    "SlurmOptions",
    "cancel_study_jobs",
    "check_submittable",
    "job_states",
    "parse_slurm_settings",
    "study_jobs",
]

DEFAULT_TIME_LIMIT = 240  # minutes of one job; a worker that reaches it is checkpointed and requeued
LOG_ROOT = "slurm"  # the jobs' logs go to <cwd>/slurm/<study>/ unless --log-dir says otherwise
SQUEUE_TIMEOUT = 5.0  # seconds squeue or scancel has to answer
# States in which a job still holds or waits for a node (man squeue, JOB STATE CODES)
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "STOPPED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    }
)
# sbatch options that `submit` writes itself, and those that have a flag of their own
_MANAGED = {
    "array": "one array task per worker (--workers)",
    "output": "the log folder (--log-dir)",
    "error": "the log folder (--log-dir)",
    "open-mode": "append, so that a requeued worker keeps its log",
    "signal": "USR2 before the time limit: checkpoint and requeue",
    "job-name": "collatz-hpo-<study>",
    "wrap": "the worker",
}
_OWN_FLAGS = {
    "partition": "--partition",
    "time": "--time-limit",
    "cpus-per-task": "--cpus-per-worker",
    "mem": "--mem-gb",
    "gpus": "--gpus-per-worker",
    "gpus-per-node": "--gpus-per-worker",
    "gpus-per-task": "--gpus-per-worker",
}
_KEY = re.compile(r"[a-z][a-z0-9-]*")


class SlurmOptionError(CollatzHpoError, ValueError):
    """A worker resource or ``--slurm KEY=VALUE`` that cannot make a job (nothing was submitted)."""


class SlurmError(StudyError):
    """SLURM cannot take the study's workers: no SLURM here, a store only this machine sees,
    sbatch refusing the job array, scancel failing."""


@dataclass(frozen=True)
class SlurmOptions:
    """What each worker (one array task) asks of SLURM; ``extra``: any other sbatch option."""

    partition: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None  # None: the study's training.threads
    mem_gb: float | None = None  # None: the partition's default
    time_limit: int = DEFAULT_TIME_LIMIT  # minutes
    extra: Mapping[str, str | int | bool] = field(default_factory=dict)
    log_dir: Path | None = None  # None: slurm/<study>/ under the current directory

    def __post_init__(self) -> None:
        if self.gpus_per_worker not in (0, 1):
            raise SlurmOptionError(
                f"--gpus-per-worker {self.gpus_per_worker}: a worker trains on one GPU; "
                "submit more workers instead"
            )

    def log_folder(self, study: str) -> Path:
        """Where the jobs' logs and submitit's files go (absolute: jobs run elsewhere)."""
        return (self.log_dir or Path(LOG_ROOT) / study).resolve()


def parse_slurm_settings(pairs: Sequence[str]) -> dict[str, str | int | bool]:
    """``--slurm KEY=VALUE`` pairs as sbatch options: ``account=proj`` → ``--account=proj``, a bare
    ``KEY`` → the flag ``--KEY``; ``_`` in a key reads as ``-``; numbers become ints. A key that
    ``submit`` writes itself or has a flag for, a key given twice, an empty value or a control
    character (it would break the batch script) is a one-line ``SlurmOptionError``."""
    out: dict[str, str | int | bool] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("_", "-")
        if not _KEY.fullmatch(key):
            raise SlurmOptionError(f"--slurm {pair!r}: expected KEY=VALUE with an sbatch option as KEY")
        if key in _OWN_FLAGS:
            raise SlurmOptionError(f"--slurm {key}: use {_OWN_FLAGS[key]} instead")
        if key in _MANAGED:
            raise SlurmOptionError(f"--slurm {key}: submit sets it itself ({_MANAGED[key]})")
        if key in out:
            raise SlurmOptionError(f"--slurm {key}: given twice")
        if not sep:
            out[key] = True
        elif not value.strip():
            raise SlurmOptionError(f"--slurm {key}=: empty value (write a flag as a bare --slurm {key})")
        elif not value.isprintable():
            raise SlurmOptionError(f"--slurm {key}={value!r}: control characters are not allowed")
        else:
            out[key] = int(value) if value.isdigit() else value
    return out


def check_submittable(locations: Locations) -> None:
    """Refuse, before anything is written, what SLURM workers on other nodes cannot use: a sqlite
    storage or a local (sqlite, file) tracking store; and a machine without sbatch."""
    storage, tracking = locations.storage, locations.tracking_uri
    if sqlite_path(storage) is not None or storage.startswith("sqlite:"):
        raise SlurmError(
            f"storage {mask(storage)} is a sqlite file on this machine: SLURM workers on other nodes "
            "cannot share it; use a PostgreSQL storage (--storage postgresql://...)"
        )
    if tracking.startswith(("sqlite:", "file:")):
        raise SlurmError(
            f"tracking URI {mask(tracking)} is a store on this machine: SLURM workers on other nodes "
            "cannot share it; use an MLflow server (--tracking-uri http://...)"
        )
    missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if missing:
        raise SlurmError(f"SLURM is not installed here (no {', '.join(missing)}): submit from a login node")


@dataclass(frozen=True)
class JobState:
    """One job (or array task, ``<array>_<task>``) as the controller lists it."""

    job: str
    state: str

    @property
    def array(self) -> str:
        return self.job.split("_", 1)[0]


def job_states(job_ids: Sequence[str], timeout: float = SQUEUE_TIMEOUT) -> list[JobState] | None:
    """Every task of ``job_ids`` the controller still lists, in job and task order; None when
    squeue is missing, fails or does not answer within ``timeout``."""
    if not job_ids or shutil.which("squeue") is None:
        return None
    cmd = ["squeue", "-h", "-t", "all", "-r", "-j", ",".join(job_ids), "-o", "%i %T"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:  # every id unknown by now ("Invalid job id specified"), or no controller
        return [] if "invalid job id" in proc.stderr.lower() else None
    states = [JobState(*line.split(None, 1)) for line in proc.stdout.splitlines() if line.strip()]
    return sorted(states, key=lambda s: tuple(int(p) if p.isdigit() else -1 for p in s.job.split("_")))


def study_jobs(study: Any, timeout: float = SQUEUE_TIMEOUT) -> list[tuple[str, str, str]] | None:
    """(job, state, trial it runs) for each task of the study's job arrays; an array the controller
    no longer lists is one row. None when the study has no jobs or squeue does not answer."""
    from optuna.trial import TrialState

    from search import keys

    arrays = keys.slurm_jobs(study)
    states = job_states(arrays, timeout) if arrays else None
    if states is None:
        return None
    running = {
        keys.worker_slurm_job(t): str(t.number)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    rows = [(s.job, s.state, running.get(s.job, "-")) for s in states]
    listed = {s.array for s in states}
    rows += [(array, "ended (no longer listed)", "-") for array in arrays if array not in listed]
    return rows


def cancel_study_jobs(study: Any, timeout: float = SQUEUE_TIMEOUT) -> list[str]:
    """``scancel`` each job array of the study that still has tasks pending or running; one line per
    array saying what was done. Running workers get SIGTERM: they record their trials as
    interrupted (FAIL) and stop."""
    from search import keys

    arrays = keys.slurm_jobs(study)
    if not arrays:
        return []
    if shutil.which("scancel") is None:
        raise SlurmError("SLURM is not installed here (no scancel): cancel from a login node")
    states = job_states(arrays, timeout)
    if states is None:
        raise SlurmError(f"squeue did not answer within {timeout:g}s: nothing cancelled")
    return [_cancel_array(array, [s for s in states if s.array == array], timeout) for array in arrays]


def _cancel_array(array: str, tasks: list[JobState], timeout: float) -> str:
    active = [t for t in tasks if t.state in ACTIVE_STATES]
    if not active:
        return f"SLURM job {array}: nothing to cancel ({_by_state(tasks) or 'no longer listed'})"
    try:
        proc = subprocess.run(["scancel", array], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SlurmError(f"scancel {array} failed: {one_line(exc)}") from None
    if proc.returncode != 0:
        raise SlurmError(f"scancel {array} failed: {one_line(proc.stderr or proc.stdout)}")
    return f"SLURM job {array}: cancelled {len(active)} task(s) ({_by_state(active)})"


def _by_state(tasks: list[JobState]) -> str:
    """``2 RUNNING, 4 PENDING``: how many tasks are in each state, in the order first seen."""
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state] = counts.get(t.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())
