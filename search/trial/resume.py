"""A retried trial goes on from the latest checkpoint its failed trial uploaded.

Retried are the trials stopped through no fault of their own: a worker gone silent (stale
heartbeat: SIGKILL, a lost machine), a dead local worker that ``recover`` finds, an interrupt
(Ctrl-C, SIGTERM: a scheduler's requeue or preemption). Not a trial that failed by itself (NaN
loss, out of memory, a full disk): it would fail again.

One mechanism: Optuna's ``RetryHeartbeatStaleTrialCallback`` enqueues a WAITING copy of the failed
trial (params, distributions, user attrs, system attr ``failed_trial``), which the next worker
asks for. Optuna calls it for stale trials (``open_storage`` passes it to the storage);
``enqueue_retries`` calls it for the trials marked ``keys.RETRY_ATTR`` when a worker next asks
for a trial (an interrupted launch leaves its FAIL trial alone until the study runs again).
``RetryFromCheckpoint`` hands Optuna the failed trial without what belongs to its attempt (worker,
fail reason, cost: ``keys.ATTEMPT_ATTRS``), with the pruner's intermediate values: rungs compare
the right steps, and the epochs the retry trains again after its checkpoint report steps Optuna
already holds (it keeps the first value; training is deterministic, so they are the same).

What the retry does (``resume``): it fetches the checkpoints its failed trial uploaded (``last.pt``,
then ``best.pt`` as the fallback), copies the failed run's metrics up to the checkpoint's epoch into
its own new MLflow run (tagged ``retry_of``, ``resumed_from_run``, ``resumed_at_epoch``: one run per
Optuna trial, each run's curves whole, no step logged twice) and trains on from the checkpoint:
same params, model, optimizer and schedule state, epoch, RNG, data order (batches are seeded per
epoch). Its ``compute_seconds`` are what it computed itself; what it took over is ``resumed_from``.
A checkpoint that cannot be fetched or read is named in the log and the next one tried, then the
start.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.events import Log
from search.tracking.names import RESUMED_EPOCH_TAG, RESUMED_FROM_TAG
from search.tracking.resumed import copy_history, download_checkpoints
from search.trial.body import TrialEnv

__all__ = ["CANDIDATES", "RetryFromCheckpoint", "carried_over", "enqueue_retries", "resume"]

CANDIDATES = ("last.pt", "best.pt")  # what a retry fetches, in the order it tries them


class RetryFromCheckpoint(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial (at most ``max_retry`` per original trial), carrying over
    what the retry resumes from (``carried_over``)."""

    def __init__(self, max_retry: int | None) -> None:
        super().__init__(max_retry=max_retry, inherit_intermediate_values=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().__call__(study, carried_over(trial))


def carried_over(trial: FrozenTrial) -> FrozenTrial:
    """``trial`` as its retry starts: without its attempt's user attrs, naming its first attempt
    (whose seed the retry trains with). Its intermediate values come along (all of them: the
    retry goes on from a checkpoint at or before its last report, and Optuna keeps a step's
    first value when a step is reported again)."""
    out = copy.deepcopy(trial)
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in keys.ATTEMPT_ATTRS}
    out.user_attrs = {**attrs, keys.FIRST_ATTEMPT_ATTR: keys.first_attempt(trial)}
    return out


def enqueue_retries(study: optuna.Study, max_retries: int) -> None:
    """Retry the FAIL trials marked for it that have no retry yet (under the study lock). The
    final run is not among them: ``launch`` runs it once the search is over."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    retry = RetryFromCheckpoint(max_retries)
    for t in trials:
        final = keys.final_seconds(t) is not None
        if t.state == TrialState.FAIL and keys.wants_retry(t) and t.number not in retried and not final:
            retry(study, copy.deepcopy(t))


def resume(
    trial: optuna.Trial, env: TrialEnv, run_id: str, folder: Path, retry_of: str | None = None
) -> Path | None:
    """The checkpoint a retried trial trains on from, fetched into ``folder``, its failed run's
    metrics up to it copied into run ``run_id``; None: train from the start (not a retry, nothing
    uploaded, nothing readable: said in the log)."""
    at, name = keys.checkpoint(trial), f"trial {trial.number}"
    if at is None:
        if retry_of is not None:
            env.log(f"{name}: trial {retry_of} uploaded no checkpoint: training from the start")
        return None
    files, missing = download_checkpoints(env.tracker, at.run_id, CANDIDATES, folder)
    for line in missing:
        env.log(f"{name}: checkpoint of trial {at.trial} not fetched: {line}")
    found = _first_readable(files, env.log, name)
    if found is None:
        env.log(f"{name}: no readable checkpoint of trial {at.trial}: training from the start")
        return None
    path, ckpt = found
    epoch = int(ckpt["epoch"])
    copy_history(env.tracker, at.run_id, run_id, epoch)
    env.tracker.set_tags(run_id, {RESUMED_FROM_TAG: at.run_id, RESUMED_EPOCH_TAG: epoch})
    seconds, steps = float(ckpt.get("elapsed_seconds", 0.0)), int(ckpt.get("global_step", 0))
    keys.set_resumed(trial, keys.Resumed(at.trial, at.run_id, epoch, round(seconds, 3), steps))
    env.log(f"{name} resumes trial {at.trial} after epoch {epoch} ({path.name}, {seconds:.0f}s trained)")
    return path


def _first_readable(files: list[Path], log: Log, name: str) -> tuple[Path, dict[str, Any]] | None:
    """The first checkpoint of ``files`` that reads, with its contents. Unreadable ones are named
    in the log and removed: neither the trainer nor the test evaluation (``best.pt``) meets them."""
    from core import CheckpointError, load_checkpoint

    found = None
    for path in files:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:
            log(f"{name}: {exc}: not used")
            path.unlink(missing_ok=True)
            continue
        found = found or (path, ckpt)
    return found
