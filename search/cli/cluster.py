"""SLURM commands: `submit` (a study's workers as one job array) and `cancel` (stop them).

`status` shows the jobs' states next to the trials (``studies``); the job states come from
``search.study.slurm_jobs``, which loads no submitit.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from search.cli.args import positive_float, positive_int
from search.cli.common import (
    add_store_flags,
    check_reachable,
    existing_study,
    load_config,
    locations_of,
    say,
    set_command,
)
from search.study.slurm_jobs import DEFAULT_TIME_LIMIT, LOG_ROOT

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_submit(sub)
    _add_cancel(sub)


def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="run a study's workers on SLURM: one job array, one worker per task",
        description="Create or open the study of STUDY.toml, then submit N workers (`collatz-hpo worker`) "
        "as one SLURM job array against its shared storage (PostgreSQL) and MLflow server.",
    )
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--workers", type=positive_int, required=True, metavar="N", help="array tasks")
    p.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    p.add_argument(
        "--gpus-per-worker",
        type=int,
        default=0,
        metavar="{0,1}",
        help="1: each worker gets its own GPU (SLURM sets CUDA_VISIBLE_DEVICES); default 0",
    )
    p.add_argument("--cpus-per-worker", type=positive_int, metavar="C", help="default: training.threads")
    p.add_argument("--mem-gb", type=positive_float, metavar="G", help="memory per worker")
    p.add_argument(
        "--time-limit",
        type=positive_int,
        default=DEFAULT_TIME_LIMIT,
        metavar="MIN",
        help=f"minutes per job; a worker at its limit is requeued (default: {DEFAULT_TIME_LIMIT})",
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. account=proj, qos=high, constraint=a100; a bare KEY is a flag",
    )
    p.add_argument("--log-dir", type=Path, metavar="DIR", help=f"jobs' logs (default: {LOG_ROOT}/<study>/)")
    p.add_argument("--n-trials", type=positive_int, help="total trials (COMPLETE + PRUNED) to reach")
    p.add_argument("--timeout", type=positive_float, help="workers stop starting trials after S seconds")
    add_store_flags(p)
    set_command(p, _cmd_submit)


def _cmd_submit(args: argparse.Namespace) -> int:
    from search.study.slurm_jobs import SlurmOptions, check_submittable, parse_slurm_settings

    options = SlurmOptions(
        partition=args.partition,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        mem_gb=args.mem_gb,
        time_limit=args.time_limit,
        extra=parse_slurm_settings(args.slurm),
        log_dir=args.log_dir,
    )
    cfg = load_config(args.study_file, n_trials=args.n_trials, timeout=args.timeout)
    locations = locations_of(args)
    check_submittable(locations)
    check_reachable(locations, args)
    from search.study.slurm import submit

    done = submit(cfg, locations, args.workers, options, log=say)
    name = cfg.study.name
    if done is None:
        print(f"nothing submitted: study '{name}' holds its n_trials (raise them with --n-trials)")
        return 0
    tasks = ", ".join(done.tasks) if len(done.tasks) <= 4 else f"{done.tasks[0]} ... {done.tasks[-1]}"
    print(f"submitted SLURM job array {done.job_id}: {len(done.tasks)} worker(s) ({tasks})")
    print(f"logs: {_shown(done.log_dir)}{os.sep} (one file per worker, e.g. {done.logs[0].name})")
    print(f"watch: collatz-hpo status {name}; stop: collatz-hpo cancel {name} (same --storage)")
    return 0


def _shown(path: Path) -> str:
    """A path relative to the current directory when it is below it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _add_cancel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cancel",
        help="cancel a study's SLURM jobs (running workers record their trials as interrupted)",
        description="scancel every job array `submit` queued for STUDY; one line per job array.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    add_store_flags(p)
    set_command(p, _cmd_cancel)


def _cmd_cancel(args: argparse.Namespace) -> int:
    study, _ = existing_study(args, tracking=False)
    from search.study.slurm_jobs import cancel_study_jobs

    lines = cancel_study_jobs(study)
    for line in lines or [f"study '{study.study_name}' has no SLURM jobs (submit records them)"]:
        print(line)
    return 0
