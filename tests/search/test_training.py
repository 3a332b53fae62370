"""One run's time budget (``--seconds``, ``[final] seconds``) holds to the batch, not to the epoch."""

from __future__ import annotations

from pathlib import Path

from search.spec.runconfig import RunConfig
from search.trial.training import execute

BUDGET = 1.5  # seconds
SLACK = 1.5  # one batch, the validation of 64 inputs and two checkpoint writes, on a loaded machine
EPOCH = 200_000  # samples: about 25 s of this tiny model on one thread, far past the budget


def test_a_time_budget_shorter_than_an_epoch_stops_inside_the_epoch(tmp_path: Path) -> None:
    cfg = RunConfig(
        data_range=(1, 4096), train_size=300, val_size=64, test_size=64, d_model=16, nhead=2,
        num_layers=1, epochs=3, samples_per_epoch=EPOCH, batch_size=64, threads=1, time_budget=BUDGET,
    )  # fmt: skip
    result = execute(cfg, tmp_path / "ckpt", log=None)
    assert BUDGET <= result.train_seconds < BUDGET + SLACK, result.train_seconds
    assert 0 < result.samples_seen < EPOCH and result.samples_seen % 64 == 0
    assert result.stop_reason == f"time budget of {BUDGET:g}s reached"
    # the partial epoch was validated and checkpointed: its best.pt is what the test set saw
    assert result.history["epoch"] == [1] and result.best_epoch == 1
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
