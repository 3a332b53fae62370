"""The Optuna sampler and pruner a study file asks for, and the trials it enqueues first: the grid
of a grid study, the best trials of an earlier study (warm start)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from search import keys
from search.errors import StudyError
from search.spec.space import grid_search_space, nhead_param_name
from search.spec.study_file import Categorical, Fixed, FloatRange, IntRange, Param, SearchSpace
from search.study.strata import StratifiedPruner, StratifiedSampler, strata

if TYPE_CHECKING:
    from search.spec.study_file import StudyConfig

__all__ = ["enqueue_grid", "enqueue_warm_start", "make_pruner", "make_sampler", "transfer_params"]


def make_sampler(cfg: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler; seeded ``seed + worker_index``: distinct per worker, reproducible for one.
    A stratified study's sampler learns from the trials of each value apart (``search.study.strata``)."""
    sampler = _sampler(cfg, cfg.study.seed + worker_index)
    name = cfg.study.stratify
    return StratifiedSampler(sampler, name) if name is not None else sampler


def _sampler(cfg: StudyConfig, seed: int) -> optuna.samplers.BaseSampler:
    kind = cfg.study.sampler
    if kind == "tpe":
        # TPE starts on a third of the trials it learns from (a stratified study's: one value's)
        trials = cfg.study.n_trials // len(strata(cfg) or [None])
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(1, trials // 3)))
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


def make_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner; a stratified study's compares a trial with its own value's trials only."""
    pruner = _pruner(cfg)
    name = cfg.study.stratify
    if name is None or isinstance(pruner, optuna.pruners.NopPruner):
        return pruner
    return StratifiedPruner(pruner, name)


def _pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
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
        max_resource = cfg.training.epochs
        if p.unit == "samples":
            max_resource *= cfg.training.samples_per_epoch or cfg.data.train_size
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=max_resource, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def enqueue_grid(study: optuna.Study, cfg: StudyConfig) -> int:
    """Enqueue every grid point once (call under the study lock); returns how many were added."""
    if cfg.study.sampler != "grid" or study.user_attrs.get(keys.GRID_ATTR):
        return 0
    grid = grid_search_space(cfg.search)
    names = list(grid)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]
    for params in points:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(keys.GRID_ATTR, len(points))
    return len(points)


def enqueue_warm_start(
    study: optuna.Study, storage: optuna.storages.BaseStorage, cfg: StudyConfig, log: Callable[[str], None]
) -> int:
    """Enqueue the ``top_k`` best COMPLETE trials of ``study.warm_start.study`` (same storage),
    adapted to this study's space; returns how many were enqueued (call once, under the lock).

    Each searched parameter of this space takes the earlier trial's value when it lies inside
    this space (else the trial is skipped, with a note naming the parameter); parameters the
    earlier study did not have are left to the sampler; fixed ones are this study's.
    """
    ws = cfg.study.warm_start
    if ws is None:
        return 0
    try:
        source = optuna.load_study(study_name=ws.study, storage=storage)
    except KeyError:
        raise StudyError(f"study.warm_start: no study named '{ws.study}' in this storage") from None
    complete = [t for t in source.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    reverse = keys.maximized(source)
    best = sorted(complete, key=lambda t: t.value, reverse=reverse)[: ws.top_k]
    enqueued = 0
    for t in best:
        params, problem = transfer_params(keys.trial_params(t), cfg.search)
        if problem is not None:
            log(f"warm start: trial {t.number} of '{ws.study}' skipped: {problem}")
            continue
        study.enqueue_trial(params, user_attrs={keys.WARM_START_ATTR: f"{ws.study}:{t.number}"})
        enqueued += 1
    log(f"warm start: enqueued {enqueued} of the {len(best)} best trials of '{ws.study}'")
    return enqueued


def transfer_params(old: dict[str, Any], space: SearchSpace) -> tuple[dict[str, Any], str | None]:
    """An earlier trial's params as Optuna params of ``space`` (``nhead`` under its per-d_model
    name), or the reason they do not fit it."""
    out: dict[str, Any] = {}
    for name, param in space.searched().items():
        if name == "nhead" or name not in old:
            continue
        if not contains(param, old[name]):
            return {}, f"{name} = {old[name]!r} is outside this study's {name}"
        out[name] = old[name]
    d_model = out.get("d_model", old.get("d_model"))
    if not isinstance(space.nhead, Fixed) and "nhead" in old and d_model is not None:
        if old["nhead"] not in space.valid_nheads(d_model):
            return {}, f"nhead = {old['nhead']!r} is not among this study's heads for d_model {d_model}"
        out[nhead_param_name(space, d_model)] = old["nhead"]
    return out, None


def contains(param: Param, value: Any) -> bool:
    """Whether a searched parameter can take ``value``."""
    if isinstance(param, Categorical):
        return value in param.choices
    if isinstance(param, IntRange | FloatRange):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not param.low <= value <= param.high:
            return False
        step = param.step
        return not step or math.isclose((value - param.low) / step, round((value - param.low) / step))
    return value == param.value
