"""Create, resume and run a study: Optuna storage, samplers, pruners, workers, recovery.

Workers use Optuna's ask-and-tell interface in a loop. "Count the trials, then ask for one"
runs under a per-study lock, so N workers on one storage finish exactly ``n_trials``
COMPLETE + PRUNED trials: failed or interrupted trials do not count and are replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from search.config import StudyConfig, parse_study
from search.objective import run_trial
from search.space import grid_search_space
from search.storage import Locations, first_line, is_disconnect, mask, prepare, study_lock
from search.tracking import StudyTracker

__all__ = [
    "LaunchResult",
    "StudyError",
    "counts",
    "create_or_load",
    "join",
    "launch",
    "load_existing_study",
    "open_storage",
    "recover",
    "summarize",
    "worker_loop",
]

Log = Callable[[str], None]
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
CONFIG_ATTR = "config"
GRID_ATTR = "grid_size"
# Settings that may change between launches of one study without changing what it measures.
_FREE_KEYS = {("study", "n_trials"), ("study", "timeout"), ("study", "seed")}


class StudyError(RuntimeError):
    """A study that cannot be launched as asked (one line, exit code 2)."""


@dataclass
class WorkerStats:
    """Where one worker's time went: whole trial loops vs training and evaluation inside them."""

    trials: int = 0
    loop_seconds: float = 0.0  # ask → train → tell → parent-run update, summed over trials
    compute_seconds: float = 0.0  # training epochs, validation and test evaluation


@dataclass
class LaunchResult:
    study_name: str
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    exit_code: int = 0
    workers: list[WorkerStats] = field(default_factory=list)


def open_storage(url: str, cfg: StudyConfig | None = None) -> optuna.storages.BaseStorage:
    """Optuna RDB storage that survives dropped connections; heartbeats when the study asks.

    With ``heartbeat_interval`` set, a trial whose worker stops beating for ``grace_period``
    seconds is failed by the next worker and retried with the same params (up to
    ``max_retries`` times) by Optuna's ``RetryHeartbeatStaleTrialCallback``.
    """
    if url.startswith("sqlite:"):
        # Several worker processes share one file: wait for locks instead of failing.
        kwargs: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": 120}}}
    else:
        # pre-ping replaces connections the server dropped while they sat in the pool.
        kwargs = {"engine_kwargs": {"pool_pre_ping": True, "pool_recycle": 300}}
    if cfg is not None and cfg.study.heartbeat_interval:
        kwargs["heartbeat_interval"] = cfg.study.heartbeat_interval
        kwargs["grace_period"] = cfg.study.grace_period or 2 * cfg.study.heartbeat_interval
        kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=cfg.study.max_retries
        )
    try:
        # Workers starting together on a fresh database would race to create Optuna's tables.
        with study_lock(url, "collatz-hpo-schema"):
            return ResilientRDBStorage(url, **kwargs)
    except Exception as exc:  # no driver, unreachable server, bad URL: one line, not a traceback
        raise StudyError(f"cannot open Optuna storage {mask(url)}: {first_line(exc)}") from exc


def open_tracker(cfg: StudyConfig, locations: Locations) -> StudyTracker:
    """The study's MLflow tracker; an unusable tracking URI is a one-line ``StudyError``."""
    try:
        return StudyTracker(locations.tracking_uri, cfg.study.name, locations.artifact_root)
    except Exception as exc:
        raise StudyError(
            f"cannot use MLflow tracking URI {mask(locations.tracking_uri)}: {first_line(exc)}"
        ) from exc


def _retrying(method: Callable[..., Any], attempts: int = 8) -> Callable[..., Any]:
    """Retry a storage call when the database connection dropped (exponential back-off)."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(attempts):
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if attempt == attempts - 1 or not is_disconnect(exc):
                    raise
                time.sleep(min(0.25 * 2**attempt, 8.0))
        raise AssertionError("unreachable")

    return call


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose calls are retried when the database connection drops."""


