"""The guide's ExperimentTracker API on MLflow (search.tracking.runs.ExperimentTracker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from core import BatchIterator, CollatzTransformer, Trainer, make_splits
from search.tracking.runs import ExperimentTracker


def test_guide_tracker_logs_params_metrics_and_ends_its_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"base": 24, "d_model": 32, "data_range": (1, 10_000), "learning_rate": 1e-3}
    tracker = ExperimentTracker(
        backend="mlflow",
        project_name="collatz-transformer",
        experiment_name=f"base{config['base']}_d{config['d_model']}",
        tracking_uri=uri,
    )
    tracker.log_params(config)
    train, val = make_splits((1, 10_000), [128, 32], base=24, seed=0)
    model = CollatzTransformer(train.vocab_size, d_model=32, nhead=4, num_layers=1, max_seq_length=8)
    trainer = Trainer(
        model,
        BatchIterator(train, 32),
        BatchIterator(val, 32, shuffle=False),
        device="cpu",
        log=None,
        callbacks=[tracker.callback()],
    )
    trainer.train(2, torch.optim.Adam(model.parameters(), lr=1e-3))
    tracker.log_metrics({"final_loss": trainer.history["val_loss"][-1]})
    tracker.finish()

    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.run_name == "base24_d32"
    assert run.info.status == "FINISHED"
    assert run.data.params["base"] == "24" and run.data.params["data_range"] == "[1, 10000]"
    history = client.get_metric_history(tracker.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(trainer.history["val_loss"])
    assert client.get_experiment(run.info.experiment_id).name == "collatz-transformer"


def test_tracker_as_context_manager_marks_a_crash_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError), ExperimentTracker(project_name="p", tracking_uri=uri) as tracker:
        raise RuntimeError("boom")
    assert MlflowClient(uri).get_run(tracker.run_id).info.status == "FAILED"


def test_wandb_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend 'wandb' is not supported.*mlflow"):
        ExperimentTracker(backend="wandb", project_name="p", tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")
    assert not (tmp_path / "x.db").exists()  # nothing written
