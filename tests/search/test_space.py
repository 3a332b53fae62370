"""The search space seen by Optuna: valid (d_model, nhead) pairs only, grids, samplers, pruners."""

from __future__ import annotations

import itertools
import random
from typing import Any

import optuna
import pytest

from search.spec.space import grid_search_space, nhead_param_name, suggest
from search.spec.study_file import StudyConfig, parse_study
from search.study.samplers import enqueue_grid, make_pruner, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def config(study: dict[str, Any] | None = None, **search: Any) -> StudyConfig:
    """A valid study whose [search] is the tiny one updated with ``search``."""
    space = {
        "base": {"choices": [16, 24, 32]},
        "d_model": {"choices": [16, 32]},
        "nhead": {"choices": [2, 4, 3]},
        "num_layers": {"low": 1, "high": 2},
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        **search,
    }
    return parse_study(
        {
            "study": {"name": "space", "n_trials": 6, **(study or {})},
            "data": {"range": [1, 4096], "train_size": 100, "val_size": 20, "test_size": 20},
            "training": {"epochs": 4},
            "search": space,
        }
    )


MIXED = {"d_model": {"choices": [16, 24, 32, 48]}, "nhead": {"choices": [2, 3, 4, 5, 6, 8]}}


def _sample(space: Any, sampler: optuna.samplers.BaseSampler, n: int) -> list[tuple[dict, dict]]:
    """``n`` ask/suggest/tell rounds; returns (real params, Optuna's params) per trial."""
    study = optuna.create_study(sampler=sampler, direction="maximize")
    rng = random.Random(0)
    out = []
    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, space)
        study.tell(trial, rng.random())
        out.append((params, dict(trial.params)))
    return out


@pytest.mark.parametrize(
    ("sampler", "n"),
    [(lambda: optuna.samplers.RandomSampler(seed=1), 300), (lambda: optuna.samplers.TPESampler(seed=1), 60)],
    ids=["random", "tpe"],
)
def test_suggest_only_proposes_heads_that_divide_d_model(sampler: Any, n: int) -> None:
    space = config(**MIXED).search
    samples = _sample(space, sampler(), n)
    pairs = set()
    for params, _ in samples:
        assert params["d_model"] % params["nhead"] == 0, params
        assert params["nhead"] in MIXED["nhead"]["choices"]
        pairs.add((params["d_model"], params["nhead"]))
    assert 5 not in {h for _, h in pairs}  # divides no d_model: never proposed
    if n >= 300:  # the random sampler covers every valid pair
        valid = {(d, h) for d in (16, 24, 32, 48) for h in (2, 3, 4, 6, 8) if d % h == 0}
        assert pairs == valid


def test_tiny_space_never_proposes_nhead_3() -> None:
    space = config().search
    for params, raw in _sample(space, optuna.samplers.RandomSampler(seed=0), 100):
        assert params["nhead"] in (2, 4)
        assert raw["nhead"] == params["nhead"]  # same valid heads for every d_model: one name
        assert set(raw) == {"base", "d_model", "nhead", "num_layers", "lr"}


def test_heads_differing_per_d_model_get_one_parameter_per_d_model() -> None:
    space = config(d_model={"choices": [16, 24]}, nhead={"choices": [3, 4]}).search
    assert nhead_param_name(space, 16) == "nhead_d16"
    assert nhead_param_name(space, 24) == "nhead_d24"
    seen = set()
    for params, raw in _sample(space, optuna.samplers.RandomSampler(seed=0), 60):
        d = params["d_model"]
        assert "nhead" not in raw
        assert raw[f"nhead_d{d}"] == params["nhead"]
        assert not [k for k in raw if k.startswith("nhead_d") and k != f"nhead_d{d}"]
        if d == 16:
            assert params["nhead"] == 4
        seen.add((d, params["nhead"]))
    assert seen == {(16, 4), (24, 3), (24, 4)}


def test_same_heads_for_every_d_model_keeps_the_name_nhead() -> None:
    space = config().search
    assert nhead_param_name(space, 16) == nhead_param_name(space, 32) == "nhead"