for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "record_heartbeat",
    "_get_stale_trial_ids",
    # called directly by Optuna's caching layer
    "_get_trials",
    "_create_new_trial",
    "_set_trial_param",
    "_get_best_trial_id",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int, interval: int | None) -> Iterator[None]:
    """Beat for ``trial_id`` every ``interval`` seconds while the block runs (no-op if None).

    ``study.optimize`` does this itself; our ask-and-tell loop has to.
    """
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is survivable: grace period
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def make_sampler(cfg: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    seed = cfg.study.seed + worker_index  # distinct per worker, reproducible for one worker
    kind = cfg.study.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(1, cfg.study.n_trials // 3)))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if kind == "grid":
        # The grid itself is enqueued once as WAITING trials (see `enqueue_grid`): unlike
        # GridSampler that is exact with many workers and never calls study.stop(), which
        # ask-and-tell does not allow. Trials beyond the grid are sampled at random.
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {kind!r}")


def enqueue_grid(study: optuna.Study, cfg: StudyConfig) -> int:
    """Enqueue every grid point once (call under the study lock); returns how many were added."""
    if cfg.study.sampler != "grid" or study.user_attrs.get(GRID_ATTR):
        return 0
    grid = grid_search_space(cfg.search)
    names = list(grid)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    for params in points:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(GRID_ATTR, len(points))
    return len(points)


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    p = cfg.study.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.type == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=cfg.training.epochs, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def _diff(a: Any, b: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
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
    cfg: StudyConfig, storage: optuna.storages.BaseStorage, worker_index: int = 0
) -> optuna.Study:
    """The study of ``cfg`` (created if absent); refuses one made from a different study file."""
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
    saved = study.user_attrs.get(CONFIG_ATTR)
    if saved is None:
        enqueue_grid(study, cfg)
        study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    else:
        key = _diff(saved, cfg.to_dict())
        if key is not None:
            raise StudyError(
                f"study '{cfg.study.name}' already exists with a different {'.'.join(key)}; "
                "give the study a new name to change what it measures"
            )
    return study


def load_existing_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study named '{name}' in {mask(storage_url)} (studies: {known})") from None


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] += 1
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study, tracker: StudyTracker, log: Log) -> int:
    """Close what dead workers left RUNNING: their trials become FAIL, their MLflow runs FAILED.

    A RUNNING trial is a dead worker's when it ran on this host under a pid that is gone;
    with heartbeats (server databases) Optuna also fails trials whose heartbeat went stale.
    """
    storage = study._storage
    if isinstance(storage, optuna.storages.RDBStorage) and storage.is_heartbeat_enabled():
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") == host and not _alive(int(worker.get("pid", -1))):
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "worker died")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed += 1
    closed = tracker.close_orphans(study)
    if failed or closed:
        log(f"recovered: {failed} trial(s) of dead workers marked FAIL, {closed} MLflow run(s) closed")
    return failed


def summarize(study: optuna.Study) -> str:
    c = counts(study)
    line = f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, {c['running']} running"
    try:
        best = study.best_trial
        line += f" | best {best.value:.4f} (trial {best.number})"
    except ValueError:
        pass
    return line


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


