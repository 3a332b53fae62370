"""The Optuna sampler and pruner a study file asks for, and the grid of a grid study."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import optuna

from search import keys
from search.space import grid_search_space

if TYPE_CHECKING:
    from search.config import StudyConfig

__all__ = ["enqueue_grid", "make_pruner", "make_sampler"]


def make_sampler(cfg: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler; seeded ``seed + worker_index``: distinct per worker, reproducible for one."""
    seed = cfg.study.seed + worker_index
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
