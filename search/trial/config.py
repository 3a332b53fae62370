"""The RunConfig a trial trains with: the study file's data and training sections + its sampled
params; a final run's is a trial's trained for a time budget (``[final]``).

A final run is a trial marked by its user attributes (``keys.final_user_attrs``), so whoever runs
it (the launching process, or a worker that retries it) and ``train --from-trial`` read the same
config from it: ``config_of``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search import keys
from search.spec.runconfig import RunConfig
from search.spec.study_file import StudyConfig, parse_study

__all__ = ["config_of", "final_run_config", "run_config_for", "trial_run_config"]


def run_config_for(cfg: StudyConfig, params: dict[str, Any], trial_number: int) -> RunConfig:
    """The frozen config of one trial: the study's data and training sections + sampled params.

    Every field comes from the study file (``params`` holds every ``[search]`` parameter that
    is set); ``[training] seconds``, when given, is each trial's time budget (else epochs and
    the study's timeout bound it).
    """
    t, d = cfg.training, cfg.data
    study_fields: dict[str, Any] = {
        "data_range": tuple(d.range),
        "train_size": d.train_size,
        "val_size": d.val_size,
        "test_size": d.test_size,
        "data_seed": d.seed,
        "batch_size": t.batch_size,
        "eval_batch_size": t.eval_batch_size,
        "epochs": t.epochs,
        "samples_per_epoch": t.samples_per_epoch,
        "early_stopping_patience": t.early_stopping_patience,
        "monitor": cfg.study.metric,
        "monitor_mode": "max" if cfg.study.direction == "maximize" else "min",
        "optimizer": t.optimizer,
        "weight_decay": t.weight_decay,
        "scheduler": t.scheduler,
        "warmup": t.warmup,
        "lr_floor": t.lr_floor,
        "balance": t.balance,
        "ema_decay": t.ema_decay,
        "label_smoothing": t.label_smoothing,
        "max_grad_norm": t.max_grad_norm,
        "time_budget": t.seconds,
        "seed": cfg.study.seed + trial_number,
        "device": t.device,
        "precision": t.precision,
        "threads": t.threads,
    }
    return RunConfig(**{**study_fields, **params})


def final_run_config(
    cfg: StudyConfig,
    params: dict[str, Any],
    trial_number: int,
    seconds: float,
    init_from: str | None = None,
) -> RunConfig:
    """The final run's config: a trial's, trained for ``seconds`` with ``[final]``'s threads and
    epoch bound, no early stopping (its schedule is planned over that budget), from the
    checkpoint ``init_from`` when ``[final] init`` chose one."""
    assert cfg.final is not None
    return dataclasses.replace(
        run_config_for(cfg, params, trial_number),
        time_budget=seconds,
        threads=cfg.final.threads,
        epochs=cfg.final.epochs,
        early_stopping_patience=None,
        init_from=init_from,
    )


def config_of(cfg: StudyConfig, trial: FrozenTrial | optuna.Trial, params: dict[str, Any]) -> RunConfig:
    """The RunConfig ``trial`` trains with ``params``: a final run's when it is marked as one."""
    # a retry trains as the trial it retries (its seed: the same batches, the same run)
    number = keys.first_attempt(trial)
    seconds = keys.final_seconds(trial)
    if seconds is None:
        return run_config_for(cfg, params, number)
    return final_run_config(cfg, params, number, seconds, keys.final_init_from(trial))


def trial_run_config(study: optuna.Study, number: int | None = None) -> RunConfig:
    """The RunConfig trial ``number`` (default: the best) of ``study`` trained with."""
    trial = keys.require_completed(study) if number is None else _trial(study, number)
    saved = keys.study_config(study)
    if saved is None:
        raise ValueError(f"study '{study.study_name}' was not made by collatz-hpo (no study config)")
    cfg = parse_study(saved, source=f"study '{study.study_name}'")
    return config_of(cfg, trial, keys.trial_params(trial))


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            if not keys.trial_params(t):
                raise ValueError(f"trial {number} of study '{study.study_name}' has no params yet")
            return t
    raise ValueError(f"study '{study.study_name}' has no trial {number}")
