"""What each trial's MLflow run records beyond metrics: its data as dataset inputs, and the
machine's CPU and memory use as MLflow system metrics (switchable in the study file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SPLITS = {"train": 300, "validation": 64, "test": 64}


@dataclass
class Stores:
    first: Any  # conftest's Store of study "rec": two trials, system metrics every 0.2 s
    other: Any  # of study "rec": the same but for the data seed; system metrics off


def _study(hpo: Any, n_trials: int, data_seed: int, system_metrics: float) -> str:
    text = hpo.study_toml("rec", n_trials=n_trials, epochs=2, base="16", pruner='type = "none"')
    text = text.replace("test_size = 64\nseed = 0", f"test_size = 64\nseed = {data_seed}")
    text = text.replace("threads = 1\n", f"threads = 1\nsystem_metrics = {system_metrics}\n")
    assert f"seed = {data_seed}\n\n[training]" in text and "system_metrics" in text
    return text


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, hpo: Any) -> Stores:
    """Both studies launched side by side (their start-up, mostly imports, overlaps)."""
    roots: list[Path] = [tmp_path_factory.mktemp("records"), tmp_path_factory.mktemp("records-seed1")]
    hpo.write_study(roots[0], _study(hpo, 2, data_seed=0, system_metrics=0.2), "rec.toml")
    hpo.write_study(roots[1], _study(hpo, 1, data_seed=1, system_metrics=0), "rec.toml")
    launches = [hpo.Background(["launch", "rec.toml"], root) for root in roots]
    for bg in launches:
        assert bg.wait(timeout=300) == 0, bg.output
    return Stores(hpo.Store(roots[0]), hpo.Store(roots[1]))


def _inputs(run: Any) -> dict[str, Any]:
    """Context (train/validation/test) → the run's dataset of that split."""
    out = {}
    for di in run.inputs.dataset_inputs:
        (context,) = [t.value for t in di.tags if t.key == "mlflow.data.context"]
        out[context] = di.dataset
    return out


def test_trials_of_one_study_record_the_same_data_with_the_same_digests(stores: Stores) -> None:
    trials = stores.first.child_runs("rec")
    assert len(trials) == 2
    first, second = (_inputs(run) for run in trials)
    assert set(first) == set(SPLITS)
    assert {c: d.digest for c, d in first.items()} == {c: d.digest for c, d in second.items()}
    assert len({d.digest for d in first.values()}) == 3  # each split is its own dataset
    for context, dataset in first.items():
        split = {"validation": "val"}.get(context, context)
        assert dataset.name == f"collatz-{split}-b16"
        assert json.loads(dataset.profile)["num_rows"] == SPLITS[context]
        assert [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]] == [
            "n",
            "kappa",
            "k",
            "k_prime",
        ]
        source = json.loads(dataset.source)["tags"]
        assert (source["range"], source["seed"], source["base"], source["split"]) == ([1, 4096], 0, 16, split)
    (parent,) = stores.first.parent_runs("rec")  # the study's data, recorded once
    assert {c: d.digest for c, d in _inputs(parent).items()} == {c: d.digest for c, d in first.items()}
    assert len(parent.inputs.dataset_inputs) == 3


def test_search_runs_tells_trials_that_saw_other_data(stores: Stores) -> None:
    (changed_run,) = stores.other.child_runs("rec")
    changed = _inputs(changed_run)
    original = _inputs(stores.first.child_runs("rec")[0])
    for context in SPLITS:
        assert changed[context].digest != original[context].digest, context
    digest = f"dataset.digest = '{original['train'].digest}'"
    for store, expected in ((stores.first, ["study-rec", "trial-0", "trial-1"]), (stores.other, [])):
        exp = store.client().get_experiment_by_name("rec").experiment_id
        found = store.client().search_runs([exp], filter_string=digest)
        assert sorted(r.info.run_name for r in found) == expected


def test_trial_runs_record_system_metrics_unless_switched_off(stores: Stores) -> None:
    client = stores.first.client()
    for run in stores.first.child_runs("rec"):
        for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
            history = client.get_metric_history(run.info.run_id, key)
            assert history, (run.info.run_name, key)
            assert all(m.value >= 0 for m in history)
            assert sorted(m.step for m in history) == list(range(len(history)))  # step = sample
        memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
        assert all(m.value > 100 for m in memory)  # megabytes in use: a real reading, not a zero
    (off,) = stores.other.child_runs("rec")
    assert not [k for k in off.data.metrics if k.startswith("system/")]
