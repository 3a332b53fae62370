"""The cluster side of how workers spawn: ``submit`` queues N workers of a study as one SLURM job
array through submitit, and each array task runs ``SlurmWorker``: the code path of
``collatz-hpo worker`` (``launch.join``) against the study's shared storage and tracking server.

How a worker stops: SIGTERM (``scancel``, ``scontrol requeue``, a preemption in REQUEUE mode)
stops it like Ctrl-C: its running trial is recorded FAIL ("interrupted"), then it exits; a
requeued task runs the same callable again (from the pickle submitit wrote) and joins the study
anew. USR2 (sent 90 s before the time limit, or by a preemption that signals) goes to submitit,
which calls ``SlurmWorker.checkpoint``, requeues the job and exits; that exit becomes an interrupt
here too, so the trial is recorded first. The study file and the URLs travel in that pickle,
passwords included: the log folder is made readable by its owner only.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, FailedSubmissionError

from search import keys
from search.errors import EXIT_INTERRUPTED, one_line
from search.events import Log
from search.locations import Locations
from search.signals import stop_on_sigterm
from search.spec.study_file import StudyConfig
from search.study.opening import open_study
from search.study.slurm_jobs import SlurmError, SlurmOptions, check_submittable

__all__ = ["SlurmWorker", "Submission", "executor_parameters", "submit", "worker_index"]

_say = functools.partial(print, flush=True)  # a job's log is a file: each line at once


@dataclass(frozen=True)
class Submission:
    """A submitted job array: its id, its tasks (one worker each) and their log files."""

    study: str
    job_id: str  # the array's id (one worker: the job's id)
    tasks: list[str]  # ``<array>_<task>``
    log_dir: Path
    logs: list[Path]


def worker_index(task: int, workers: int) -> int:
    """The sampler seed offset of array task ``task``: the task's number on its first run, plus
    ``workers`` per requeue (``SLURM_RESTART_COUNT``), so that a rerun samples new points."""
    return task + workers * int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class SlurmWorker(submitit.helpers.Checkpointable):
    """One worker of a submitted study, picklable: the study file (as a dict), its locations and
    how many workers the array has; called with its array task's number."""

    def __init__(self, config: dict[str, Any], locations: Locations, workers: int) -> None:
        self.config, self.locations, self.workers = config, locations, workers

    def __call__(self, task: int) -> dict[str, int]:
        from search.spec.study_file import parse_study
        from search.study.launch import join
        from search.trial.body import INTERRUPTED

        stop_on_sigterm()
        _interrupt_on_preemption()
        index = worker_index(task, self.workers)
        try:
            result = join(parse_study(self.config), self.locations, index, log=_say)
        except KeyboardInterrupt:
            _say(
                f"worker {index} stopped by a signal (requeue, preemption, scancel); "
                f"its running trial, if any, was recorded FAIL ({INTERRUPTED})"
            )
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)  # at once: SLURM kills the job KillWait seconds after SIGTERM
        c = result.counts
        _say(
            f"worker done: study '{result.study_name}' {c['complete']} complete, {c['pruned']} pruned, "
            f"{c['fail']} failed"
        )
        return c

    def checkpoint(self, task: int) -> submitit.helpers.DelayedSubmission:
        """Preempted or at the time limit (USR2): the same worker, requeued; it joins the study again.
        The trial it was running is recorded as interrupted; a worker retries it from its last
        uploaded checkpoint (``search.trial.resume``)."""
        fresh = SlurmWorker(self.config, self.locations, self.workers)
        return submitit.helpers.DelayedSubmission(fresh, task)


def _interrupt_on_preemption() -> None:
    """submitit's USR2 handler checkpoints, requeues the job and exits (``SystemExit``) wherever the
    worker is: raised as ``KeyboardInterrupt`` instead, the worker records its running trial first."""
    sig = getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}")
    checkpoint_and_requeue = signal.getsignal(sig)
    if not callable(checkpoint_and_requeue):  # not started by submitit
        return

    def handler(signum: int, frame: Any) -> None:
        try:
            checkpoint_and_requeue(signum, frame)
        except SystemExit:
            raise KeyboardInterrupt("preempted or at the time limit: requeued") from None
        except Exception as exc:  # timed out too many times: not requeued
            raise KeyboardInterrupt(f"preempted or at the time limit: {one_line(exc)}") from None

    signal.signal(sig, handler)


def executor_parameters(cfg: StudyConfig, options: SlurmOptions) -> dict[str, Any]:
    """submitit's ``AutoExecutor`` parameters of one worker (one array task)."""
    params: dict[str, Any] = {
        "name": f"collatz-hpo-{cfg.study.name}",
        "timeout_min": options.time_limit,
        "cpus_per_task": options.cpus_per_worker or cfg.training.threads,
        "stderr_to_stdout": True,  # one log per worker
    }
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.gpus_per_worker:
        params["gpus_per_node"] = options.gpus_per_worker  # one task per job: per node = per worker
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    if options.extra:
        params["slurm_additional_parameters"] = dict(options.extra)  # written last: they win
    return params


_NO_HEARTBEAT = (
    "note: the study file sets no heartbeat_interval: a worker killed outright (SIGKILL, a lost node) "
    "leaves its trial RUNNING; see docs/many-machines.md"
)


def submit(
    cfg: StudyConfig, locations: Locations, workers: int, options: SlurmOptions, log: Log = print
) -> Submission | None:
    """Create or open the study here (its errors show at once), then queue ``workers`` workers as
    one job array and record its id on the study. None: the study already holds ``n_trials``.

    Refuses (``SlurmError``) a store SLURM workers cannot share and a machine without SLURM;
    the caller checks first that the storage and tracking server answer.
    """
    check_submittable(locations)
    opened = open_study(cfg, locations, 0, log=log)
    opened.ensure_parent_run()
    done, target = keys.counted(opened.counts()), cfg.study.n_trials
    log(f"study '{cfg.study.name}': {done} of {target} trials done; {locations.describe()}")
    if done >= target:
        return None
    if cfg.study.heartbeat_interval is None:
        log(_NO_HEARTBEAT)
    jobs = _submit_array(cfg, locations, workers, options)
    array = jobs[0].job_id.split("_")[0]
    with opened.lock():  # two submits may record at once
        keys.add_slurm_job(opened.study, array)
    folder = options.log_folder(cfg.study.name)
    return Submission(cfg.study.name, array, [j.job_id for j in jobs], folder, [j.paths.stdout for j in jobs])


def _submit_array(cfg: StudyConfig, locations: Locations, workers: int, options: SlurmOptions) -> list[Any]:
    folder = options.log_folder(cfg.study.name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # the pickles hold the URLs' passwords
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**executor_parameters(cfg, options))
    worker = SlurmWorker(cfg.to_dict(), locations, workers)
    # submitit prints sbatch's complaint before raising it: ours is the one line
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return executor.map_array(worker, range(workers))
        except (FailedJobError, FailedSubmissionError) as exc:
            raise SlurmError(f"sbatch refused the job array (nothing submitted): {one_line(exc)}") from None
