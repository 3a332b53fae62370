"""From a study's search space to one trial's hyperparameters (define-by-run for Optuna).

``nhead`` is only ever proposed among the values that divide the sampled ``d_model``. When
the valid heads differ between ``d_model`` values, Optuna needs a distinct parameter per
value space (a categorical's choices cannot change under one name), so the parameter is
named ``nhead_d<d_model>``; the real ``nhead`` is always in the returned dict.
"""

from __future__ import annotations

from typing import Any

import optuna

from search.spec.params import Categorical, Fixed, FloatRange, IntRange, Param
from search.spec.sections import SearchSpace

__all__ = ["grid_search_space", "nhead_param_name", "suggest"]


def _suggest_one(trial: optuna.Trial, name: str, param: Param) -> Any:
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Categorical):
        return trial.suggest_categorical(name, list(param.choices))
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, FloatRange):
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    raise TypeError(f"unknown parameter type {type(param).__name__} for {name}")


def _d_model_values(space: SearchSpace) -> tuple[int, ...]:
    return space.d_model.values if isinstance(space.d_model, Fixed | Categorical) else ()


def nhead_param_name(space: SearchSpace, d_model: int) -> str:
    """``nhead`` when every d_model admits the same heads, else ``nhead_d<d_model>``."""
    lists = {tuple(space.valid_nheads(d)) for d in _d_model_values(space)}
    return "nhead" if len(lists) <= 1 else f"nhead_d{d_model}"


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Sample (or take fixed) every parameter; returns the resolved values by real name."""
    params: dict[str, Any] = {}
    for name, param in space.params().items():
        if name != "nhead":
            params[name] = _suggest_one(trial, name, param)
    d_model = params["d_model"]
    valid = space.valid_nheads(d_model)
    if isinstance(space.nhead, Fixed):
        params["nhead"] = space.nhead.value
    else:
        params["nhead"] = trial.suggest_categorical(nhead_param_name(space, d_model), valid)
    return params


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The full grid for ``GridSampler``: every searched parameter must be categorical."""
    grid: dict[str, list[Any]] = {}
    for name, param in space.searched().items():
        if not isinstance(param, Categorical):
            raise ValueError(f"grid sampler needs choices for search.{name}")
        grid[name] = list(param.choices)
    if "nhead" in grid:
        if any(nhead_param_name(space, d) != "nhead" for d in _d_model_values(space)):
            raise ValueError("grid sampler needs nhead choices that divide every d_model")
        grid["nhead"] = space.valid_nheads(_d_model_values(space)[0])
    return grid
