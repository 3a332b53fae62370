"""Run a study: ``launch`` (this machine, N worker processes) and ``join`` (one worker of a study
shared by many machines). Both open the study the same way (``study.open_study``) and hand the
trials to ``workers``; they differ in who closes the study's parent run.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from search import keys
from search.errors import StudyError
from search.events import Log
from search.locations import Locations
from search.spec.study_file import StudyConfig
from search.study.devices import use_device
from search.study.final import run_final
from search.study.leaders import confirm_summary
from search.study.opening import OpenStudy, open_study, open_to_run, recover
from search.study.processes import run_processes
from search.study.progress import StudyProgress
from search.study.table import best_text
from search.study.workers import Worker, WorkerStats

__all__ = ["LaunchResult", "default_worker_index", "join", "launch"]


@dataclass
class LaunchResult:
    study_name: str
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_text: str | None = None  # the best value with its interval and held-out figure (``best_text``)
    interrupted: bool = False
    exit_code: int = 0
    workers: list[WorkerStats] = field(default_factory=list)


def launch(
    cfg: StudyConfig,
    locations: Locations,
    workers: int = 1,
    log: Log = print,
    verbose: bool = False,
    live: bool = False,
    devices: Sequence[str | None] | None = None,
) -> LaunchResult:
    """Create or resume the study and run ``workers`` processes until it holds ``n_trials``.

    Progress goes to ``log`` as one line per trial event (``verbose``: per epoch too), or, with
    ``live``, to a live terminal display (``search.study.progress``). ``devices``: worker i's
    ``CUDA_VISIBLE_DEVICES`` (``study.devices``; this process takes the first).
    """
    started = time.time()
    _use_devices(devices, log)
    opened = _open(cfg, locations, workers, log)
    deadline = _deadline(cfg)
    interrupted, failed_workers = False, 0
    stats: list[WorkerStats] = []
    progress = StudyProgress.of(
        opened.study,
        cfg.study.n_trials,
        workers=workers,
        deadline=deadline,
        out=log,
        verbose=verbose,
        live=live,
    )
    worker = Worker(opened, 0, deadline, progress)
    try:
        with progress:
            if workers == 1:
                stats.append(worker.run())
            else:
                stats, failed_workers = run_processes(opened, workers, deadline, progress, devices)
            _say_confirmed(opened, progress)
            if cfg.final is not None and not failed_workers:
                run_final(worker, started)
    except KeyboardInterrupt:  # the workers recorded their trials
        interrupted = True
    except StudyError as exc:
        log(f"error: {exc}")
        failed_workers = 1
    _reload(opened)
    recover(opened, log)
    opened.update_parent()
    opened.finish_parent("KILLED" if interrupted else ("FAILED" if failed_workers else "FINISHED"))
    return _result(opened, stats, interrupted, 130 if interrupted else (1 if failed_workers else 0))


def _say_confirmed(opened: OpenStudy, progress: StudyProgress) -> None:
    """After the workers: the seed replicates' means and the winner, if the study has replicates."""
    _reload(opened)
    for line in confirm_summary(opened.study):
        progress(line)


def _use_devices(devices: Sequence[str | None] | None, log: Log) -> None:
    """This process takes the first worker's GPU (it runs that worker, or the final run)."""
    if devices and devices[0] is not None:
        use_device(devices[0])
        shown = ", ".join(f"[w{i}] {d}" for i, d in enumerate(devices))
        log(f"GPU of each worker (CUDA_VISIBLE_DEVICES): {shown}")


def _open(cfg: StudyConfig, locations: Locations, workers: int, log: Log) -> OpenStudy:
    """Open the study for ``launch``: close what dead workers left RUNNING, make sure of the parent
    run, say where the study stands."""
    opened = open_to_run(cfg, locations, log)
    log(
        f"study '{cfg.study.name}': {keys.counted(opened.search_counts())} of {cfg.study.n_trials} "
        f"trials done; {workers} worker(s); {locations.describe()}"
    )
    return opened


def default_worker_index() -> int:
    """A per-process offset for the sampler seed of a worker started without --worker-index."""
    digest = hashlib.blake2b(f"{socket.gethostname()}:{os.getpid()}".encode(), digest_size=4).digest()
    return 1000 + int.from_bytes(digest, "big") % 1_000_000


def join(
    cfg: StudyConfig, locations: Locations, worker_index: int | None = None, log: Log = print
) -> LaunchResult:
    """One worker of a (possibly distributed) study: create it if absent, then run trials.

    Workers on many machines share one Optuna RDB storage (PostgreSQL) and one MLflow server;
    the study, its MLflow experiment and its parent run are created once, under the study lock.
    The last worker to see the study complete marks the parent run FINISHED.
    """
    index = default_worker_index() if worker_index is None else worker_index
    opened = open_study(cfg, locations, index, log=log)
    opened.ensure_parent_run()
    log(
        f"worker {index} joined study '{cfg.study.name}' (sampler seed {cfg.study.seed + index}); "
        f"{locations.describe()}"
    )
    stats = Worker(opened, index, _deadline(cfg), log).run()
    _reload(opened)
    opened.update_parent()
    counts = opened.counts()
    if keys.counted(opened.search_counts()) >= cfg.study.n_trials and counts["running"] == 0:
        opened.finish_parent("FINISHED")
    return _result(opened, [stats], interrupted=False, exit_code=0)


def _deadline(cfg: StudyConfig) -> float | None:
    """When workers stop starting trials (wall clock), from the study's timeout."""
    return time.time() + cfg.study.timeout if cfg.study.timeout else None


def _reload(opened: OpenStudy) -> None:
    """Read the study afresh: worker processes changed it behind this process's cache."""
    opened.study = optuna.load_study(study_name=opened.cfg.study.name, storage=opened.storage)


def _result(opened: OpenStudy, stats: list[WorkerStats], interrupted: bool, exit_code: int) -> LaunchResult:
    best = keys.best_trial(opened.study)
    return LaunchResult(
        study_name=opened.study.study_name,
        counts=opened.counts(),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        best_params=keys.trial_params(best) if best else {},
        best_text=best_text(opened.study),
        interrupted=interrupted,
        exit_code=exit_code,
        workers=stats,
    )
