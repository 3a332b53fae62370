"""The MLflow names collatz-hpo writes (``search.tracking.names``): each one's writer and reader agree."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from search import keys
from search.tracking import names


def _run(tags: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> SimpleNamespace:
    """What the client gives back: every tag and param a string."""
    data = {"tags": {k: str(v) for k, v in (tags or {}).items()}, "params": params or {}, "metrics": {}}
    return SimpleNamespace(data=SimpleNamespace(**data))


@pytest.mark.parametrize("prefix", [names.VAL_EXACT_MATCH, names.TEST_EXACT_MATCH])
@pytest.mark.parametrize(("k", "kp"), [(1, 1), (2, 13), (10, 1), (123, 45)])
def test_class_metric_names_round_trip(prefix: str, k: int, kp: int) -> None:
    name = names.class_metric(prefix, k, kp)
    assert name == f"{prefix}_k{k}_kp{kp}"
    assert names.parse_class_metric(name, prefix) == (k, kp)
    other = names.TEST_EXACT_MATCH if prefix == names.VAL_EXACT_MATCH else names.VAL_EXACT_MATCH
    assert names.parse_class_metric(name, other) is None
    assert names.parse_class_key(names.class_key(k, kp)) == (k, kp)


@pytest.mark.parametrize(
    "name", ["test_exact_match", "test_exact_match_k3", "test_exact_match_kp2", "val_exact_match_k1_kpx"]
)
def test_other_metrics_are_not_class_metrics(name: str) -> None:
    assert names.parse_class_metric(name, names.TEST_EXACT_MATCH) is None
    assert names.parse_class_metric(name, names.VAL_EXACT_MATCH) is None


def _test_metrics() -> dict[str, Any]:
    """``evaluate_test``'s result on three inputs (all right but 27)."""
    import torch

    from core import CollatzDataset, compute_collatz_metrics

    test = CollatzDataset.from_values([27, 97, 7], (1, 100), 10)
    targets = test.target_ids.long()
    preds = targets.clone()
    preds[0] = targets[1]
    metrics = compute_collatz_metrics(preds, targets, test.values, test.base)
    return {**metrics, "predictions": torch.zeros(3)}


def test_test_scalars_are_every_number_core_reports_in_its_order() -> None:
    test = _test_metrics()
    numbers = [k for k, v in test.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    assert list(names.TEST_SCALARS) == numbers


def test_every_shape_of_the_test_metrics_comes_from_one_flattening() -> None:
    test = _test_metrics()
    flat = names.flatten_test_metrics(test)
    scalars = names.scalar_metrics(test)
    assert scalars == {f"test_{k}": float(test[k]) for k in names.TEST_SCALARS}
    assert scalars.items() <= flat.items()
    by_class = {c: flat[n] for n in flat if (c := names.parse_class_metric(n, names.TEST_EXACT_MATCH))}
    assert by_class == {c: v["exact_match"] for c, v in test["by_class"].items()}
    assert {flat[f"test_exact_match_k{k}"] for k in test["by_k"]} <= set(flat.values())
    assert all(f"test_exact_match_kp{k}" in flat for k in test["by_k_prime"])
    # config.json's shape: the same scalars as they are, classes under "k,k′" keys
    as_json = names.metrics_json(test)
    assert names.scalar_metrics(as_json) == scalars  # what an export run logs
    assert as_json["num_samples"] == 3 and isinstance(as_json["num_samples"], int)
    assert {names.parse_class_key(c): v for c, v in as_json["by_class"].items()} == test["by_class"]
    assert as_json["by_k"] == {str(k): v for k, v in test["by_k"].items()}
    assert "predictions" not in as_json and "test_predictions" not in flat


def test_parent_summary_round_trip() -> None:
    counts = {"complete": 3, "pruned": 1, "fail": 2, "running": 0, "waiting": 0}
    summary = names.ParentSummary(counts, 4, "abc", {"lr": 0.01, "base": 24})
    tags = summary.to_tags()
    assert tags[names.BEST_TRIAL_TAG] == 4 and tags["best.lr"] == 0.01
    back = names.ParentSummary.of(_run(tags))
    stored = {"lr": "0.01", "base": "24"}  # as MLflow keeps tags
    assert back == names.ParentSummary({"complete": 3, "pruned": 1, "fail": 2}, 4, "abc", stored)
    empty = names.ParentSummary.of(_run(names.ParentSummary(counts).to_tags()))
    assert empty.best_trial is None and empty.best_run_id is None and empty.best_params == {}


def test_model_version_source_round_trip() -> None:
    source = names.ModelVersionSource("tiny", 3, "run", "export-run", 0.123456789)
    tags = source.to_tags()
    assert tags["test_exact_match"] == "0.123457"
    assert names.model_tags("tiny", 3).items() <= tags.items()
    back = names.ModelVersionSource.of(SimpleNamespace(tags=tags))
    assert back == names.ModelVersionSource("tiny", 3, "run", "export-run", 0.123457)


def test_model_version_source_with_its_held_out_figure_round_trip() -> None:
    from search.stats import wilson

    test = wilson(0.9731, 10_000)
    split = '{"range":[1,1048576],"train_size":500000,"val_size":2000,"test_size":10000,"seed":0}'
    tags = names.ModelVersionSource("cpu_hour", 3, "run", "export-run", 0.9731, test, split).to_tags()
    assert tags["test_size"] == "10000" and tags["test_split"] == split
    back = names.ModelVersionSource.of(SimpleNamespace(tags=tags))
    assert back.test is not None and back.test.n == 10_000
    assert (back.test.low, back.test.high) == (
        pytest.approx(test.low, abs=1e-6),
        pytest.approx(test.high, abs=1e-6),
    )
    assert back.test_split == split


def test_best_figures_round_trip() -> None:
    from search.stats import wilson

    figures = names.BestFigures(wilson(0.9747, 2000), wilson(0.9731, 10_000))
    metrics = {names.BEST_VALUE_METRIC: 0.9747, **figures.to_metrics()}
    run = _run(figures.to_tags())
    run.data.metrics = metrics
    assert names.BestFigures.of(run) == figures
    assert run.data.tags["best_figures"] == f"objective {figures.value}; held-out exact match {figures.test}"
    assert names.BestFigures.of(_run()) == names.BestFigures(None, None)


@pytest.mark.parametrize(("direction", "ascending"), [("minimize", True), ("maximize", False)])
def test_objective_params_round_trip(direction: str, ascending: bool) -> None:
    run = _run(params=names.objective_params("val_loss", direction))
    assert names.objective(run) == ("val_loss", ascending)
    assert names.objective(_run()) == (None, False)


def test_run_filters_spell_the_tags() -> None:
    from search.servers import TRIALS_FILTER

    assert TRIALS_FILTER == "tags.`collatz_hpo.role` = 'trial'" == names.role_filter(names.TRIAL_ROLE)
    assert names.token_filter("t0") == "tags.`collatz_hpo.create_token` = 't0'"


def test_mlflow_names_live_in_names_only() -> None:
    """keys.py keeps the Optuna user attributes; the MLflow tags moved to names."""
    assert not [n for n in vars(keys) if n.endswith("_TAG")]
    assert names.checkpoint_path() == f"{names.CHECKPOINT_ARTIFACTS}/best.pt"
