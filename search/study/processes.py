"""The local worker processes of ``launch --workers N``: how they are spawned, what each is given,
how their lines reach the launching process and how an interrupt stops them.

Each process opens the study itself and runs one ``Worker``; its stats come back through a
queue, its lines and trial events through another (to the launching process's progress display).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from search.errors import StudyError
from search.locations import Locations
from search.signals import ignore_signals, interrupt_when_parent_dies
from search.spec.study_file import parse_study
from search.study.devices import use_device
from search.study.opening import OpenStudy, open_study
from search.study.progress import QueueLog, StudyProgress, relay
from search.study.workers import Worker, WorkerStats

__all__ = ["WorkerArgs", "run_processes"]

INTERRUPT_GRACE = 1.0  # seconds workers that got Ctrl-C themselves have before SIGTERM is passed on
STOP_TIMEOUT = 60  # seconds a stopping worker may take to record its trial before it is killed


@dataclass(frozen=True)
class WorkerArgs:
    """What a spawned worker process is given (pickled by multiprocessing)."""

    study_file: dict[str, Any]  # StudyConfig.to_dict(): parsed again in the worker
    source: str  # where the study file came from, for its error messages
    locations: Locations
    index: int  # the worker's number: sampler seed offset and ``[wN]`` prefix
    deadline: float | None  # wall clock after which no trial starts
    parent: int  # the launching process's pid: the worker stops when it dies
    stats: Any  # a multiprocessing queue: the worker's WorkerStats, as a dict
    events: Any  # a multiprocessing queue: its lines and trial events (``QueueLog``)
    device: str | None = None  # its CUDA_VISIBLE_DEVICES (``study.devices``); None: as inherited


def worker_main(args: WorkerArgs) -> None:
    """Entry point of a spawned worker process: run one worker, exit 130 when interrupted."""
    use_device(args.device)  # before anything initialises CUDA in this process
    interrupt_when_parent_dies(args.parent)
    cfg = parse_study(args.study_file, args.source)
    log = QueueLog(args.events, args.index)
    try:
        opened = open_study(cfg, args.locations, args.index, log=log)
        args.stats.put(dataclasses.asdict(Worker(opened, args.index, args.deadline, log).run()))
    except KeyboardInterrupt:  # the worker recorded its trial
        sys.exit(130)
    except StudyError as exc:
        log(f"error: {exc}")
        sys.exit(1)


def run_processes(
    opened: OpenStudy,
    workers: int,
    deadline: float | None,
    progress: StudyProgress | None = None,
    devices: Sequence[str | None] | None = None,
) -> tuple[list[WorkerStats], int]:
    """Run ``workers`` spawned worker processes to their end: (their stats, how many failed).
    Worker i sees only the GPU ``devices[i]`` (its ``CUDA_VISIBLE_DEVICES``; None: as this process).

    What they log reaches ``progress`` (default: plain lines on stdout) through a queue.
    Ctrl-C reaches the whole process group; a SIGINT or SIGTERM sent to this process alone is
    passed on as SIGTERM. Each worker records its running trial as interrupted and stops.
    """
    cfg = opened.cfg
    progress = progress or StudyProgress.of(opened.study, cfg.study.n_trials, workers=workers)
    ctx = mp.get_context("spawn")
    stats, events = ctx.Queue(), ctx.Queue()
    common = {
        "study_file": cfg.to_dict(),
        "source": cfg.source,
        "locations": opened.locations,
        "deadline": deadline,
        "parent": os.getpid(),
    }
    devices = devices or [None] * workers
    procs = [
        ctx.Process(
            target=worker_main,
            args=(WorkerArgs(**common, index=i, stats=stats, events=events, device=devices[i]),),
            name=f"collatz-hpo-worker-{i}",
        )
        for i in range(workers)
    ]
    with relay(events, progress):
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            ignore_signals()
            _stop(procs)
            raise
    collected = []
    while not stats.empty():
        collected.append(WorkerStats(**stats.get()))
    return collected, sum(p.exitcode not in (0, None) for p in procs)


def _stop(procs: list[Any]) -> None:
    """Pass an interrupt on to the workers and wait until they have recorded their trials."""
    # Workers that got the Ctrl-C themselves are already cleaning up (and ignore further
    # signals after their first instant); give them that instant before passing it on.
    end = time.time() + INTERRUPT_GRACE
    while time.time() < end and any(p.is_alive() for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(timeout=STOP_TIMEOUT)
        if p.is_alive():
            p.kill()
