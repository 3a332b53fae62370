"""Riding out a tracking outage: what is retried, for how long, and that retrying writes nothing
twice (real MLflow stores; the outage itself is a closed port or a response lost on the way
back). The whole scenario, a server stopped mid-study, is a row of benchmarks/fault_matrix.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from outage_helpers import drop_first_call
from server_helpers import free_port

from search.tracking.client import ResilientClient, TrackingUnavailable, is_transient
from search.tracking.names import CHECKPOINT_ARTIFACTS, CREATE_TOKEN_TAG


@pytest.fixture(scope="module")
def shared(exported_tiny: Any) -> ResilientClient:
    """A ResilientClient on the embedded (sqlite) MLflow store of the suite's shared exported study
    (a fresh store costs seconds; the experiments made here leave that study's runs alone)."""
    return ResilientClient(exported_tiny.store.mlflow_url, window=5)


@pytest.fixture
def store(shared: ResilientClient, request: pytest.FixtureRequest) -> ResilientClient:
    """The shared client with an experiment "e" of this test's own (renamed: names are unique)."""
    for exp in shared.search_experiments():
        if exp.name == "e":
            shared.rename_experiment(exp.experiment_id, f"outage-test-{exp.experiment_id}")
    shared.create_experiment("e")
    return shared


def test_a_server_that_is_not_up_is_retried_for_the_window_then_named(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    client = ResilientClient(uri, window=1.5)
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable) as info:
        client.get_experiment_by_name("e")
    waited = time.monotonic() - start
    assert 1.5 <= waited < 8
    message = str(info.value)
    assert uri in message and "unreachable for" in message and "get_experiment_by_name" in message
    assert len(message.splitlines()) == 1
    assert not client.reachable
    assert is_transient(info.value.__cause__)


def test_cleanup_after_an_interrupt_waits_seconds_not_the_window(tmp_path: Path) -> None:
    client = ResilientClient(f"http://127.0.0.1:{free_port()}", window=300)
    start = time.monotonic()
    with client.impatient(1.0), pytest.raises(TrackingUnavailable):
        client.get_experiment_by_name("e")
    assert time.monotonic() - start < 8  # not 300 s
    assert client.window == 300  # the study's window again after the block


def test_a_call_passes_on_arguments_named_like_its_own() -> None:
    """``create_logged_model(..., name="model")``: the retried method's keywords are its own."""
    client = ResilientClient(f"http://127.0.0.1:{free_port()}", window=1)
    assert client.call("m", lambda **kw: kw, name="model", method="x") == {"name": "model", "method": "x"}


def test_a_refused_request_is_not_retried(store: ResilientClient) -> None:
    run_id = store.create_run(store.get_experiment_by_name("e").experiment_id).info.run_id
    store.log_param(run_id, "lr", "0.1")
    start = time.monotonic()
    with pytest.raises(MlflowException) as info:
        store.log_param(run_id, "lr", "0.2")  # a param cannot change: the store says no, at once
    assert time.monotonic() - start < 2
    assert not is_transient(info.value)
    assert store.reachable


def test_a_metric_batch_sent_twice_is_stored_once(store: ResilientClient) -> None:
    """What a retry after a lost answer does: the same batch, same timestamps, again."""
    run_id = store.create_run(store.get_experiment_by_name("e").experiment_id).info.run_id
    batch = [Metric("val_loss", 0.5, 1_700_000_000_000, 1), Metric("val_loss", 0.4, 1_700_000_000_000, 2)]
    store.log_batch(run_id, metrics=batch)
    store.log_batch(run_id, metrics=batch)
    history = store.get_metric_history(run_id, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.5), (2, 0.4)]


def test_a_run_whose_creation_answer_was_lost_is_created_once(
    store: ResilientClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first create_run reaches the store, then its answer is lost (a connection reset)."""
    real = store.client.create_run
    calls = []

    def answer_lost_once(*args: object, **kwargs: object) -> object:
        run = real(*args, **kwargs)
        calls.append(run.info.run_id)
        if len(calls) == 1:
            raise ConnectionResetError("connection reset by peer")
        return run

    monkeypatch.setattr(store.client, "create_run", answer_lost_once)
    exp = store.get_experiment_by_name("e").experiment_id
    run = store.create_run(exp, run_name="trial-0", tags={"k": "v"})
    runs = store.search_runs([exp])
    assert [r.info.run_id for r in runs] == [run.info.run_id] == calls
    assert runs[0].data.tags[CREATE_TOKEN_TAG]


def test_a_model_version_whose_answer_was_lost_is_created_once(
    store: ResilientClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = store.get_experiment_by_name("e").experiment_id
    run = store.create_run(exp)
    name = f"outage-model-{exp}"
    store.create_registered_model(name)
    calls = drop_first_call(monkeypatch, store.client, "create_model_version", answer_lost=True)
    version = store.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    assert len(calls) == 1  # after the lost answer the version was found, not made again
    assert [v.version for v in store.search_model_versions(f"name = '{name}'")] == [version.version]


def test_a_checkpoint_fetch_rides_out_a_dropped_connection(
    store: ResilientClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow.artifacts

    from search.spec.runconfig import RunConfig
    from search.tracking.runs import checkpoint_uri, fetch_init

    run_id = store.create_run(store.get_experiment_by_name("e").experiment_id).info.run_id
    (tmp_path / "best.pt").write_bytes(b"weights")
    store.log_artifact(run_id, str(tmp_path / "best.pt"), CHECKPOINT_ARTIFACTS)
    calls = drop_first_call(monkeypatch, mlflow.artifacts, "download_artifacts")
    cfg = RunConfig().replace(init_from=checkpoint_uri(run_id))
    fetched = fetch_init(cfg, store, tmp_path / "a")  # a study's client ...
    assert len(calls) == 2 and Path(fetched.init_from).read_bytes() == b"weights"
    fetched = fetch_init(cfg, store.tracking_uri, tmp_path / "b")  # ... or `train`'s tracking URI
    assert Path(fetched.init_from).read_bytes() == b"weights"
