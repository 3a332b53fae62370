"""Study commands: `launch` (this machine), `worker` (one of many machines), `confirm` (seed
replicates of the leaders), `status` (with the study's SLURM jobs, if `submit` queued any)."""

from __future__ import annotations

import argparse
import sys

from search.cli.args import index_list, positive_float, positive_int
from search.cli.common import (
    add_store_flags,
    check_reachable,
    existing_study,
    format_table,
    load_config,
    locations_of,
    say,
    set_command,
    study_name,
)

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_launch(sub)
    _add_worker(sub)
    _add_confirm(sub)
    _add_status(sub)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="create or resume a study from a study file and run it",
        description="Create the study of STUDY.toml, or resume it until n_trials trials are done.",
    )
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--n-trials", type=positive_int, help="total trials (COMPLETE + PRUNED) to reach")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    p.add_argument("--workers", type=positive_int, default=1, help="local worker processes")
    p.add_argument(
        "--devices",
        type=index_list,
        metavar="I,J",
        help="GPUs for the workers, round robin (torch's indices; default: every visible GPU; "
        "worker i sees only its own through CUDA_VISIBLE_DEVICES)",
    )
    p.add_argument(
        "--share-devices", action="store_true", help="allow more workers than GPUs (several per GPU)"
    )
    p.add_argument("--seed", type=int, help="sampler seed (worker i uses seed + i)")
    p.add_argument(
        "--warm-start-from",
        metavar="STUDY",
        help="a new study first tries the best trials of STUDY (same storage), adapted to its space",
    )
    p.add_argument("--warm-start-k", type=positive_int, default=4, metavar="K", help="how many (default: 4)")
    p.add_argument("--verbose", action="store_true", help="also print one line per trial epoch")
    add_store_flags(p)
    set_command(p, _cmd_launch)


def _cmd_launch(args: argparse.Namespace) -> int:
    warm = {"study": args.warm_start_from, "top_k": args.warm_start_k} if args.warm_start_from else None
    cfg = load_config(
        args.study_file, n_trials=args.n_trials, timeout=args.timeout, seed=args.seed, warm_start=warm
    )
    devices = _devices(args, cfg.training.device)  # before anything is written
    locations = locations_of(args)
    check_reachable(locations, args)
    from search.signals import stop_on_sigterm
    from search.study.launch import launch
    from search.study.progress import is_terminal

    stop_on_sigterm()  # SIGTERM stops like Ctrl-C
    result = launch(
        cfg, locations, args.workers, log=say, verbose=args.verbose, live=is_terminal(), devices=devices
    )
    c = result.counts
    best = f"; best {result.best_text}" if result.best_text is not None else ""
    counts = f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
    print(f"study '{result.study_name}': {counts}{best}")
    if result.best_params:
        print("best params: " + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    if result.interrupted:
        print("interrupted: run the same command to resume", file=sys.stderr)
    return result.exit_code


def _devices(args: argparse.Namespace, training_device: str) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES (None: the CPU, or as inherited)."""
    from search.study.devices import assign_devices, cuda_visible_value, visible_gpus

    gpus = assign_devices(args.workers, visible_gpus(training_device), args.devices, args.share_devices)
    return [None if g is None else cuda_visible_value(g) for g in gpus]


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="join a study from any machine (PostgreSQL storage + MLflow server)",
        description="Run trials of STUDY.toml against a shared storage until it holds n_trials; "
        "creates the study if absent. One GPU per worker: set CUDA_VISIBLE_DEVICES.",
    )
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--worker-index", type=int, help="sampler seed offset (default: from host and pid)")
    p.add_argument("--n-trials", type=positive_int, help="total trials (COMPLETE + PRUNED) to reach")
    p.add_argument("--timeout", type=positive_float, help="stop starting trials after S seconds")
    add_store_flags(p)
    set_command(p, _cmd_worker, on_interrupt="the running trial is recorded as FAIL (interrupted)")


def _cmd_worker(args: argparse.Namespace) -> int:
    cfg = load_config(args.study_file, n_trials=args.n_trials, timeout=args.timeout)
    locations = locations_of(args)
    check_reachable(locations, args)
    from search.signals import stop_on_sigterm
    from search.study.launch import join

    stop_on_sigterm()  # SIGTERM stops like Ctrl-C
    result = join(cfg, locations, args.worker_index, log=say)
    c = result.counts
    print(
        f"worker done: study '{result.study_name}' {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed"
    )
    return 0


def _add_confirm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "confirm",
        help="train a study's best search trials again with fresh seeds; the winner by mean",
        description="Train the K best COMPLETE search trials of an existing study again with S fresh "
        "training seeds each, at the search's budget and on the same data split (seed replicates, "
        "trials that count towards nothing); print each configuration's mean and the winner by mean, "
        "which [final] and export then follow. Finished replicates are not redone.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file (its [confirm] applies)")
    p.add_argument(
        "--top", type=positive_int, metavar="K", help="how many leaders (default: [confirm] top_k)"
    )
    p.add_argument(
        "--seeds", type=positive_int, metavar="S", help="fresh seeds each (default: [confirm] seeds)"
    )
    p.add_argument("--workers", type=positive_int, default=1, help="local worker processes")
    add_store_flags(p)
    set_command(p, _cmd_confirm, on_interrupt="the running replicate is recorded as FAIL (interrupted)")


def _cmd_confirm(args: argparse.Namespace) -> int:
    section = load_config(args.study).confirm if args.study.endswith(".toml") else None
    name = study_name(args.study)
    locations = locations_of(args)
    check_reachable(locations, args)
    from search.signals import stop_on_sigterm
    from search.study.confirm import confirm

    stop_on_sigterm()  # SIGTERM stops like Ctrl-C
    result = confirm(name, locations, args.top, args.seeds, args.workers, log=say, section=section)
    for line in result.lines:
        print(line)
    if result.interrupted:
        print("interrupted: run the same command to resume", file=sys.stderr)
    return result.exit_code


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="table of a study's trials and the best so far")
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    add_store_flags(p)
    set_command(p, _cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    study, _ = existing_study(args, tracking=False)
    from search.study.opening import summarize
    from search.study.table import status_lines, status_table

    header, rows = status_table(study)
    for line in format_table(header, rows, left=["note"]):
        print(line)
    print(summarize(study, best=False))
    for line in status_lines(study):
        print(line)
    _print_slurm_jobs(study)
    return 0


def _print_slurm_jobs(study: object) -> None:
    """The study's SLURM jobs (``submit``) and what each runs; nothing without jobs or squeue."""
    from search.study.slurm_jobs import study_jobs

    rows = study_jobs(study)
    if rows:
        print("SLURM jobs:")
        table = format_table(["job", "state", "trial"], [list(row) for row in rows], left=["job", "state"])
        for line in table:
            print(f"  {line}")