def test_fixed_values_are_returned_but_not_sampled() -> None:
    space = config(nhead=4, dropout=0.1, base=24).search
    for params, raw in _sample(space, optuna.samplers.RandomSampler(seed=0), 10):
        assert params["nhead"] == 4 and params["dropout"] == 0.1 and params["base"] == 24
        assert not {"nhead", "dropout", "base"} & set(raw)


CATEGORICAL = {
    "base": {"choices": [16, 24]},
    "d_model": {"choices": [16, 32]},
    "nhead": {"choices": [2, 4, 3]},
    "num_layers": {"choices": [1, 2]},
    "lr": 1e-3,
}


def test_grid_search_space_of_a_categorical_space() -> None:
    space = config(**CATEGORICAL).search
    grid = grid_search_space(space)
    assert grid == {"base": [16, 24], "d_model": [16, 32], "nhead": [2, 4], "num_layers": [1, 2]}


def test_grid_is_enqueued_once_and_every_valid_combination_runs_once() -> None:
    cfg = config({"sampler": "grid"}, **CATEGORICAL)
    study = optuna.create_study(sampler=make_sampler(cfg))
    expected = set(itertools.product([16, 24], [16, 32], [2, 4], [1, 2]))
    assert enqueue_grid(study, cfg) == len(expected)
    assert enqueue_grid(study, cfg) == 0  # a resumed or joined study does not enqueue again
    combos = []
    for _ in range(len(expected)):  # the workers' ask-and-tell loop
        trial = study.ask()
        p = suggest(trial, cfg.search)
        combos.append((p["base"], p["d_model"], p["nhead"], p["num_layers"]))
        study.tell(trial, 0.0)
    assert len(combos) == len(expected)
    assert set(combos) == expected


def test_grid_search_space_refuses_ranges_and_per_d_model_heads() -> None:
    ranged = config(**{**CATEGORICAL, "num_layers": {"low": 1, "high": 2}}).search
    with pytest.raises(ValueError, match="num_layers"):
        grid_search_space(ranged)
    per_d_model = config(**{**CATEGORICAL, "nhead": {"choices": [3, 4]}, "d_model": {"choices": [16, 24]}})
    with pytest.raises(ValueError, match="nhead"):
        grid_search_space(per_d_model.search)


# --- samplers and pruners from the study file ---------------------------------------------------

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "grid": optuna.samplers.RandomSampler,  # the grid itself is enqueued, see enqueue_grid
}


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_samplers_construct_from_config(kind: str) -> None:
    search = CATEGORICAL if kind == "grid" else {}
    cfg = config({"sampler": kind}, **search)
    sampler = make_sampler(cfg)
    assert isinstance(sampler, SAMPLERS[kind])
    # and they sample valid trials of the space
    for params, _ in _sample(cfg.search, sampler, 3):
        assert params["d_model"] % params["nhead"] == 0


def test_sampler_seed_is_reproducible_and_distinct_per_worker() -> None:
    cfg = config({"sampler": "random", "seed": 7})
    a = [p for p, _ in _sample(cfg.search, make_sampler(cfg), 5)]
    b = [p for p, _ in _sample(cfg.search, make_sampler(cfg), 5)]
    c = [p for p, _ in _sample(cfg.search, make_sampler(cfg, worker_index=1), 5)]
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ({"type": "median", "n_startup_trials": 3, "n_warmup_steps": 2}, optuna.pruners.MedianPruner),
        ({"type": "successive_halving", "min_resource": 1}, optuna.pruners.SuccessiveHalvingPruner),
        ({"type": "hyperband", "reduction_factor": 2}, optuna.pruners.HyperbandPruner),
        ({"type": "none"}, optuna.pruners.NopPruner),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_pruners_construct_from_config(pruner: dict[str, Any], cls: type) -> None:
    cfg = config({"pruner": pruner})
    built = make_pruner(cfg)
    assert isinstance(built, cls)
    if pruner["type"] == "median":
        assert built._n_startup_trials == 3
        assert built._n_warmup_steps == 2
    # the pruner answers for a running trial of a study that uses it
    study = optuna.create_study(direction="maximize", pruner=built)
    trial = study.ask()
    trial.report(0.5, 1)
    assert trial.should_prune() in (True, False)