def worker_loop(
    cfg: StudyConfig,
    locations: Locations,
    worker_index: int = 0,
    deadline: float | None = None,
    log: Log = print,
) -> WorkerStats:
    """Ask, run and tell trials until the study holds ``n_trials`` counted trials.

    Returns what this worker ran and where its time went. Raises KeyboardInterrupt after recording an
    interrupted trial as FAIL ("interrupted") with its MLflow run FAILED.
    """
    import torch

    quiet_libraries()
    torch.set_num_threads(cfg.training.threads)
    storage = open_storage(locations.storage, cfg)
    study = create_or_load(cfg, storage, worker_index)
    tracker = open_tracker(cfg, locations)
    engine = getattr(storage, "engine", None)
    heartbeats = storage.get_heartbeat_interval() if isinstance(storage, ResilientRDBStorage) else None
    target = cfg.study.n_trials
    max_failures = max(3, target)
    data_cache: dict = {}
    stats = WorkerStats()
    failures = 0
    current: optuna.Trial | None = None  # asked and not yet told: what an interrupt must close
    try:
        while True:
            started = time.perf_counter()
            if deadline is not None and time.time() >= deadline:
                log("timeout reached: no new trials")
                break
            with study_lock(locations.storage, cfg.study.name, engine):
                if heartbeats:
                    optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL + retry
                    tracker.close_orphans(study)
                trials = study.get_trials(deepcopy=False)
                done = sum(t.state in COUNTED for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                # ask() takes a WAITING trial (a retry) first, else samples a new one
                if done + running < target:
                    current = study.ask()
                    # lets `recover` tell a dead worker's trial from a live one
                    current.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
            if current is None:
                if done >= target or running == 0:
                    break
                time.sleep(1.0)  # others' trials may still fail and need replacing
                continue
            trial = current
            retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(
                storage.get_trial(trial._trial_id)
            )
            if retry_of is not None:
                log(f"trial {trial.number} retries trial {retry_of} with the same params")
            with heartbeat(storage, trial._trial_id, heartbeats):
                tags = {"retry_of": str(retry_of)} if retry_of is not None else {}
                outcome = run_trial(study, trial, cfg, tracker, log, data_cache, tags=tags)
            if outcome.state == TrialState.COMPLETE:
                study.tell(trial, outcome.value)
            else:
                study.tell(trial, state=outcome.state)
            current = None
            failures += outcome.state == TrialState.FAIL
            tracker.update_parent(study)
            stats.trials += 1
            stats.loop_seconds += time.perf_counter() - started
            stats.compute_seconds += trial.user_attrs.get("compute_seconds", 0.0)
            extra = f" ({outcome.reason})" if outcome.reason and outcome.state != TrialState.COMPLETE else ""
            value = f" value {outcome.value:.4f}" if outcome.value is not None else ""
            log(f"trial {trial.number} {outcome.state.name}{value}{extra} | {summarize(study)} of {target}")
            if failures >= max_failures:
                raise StudyError(f"{failures} trials failed in this worker; last reason: {outcome.reason}")
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # record it before anything else stops us
            signal.signal(sig, signal.SIG_IGN)
        if current is not None:
            _record_interrupted(study, current, tracker)
            log(f"trial {current.number} FAIL (interrupted) | {summarize(study)} of {target}")
        raise
    return stats


def _record_interrupted(study: optuna.Study, trial: optuna.Trial, tracker: StudyTracker) -> None:
    """FAIL with reason "interrupted", wherever in its life the trial was stopped.

    The interrupt may have cut a storage call in half and left its database session unusable:
    such a session is discarded and the call made again.
    """
    for attempt in range(3):
        try:
            if "fail_reason" not in trial.user_attrs:  # run_trial sets it when it saw the interrupt
                trial.set_user_attr("fail_reason", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            break
        except optuna.exceptions.UpdateFinishedTrialError:
            break
        except Exception:
            if attempt == 2:
                raise
            backend = getattr(study._storage, "_backend", study._storage)
            if hasattr(backend, "scoped_session"):
                backend.scoped_session.remove()
    with contextlib.suppress(Exception):
        tracker.close_orphans(study)  # its MLflow run, if one was left RUNNING


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`, a dying parent) stops like Ctrl-C: trial recorded, then exit.

    Ctrl-C is (re)armed too: a shell starts background jobs with SIGINT ignored, and a study
    launched from a script must still stop cleanly when its process group is interrupted.
    """

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _interrupt_when_parent_dies(parent: int) -> None:
    """A worker whose `launch` process is killed gets SIGTERM: it records its trial and stops.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere an orphaned worker finishes its trials.
    """
    stop_on_sigterm()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    cfg_dict: dict,
    source: str,
    locations: Locations,
    index: int,
    deadline: float | None,
    queue: Any,
    parent: int,
) -> None:
    """Entry point of a spawned worker process; its stats go back through ``queue``."""
    _interrupt_when_parent_dies(parent)
    cfg = parse_study(cfg_dict, source)
    prefix = f"[w{index}] "

    def log(msg: str) -> None:
        print(prefix + msg, flush=True)

    try:
        queue.put(dataclasses.asdict(worker_loop(cfg, locations, index, deadline, log)))
    except KeyboardInterrupt:
        sys.exit(130)
    except StudyError as exc:
        log(f"error: {exc}")
        sys.exit(1)


def launch(
    cfg: StudyConfig,
    locations: Locations,
    workers: int = 1,
    log: Log = print,
) -> LaunchResult:
    """Create or resume the study and run ``workers`` processes until it holds ``n_trials``."""
    quiet_libraries()
    prepare(locations)
    storage = open_storage(locations.storage, cfg)
    with study_lock(locations.storage, cfg.study.name, getattr(storage, "engine", None)):
        study = create_or_load(cfg, storage)
        tracker = open_tracker(cfg, locations)
        recover(study, tracker, log)
        tracker.ensure_parent_run(study, _study_params(cfg), cfg.to_dict())
    deadline = time.time() + cfg.study.timeout if cfg.study.timeout else None
    before = counts(study)
    log(
        f"study '{cfg.study.name}': {before['complete'] + before['pruned']} of {cfg.study.n_trials} "
        f"trials done; {workers} worker(s); storage {mask(locations.storage)}; "
        f"tracking {mask(locations.tracking_uri)}"
    )
    interrupted, failed_workers = False, 0
    stats: list[WorkerStats] = []
    try:
        if workers == 1:
            stats.append(worker_loop(cfg, locations, 0, deadline, log))
        else:
            failed_workers = _run_processes(cfg, locations, workers, deadline, stats)
    except KeyboardInterrupt:
        interrupted = True
    except StudyError as exc:
        log(f"error: {exc}")
        failed_workers = 1
    study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    recover(study, tracker, log)
    tracker.update_parent(study)
    status = "KILLED" if interrupted else ("FAILED" if failed_workers else "FINISHED")
    tracker.finish_parent_run(study, status)
    result = _result(study, interrupted)
    result.exit_code = 130 if interrupted else (1 if failed_workers else 0)
    result.workers = stats
    return result


def default_worker_index() -> int:
    """A per-process offset for the sampler seed of a worker started without --worker-index."""
    digest = hashlib.blake2b(f"{socket.gethostname()}:{os.getpid()}".encode(), digest_size=4).digest()
    return 1000 + int.from_bytes(digest, "big") % 1_000_000


def join(
    cfg: StudyConfig,
    locations: Locations,
    worker_index: int | None = None,
    log: Log = print,
) -> LaunchResult:
    """One worker of a (possibly distributed) study: create it if absent, then run trials.

    Workers on many machines share one Optuna RDB storage (PostgreSQL) and one MLflow server;
    the study, its MLflow experiment and its parent run are created once, under the study lock.
    The last worker to see the study complete marks the parent run FINISHED.
    """
    quiet_libraries()
    prepare(locations)
    index = default_worker_index() if worker_index is None else worker_index
    storage = open_storage(locations.storage, cfg)
    with study_lock(locations.storage, cfg.study.name, getattr(storage, "engine", None)):
        study = create_or_load(cfg, storage, index)
        tracker = open_tracker(cfg, locations)
        tracker.ensure_parent_run(study, _study_params(cfg), cfg.to_dict())
    deadline = time.time() + cfg.study.timeout if cfg.study.timeout else None
    log(
        f"worker {index} joined study '{cfg.study.name}' (sampler seed {cfg.study.seed + index}); "
        f"storage {mask(locations.storage)}; tracking {mask(locations.tracking_uri)}"
    )
    stats = worker_loop(cfg, locations, index, deadline, log)
    study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    tracker.update_parent(study)
    c = counts(study)
    if c["complete"] + c["pruned"] >= cfg.study.n_trials and c["running"] == 0:
        tracker.finish_parent_run(study, "FINISHED")
    result = _result(study, interrupted=False)
    result.workers = [stats]
    return result


def _run_processes(
    cfg: StudyConfig, locations: Locations, workers: int, deadline: float | None, stats: list[WorkerStats]
) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(cfg.to_dict(), cfg.source, locations, i, deadline, queue, os.getpid()),
            name=f"collatz-hpo-worker-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group; a SIGINT or SIGTERM sent to this process alone
        # is passed on as SIGTERM. Each worker records its running trial as interrupted, stops.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        # Workers that got the Ctrl-C themselves are already cleaning up (and ignore further
        # signals after their first instant); give them that instant before passing it on.
        deadline = time.time() + 1.0
        while time.time() < deadline and any(p.is_alive() for p in procs):
            time.sleep(0.05)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
        raise
    while not queue.empty():
        stats.append(WorkerStats(**queue.get()))
    return sum(p.exitcode not in (0, None) for p in procs)


def _study_params(cfg: StudyConfig) -> dict[str, Any]:
    s = cfg.study
    return {
        "study_name": s.name,
        "metric": s.metric,
        "direction": s.direction,
        "n_trials": s.n_trials,
        "sampler": s.sampler,
        "pruner": s.pruner.type,
        "seed": s.seed,
        "data_range": list(cfg.data.range),
        "train_size": cfg.data.train_size,
        "epochs": cfg.training.epochs,
    }


def _result(study: optuna.Study, interrupted: bool) -> LaunchResult:
    try:
        best = study.best_trial
    except ValueError:
        best = None
    return LaunchResult(
        study_name=study.study_name,
        counts=counts(study),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        best_params=best.user_attrs.get("params", best.params) if best else {},
        interrupted=interrupted,
    )
