"""The study's final run (``[final]``): once the search is over, ``launch`` trains the best
configuration for a time budget, once per study, from scratch or from its best checkpoint. With
seed replicates (``[confirm]``) that is the winner by mean (``study.leaders.winner``), from the
checkpoint of its best seed.

The final run is a trial like the others (enqueued with the best params, taken by its number,
run by the worker), marked by its user attributes (``keys.final_user_attrs``); the trial package reads its
config from them (``trial.config.config_of``) and does not prune it.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.events import Log
from search.spec.study_file import StudyConfig
from search.study.leaders import enqueue_and_claim, winner
from search.study.workers import Worker
from search.tracking.runs import checkpoint_uri
from search.trial.body import TrialOutcome

__all__ = ["FINAL_TEST_RESERVE", "final_seconds", "run_final"]

FINAL_TEST_RESERVE = 60.0  # seconds left at the end of [final] end_at for the test evaluation


def final_seconds(cfg: StudyConfig, started: float) -> float:
    """The final run's training budget: ``[final] seconds``, or what is left until ``end_at``
    (counted from ``started``, when the launch began)."""
    assert cfg.final is not None
    if cfg.final.seconds is not None:
        return cfg.final.seconds
    assert cfg.final.end_at is not None
    return max(60.0, cfg.final.end_at - (time.time() - started) - FINAL_TEST_RESERVE)


def run_final(worker: Worker, started: float) -> TrialOutcome | None:
    """The study's final run by ``worker``: its best configuration trained for ``final_seconds``
    (None: the study has one already, or no complete trial to train)."""
    opened, log = worker.opened, worker.log
    seconds = final_seconds(opened.cfg, started)
    study = opened.study
    trials = study.get_trials(deepcopy=False)
    if any(keys.final_seconds(t) is not None and t.state == TrialState.COMPLETE for t in trials):
        return None
    best = _chosen(study, log)
    if best is None:
        log("final run skipped: no complete trial")
        return None
    init_from = _init_from(opened.cfg, best)
    start = f"from its best checkpoint ({init_from})" if init_from else "from scratch"
    log(f"final run: the configuration of trial {best.number} for {seconds:.0f}s, {start}")
    with opened.lock():  # taken by number: a queued replicate or grid point is not the final run
        trial = enqueue_and_claim(opened, best.params, keys.final_user_attrs(best, seconds, init_from))
        keys.mark_worker(trial)
    return worker.run_asked(trial)


def _chosen(study: optuna.Study, log: Log) -> FrozenTrial | None:
    """The trial whose configuration (and checkpoint) the final run trains: the best seed of the
    winner by mean when the study has seed replicates (``[confirm]``), else the best trial."""
    won = winner(study)
    if won is None:
        return keys.best_trial(study)
    best = won.best_seed()
    log(f"final run: the {won.announce()}, from its best seed, trial {best.number} ({best.value:.4f})")
    return best


def _init_from(cfg: StudyConfig, best: FrozenTrial) -> str | None:
    """The checkpoint the final run starts from: the best trial's, when ``[final] init`` says so."""
    if cfg.final is None or cfg.final.init != "best_trial":
        return None
    run_id = keys.run_id(best)
    return checkpoint_uri(run_id) if run_id is not None else None
