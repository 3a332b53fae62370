"""The training loop: learning, history, early stopping, checkpoints, resume, schedulers, callbacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from core import (
    BatchIterator,
    Callback,
    CheckpointError,
    CollatzDataset,
    CollatzTransformer,
    StopTraining,
    Trainer,
    compute_exact_match,
    load_checkpoint,
    long_step,
    make_splits,
    resume_candidates,
)

REQUIRED_HISTORY = ("train_loss", "val_loss", "val_accuracy", "val_exact_match", "lr")


def tiny_model(vocab_size: int, seed: int = 0, d_model: int = 16, nhead: int = 2) -> CollatzTransformer:
    torch.manual_seed(seed)
    return CollatzTransformer(
        vocab_size,
        d_model=d_model,
        nhead=nhead,
        num_layers=1,
        num_decoder_layers=1,
        dropout=0.0,
        max_seq_length=16,
    )


@pytest.fixture(scope="module")
def splits() -> tuple[CollatzDataset, CollatzDataset]:
    train, val = make_splits((1, 10**5), [96, 32], base=10, seed=0)
    return train, val


def make_trainer(
    splits: tuple[CollatzDataset, CollatzDataset],
    model: CollatzTransformer,
    checkpoint_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
    max_grad_norm: float | None = 1.0,
    log: Callable[[str], None] | None = None,
) -> Trainer:
    train, val = splits
    return Trainer(
        model,
        BatchIterator(train, 16, seed=11),
        BatchIterator(val, 64, shuffle=False),
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks or [],
        max_grad_norm=max_grad_norm,
        log=log,
    )


def test_overfits_a_few_hundred_examples() -> None:
    data = CollatzDataset((1, 2**12), 256, base=24, seed=0)
    torch.manual_seed(0)
    model = CollatzTransformer(
        data.vocab_size,
        d_model=64,
        nhead=4,
        num_layers=1,
        num_decoder_layers=1,
        dropout=0.0,
        max_seq_length=16,
    )
    epochs = 60
    trainer = Trainer(
        model,
        BatchIterator(data, 32, seed=0),
        BatchIterator(data, 256, shuffle=False),
        device="cpu",
        log=None,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    history = trainer.train(epochs, optimizer, lr_scheduler=scheduler, save_best=False)
    assert history["train_loss"][-1] < history["train_loss"][0] / 20
    assert history["val_exact_match"][-1] == 1.0
    assert history["val_accuracy"][-1] == 1.0
    # independently of the trainer: greedy decoding spells κ(n) for every training input
    predictions = model.generate(data.input_ids.long())
    assert compute_exact_match(predictions, data.target_ids.long()) == 1.0
    assert data.encoder.decode_batch(predictions) == [long_step(int(n)) for n in data.values]


def test_history_has_every_metric_per_epoch(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    trainer = make_trainer(splits, model)
    history = trainer.train(3, torch.optim.Adam(model.parameters(), lr=1e-3))
    assert history is trainer.history
    assert history["epoch"] == [1, 2, 3]
    for key in REQUIRED_HISTORY:
        assert len(history[key]) == 3, key
        assert all(math.isfinite(v) for v in history[key]), key
    assert all(0.0 <= v <= 1.0 for v in history["val_accuracy"] + history["val_exact_match"])
    assert history["lr"] == [1e-3] * 3
    assert history["train_loss"][-1] < history["train_loss"][0]
    # the last recorded validation is the model as it ended
    again = trainer.evaluate()
    assert again["val_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
    assert again["val_exact_match"] == history["val_exact_match"][-1]
    assert again["correct"].shape == (len(splits[1]),)


def test_a_further_train_call_trains_more_epochs(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    trainer = make_trainer(splits, model)
    trainer.train(2, torch.optim.Adam(model.parameters(), lr=1e-3))
    history = trainer.train(1)
    assert history["epoch"] == [1, 2, 3]


def test_early_stopping_when_val_loss_plateaus(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(splits, model)
    history = trainer.train(10, torch.optim.SGD(model.parameters(), lr=0.0), early_stopping_patience=2)
    assert history["epoch"] == [1, 2, 3]
    assert len(set(history["val_loss"])) == 1
    assert trainer.best_epoch == 1
    assert trainer.stop_reason is not None and "early stopping" in trainer.stop_reason
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    plain = make_trainer(splits, tiny_model(splits[0].vocab_size))
    assert plain.train(4, torch.optim.SGD(plain.model.parameters(), lr=0.0))["epoch"] == [1, 2, 3, 4]
    assert plain.stop_reason is None


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_train_start(self, trainer: Trainer) -> None:
        state = trainer.optimizer.state_dict()["state"] if trainer.optimizer else {}
        steps = sorted({int(s["step"]) for s in state.values()}) if state else []
        self.events.append(("start", (trainer.epoch, steps)))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.events.append(("epoch", epoch))

    def on_checkpoint(self, trainer: Trainer, path: Path, kind: str) -> None:
        self.events.append(("checkpoint", (path.name, kind)))

    def on_train_end(self, trainer: Trainer, history: dict[str, list[float]]) -> None:
        self.events.append(("end", len(history["epoch"])))


def test_checkpoints(splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path) -> None:
    model = tiny_model(splits[0].vocab_size)
    recorder = Recorder()
    trainer = make_trainer(splits, model, tmp_path, [recorder])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer.train(3, optimizer, lr_scheduler=scheduler, save_every=2, save_best=True)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    assert {"last.pt", "best.pt", "epoch_0002.pt"} <= set(names)
    assert "epoch_0001.pt" not in names and "epoch_0003.pt" not in names

    last = load_checkpoint(tmp_path / "last.pt")
    for key in ("model_config", "model_state", "optimizer_state", "scheduler_state", "epoch", "history"):
        assert key in last, key
    assert last["epoch"] == 3
    assert last["model_config"] == model.config.to_dict()
    assert last["optimizer_state"]["state"]  # Adam moments are stored
    assert last["scheduler_state"]["last_epoch"] == 3
    assert last["history"]["epoch"] == [1, 2, 3]
    assert last["history"]["val_loss"] == trainer.history["val_loss"]
    assert load_checkpoint(tmp_path / "epoch_0002.pt")["epoch"] == 2
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == trainer.best_epoch
    assert trainer.history["val_loss"][best["epoch"] - 1] == min(trainer.history["val_loss"])

    rebuilt = CollatzTransformer.from_checkpoint(tmp_path / "last.pt").eval()
    src, tgt = next(iter(BatchIterator(splits[1], 8, shuffle=False)))
    model.eval()
    tgt_in = CollatzTransformer.shift_right(tgt)
    assert torch.equal(rebuilt(src, tgt_in), model(src, tgt_in))

    kinds = [e[1] for e in recorder.events if e[0] == "checkpoint"]
    assert ("last.pt", "last") in kinds and ("epoch_0002.pt", "periodic") in kinds
    assert ("best.pt", "best") in kinds
    assert recorder.events[-1] == ("end", 3)


def test_no_validation_loader(splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path) -> None:
    model = tiny_model(splits[0].vocab_size)
    trainer = Trainer(model, BatchIterator(splits[0], 32), device="cpu", checkpoint_dir=tmp_path, log=None)
    history = trainer.train(2, save_best=True, early_stopping_patience=1)
    assert history["epoch"] == [1, 2]
    assert all(math.isnan(v) for v in history["val_loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def run_with_step_lr(
    splits: tuple[CollatzDataset, CollatzDataset],
    checkpoint_dir: Path,
    num_epochs: int,
    model_seed: int = 0,
    resume_from: Path | None = None,
    callbacks: list[Callback] | None = None,
) -> Trainer:
    model = tiny_model(splits[0].vocab_size, seed=model_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    trainer = make_trainer(splits, model, checkpoint_dir, callbacks)
    trainer.train(num_epochs, optimizer, lr_scheduler=scheduler, resume_from=resume_from)
    return trainer


def test_resume_equals_an_uninterrupted_run(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    batches = len(BatchIterator(splits[0], 16))
    first = run_with_step_lr(splits, tmp_path / "a", 2)
    assert load_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 2

    recorder = Recorder()
    resumed = run_with_step_lr(
        splits, tmp_path / "b", 4, model_seed=99, resume_from=tmp_path / "a" / "last.pt", callbacks=[recorder]
    )
    straight = run_with_step_lr(splits, tmp_path / "c", 4)

    # continues at epoch 3 with the optimizer state of epoch 2
    assert recorder.events[0] == ("start", (2, [2 * batches]))
    assert [e[1] for e in recorder.events if e[0] == "epoch"] == [3, 4]
    assert resumed.history["epoch"] == [1, 2, 3, 4]
    assert resumed.history["val_loss"][:2] == first.history["val_loss"]
    for key in ("train_loss", "val_loss", "val_exact_match", "lr"):
        assert resumed.history[key] == straight.history[key], key
    assert resumed.global_step == straight.global_step == 4 * batches

    opt_r = resumed.optimizer.state_dict()["state"]
    opt_s = straight.optimizer.state_dict()["state"]
    assert opt_r.keys() == opt_s.keys()
    for i in opt_r:
        assert int(opt_r[i]["step"]) == int(opt_s[i]["step"]) == 4 * batches
        assert torch.equal(opt_r[i]["exp_avg"], opt_s[i]["exp_avg"])
    assert resumed.lr_scheduler.last_epoch == straight.lr_scheduler.last_epoch == 4

    for (name, a), b in zip(resumed.model.named_parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_a_checkpoint_of_another_model(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    run_with_step_lr(splits, tmp_path, 1)
    other = tiny_model(splits[0].vocab_size, d_model=32, nhead=4)
    with pytest.raises(ValueError, match="model config"):
        make_trainer(splits, other).train(2, resume_from=tmp_path / "last.pt")


def test_step_lr_is_reflected_in_history(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    history = make_trainer(splits, model).train(4, optimizer, lr_scheduler=scheduler)
    assert history["lr"] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


def test_reduce_lr_on_plateau_is_reflected_in_history(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    # The optimizer moves only a dummy parameter: the model, hence val_loss, stays on a plateau.
    dummy = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)
    history = make_trainer(splits, model).train(4, optimizer, lr_scheduler=scheduler)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.025])

    # with real learning val_loss keeps improving and the lr stays
    model = tiny_model(splits[0].vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=5)
    history = make_trainer(splits, model).train(3, optimizer, lr_scheduler=scheduler)
    assert history["lr"] == pytest.approx([3e-3] * 3)


class Boom(Exception):
    pass


class RaiseAt(Callback):
    def __init__(self, epoch: int, exc: Exception) -> None:
        self.epoch, self.exc = epoch, exc
        self.ended = False

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise self.exc

    def on_train_end(self, trainer: Trainer, history: dict[str, list[float]]) -> None:
        self.ended = True


def test_a_raising_callback_propagates_and_leaves_consistent_checkpoints(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    model = tiny_model(splits[0].vocab_size)
    trainer = make_trainer(splits, model, tmp_path, [RaiseAt(2, Boom("pruned"))])
    with pytest.raises(Boom, match="pruned"):
        trainer.train(5, torch.optim.Adam(model.parameters(), lr=1e-3))
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2
    assert last["history"]["epoch"] == [1, 2]
    rebuilt = CollatzTransformer.from_checkpoint(tmp_path / "last.pt")
    for a, b in zip(rebuilt.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # and training can go on from there
    resumed = make_trainer(splits, tiny_model(splits[0].vocab_size))
    assert resumed.train(3, resume_from=tmp_path / "last.pt")["epoch"] == [1, 2, 3]


def test_stop_training_ends_training_normally(splits: tuple[CollatzDataset, CollatzDataset]) -> None:
    model = tiny_model(splits[0].vocab_size)
    callback = RaiseAt(2, StopTraining("time budget reached"))
    trainer = make_trainer(splits, model, callbacks=[callback])
    history = trainer.train(5, torch.optim.Adam(model.parameters(), lr=1e-3))
    assert history["epoch"] == [1, 2]
    assert trainer.stop_reason == "time budget reached"
    assert callback.ended


def test_a_stop_from_one_epoch_callback_still_lets_the_others_see_the_epoch(
    splits: tuple[CollatzDataset, CollatzDataset],
) -> None:
    model = tiny_model(splits[0].vocab_size)
    recorder = Recorder()
    trainer = make_trainer(splits, model, callbacks=[RaiseAt(2, StopTraining("first")), recorder])
    trainer.train(5, torch.optim.Adam(model.parameters(), lr=1e-3))
    assert [e[1] for e in recorder.events if e[0] == "epoch"] == [1, 2]
    assert trainer.stop_reason == "first"


class StopAtStep(Callback):
    """Stops from ``on_batch_end`` at global step ``step``; records what the other hooks saw."""

    def __init__(self, step: int, message: str) -> None:
        self.step, self.message = step, message
        self.steps: list[int] = []
        self.epoch_ends: list[tuple[int, int, str | None]] = []  # epoch, samples seen, stop reason
        self.ended = False

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        self.steps.append(step)
        if step == self.step:
            raise StopTraining(self.message)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch_ends.append((epoch, trainer.samples_seen, trainer.stop_reason))
        raise StopTraining("an epoch end's stop, after the batch's")  # must not replace it

    def on_train_end(self, trainer: Trainer, history: dict[str, list[float]]) -> None:
        self.ended = True


def test_stop_training_from_a_batch_ends_the_epoch_there(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    train = CollatzDataset((1, 10**5), 160, base=10, seed=3)  # 10 batches of 16
    model = tiny_model(train.vocab_size)
    stop = StopAtStep(3, "budget spent at step 3")
    recorder = Recorder()
    trainer = Trainer(
        model,
        BatchIterator(train, 16, seed=11),
        BatchIterator(splits[1], 64, shuffle=False),
        device="cpu",
        checkpoint_dir=tmp_path,
        callbacks=[stop, recorder],
        log=None,
    )
    history = trainer.train(4, torch.optim.Adam(model.parameters(), lr=1e-3))
    assert stop.steps == [1, 2, 3] and trainer.global_step == 3
    assert trainer.samples_seen == 3 * 16
    # the partial epoch was validated, recorded, shown to every callback once, and is the last
    assert history["epoch"] == [1] and math.isfinite(history["val_loss"][0])
    assert stop.epoch_ends == [(1, 48, "budget spent at step 3")]
    assert [e for e in recorder.events if e[0] == "epoch"] == [("epoch", 1)]
    assert trainer.stop_reason == "budget spent at step 3" and stop.ended
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["epoch"], last["global_step"], last["samples_seen"]) == (1, 3, 48)
    assert (tmp_path / "best.pt").is_file()


class NanLoss(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")


@pytest.mark.parametrize("how", ["criterion", "huge_lr"])
def test_nan_loss_raises(splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path, how: str) -> None:
    model = tiny_model(splits[0].vocab_size)
    trainer = make_trainer(splits, model, tmp_path, max_grad_norm=None)
    with pytest.raises(FloatingPointError, match="train loss"):
        if how == "criterion":
            trainer.train(2, torch.optim.Adam(model.parameters(), lr=1e-3), criterion=NanLoss())
        else:
            trainer.train(2, torch.optim.SGD(model.parameters(), lr=1e30))
    assert not (tmp_path / "last.pt").exists()  # a diverged model is never checkpointed


def test_bf16_precision_stays_fp32_on_cpu_and_bad_precision_is_rejected(
    splits: tuple[CollatzDataset, CollatzDataset],
) -> None:
    train, val = splits
    lines: list[str] = []
    trainer = Trainer(
        tiny_model(train.vocab_size),
        BatchIterator(train, 16),
        None,
        device="cpu",
        log=lines.append,
        precision="bf16",
    )
    assert trainer.autocast is False
    assert any("bf16 ignored on CPU" in line for line in lines)
    trainer.train(1, torch.optim.Adam(trainer.model.parameters(), lr=1e-3))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    with pytest.raises(ValueError, match="precision"):
        Trainer(tiny_model(train.vocab_size), BatchIterator(train, 16), device="cpu", precision="fp8")


# --- resume meets damaged checkpoints: the bad file is named, an earlier good one (or a fresh
# start) is used, never a crash loop; a checkpoint of another model is still an error


@pytest.fixture
def three_epochs(splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path) -> Path:
    """last.pt, best.pt and epoch_000{1,2,3}.pt of a 3-epoch run."""
    make_trainer(splits, tiny_model(splits[0].vocab_size), tmp_path).train(3, save_every=1)
    return tmp_path


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\0garbage" * 64)


def _resume(splits: tuple[CollatzDataset, CollatzDataset], epochs: int, start: Path, **model: int) -> tuple:
    lines: list[str] = []
    trainer = make_trainer(splits, tiny_model(splits[0].vocab_size, **model), log=lines.append)
    return trainer.train(epochs, resume_from=start), lines


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_last_checkpoint_is_named_and_an_earlier_one_resumes(
    splits: tuple[CollatzDataset, CollatzDataset], three_epochs: Path, how: str
) -> None:
    _damage(three_epochs / "last.pt", how)
    history, lines = _resume(splits, 5, three_epochs / "last.pt")
    assert any("last.pt" in line and "earlier checkpoint" in line for line in lines), lines
    resumed = [line for line in lines if line.startswith("resumed from")]
    assert len(resumed) == 1 and "last.pt" not in resumed[0], lines
    assert history["epoch"] == [1, 2, 3, 4, 5]  # epochs 1-3 from the good checkpoint's history


def test_newest_readable_wins_and_temp_files_of_a_cut_write_are_ignored(three_epochs: Path) -> None:
    for name in ("last.pt", "best.pt", "epoch_0003.pt"):
        _damage(three_epochs / name, "truncated")
    cut = three_epochs / ".last.pt.x1y2.tmp"  # what a write killed before its rename leaves
    cut.write_bytes(b"partial")
    order = resume_candidates(three_epochs)
    assert cut not in order
    readable = []
    for path in order:
        try:
            readable.append(load_checkpoint(path)["epoch"])
        except CheckpointError:
            continue
    assert readable[0] == 2  # epoch_0002.pt: the newest that still loads


def test_nothing_readable_starts_afresh_instead_of_crashing(
    splits: tuple[CollatzDataset, CollatzDataset], three_epochs: Path
) -> None:
    for path in three_epochs.glob("*.pt"):
        _damage(path, "garbage")
    history, lines = _resume(splits, 2, three_epochs / "last.pt")
    assert history["epoch"] == [1, 2]
    assert any("training from the start" in line for line in lines), lines
    assert sum("earlier checkpoint" in line for line in lines) == 5  # each bad file named once


def test_a_missing_path_or_another_models_checkpoint_is_still_an_error(
    splits: tuple[CollatzDataset, CollatzDataset], three_epochs: Path
) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        _resume(splits, 2, three_epochs / "lats.pt")
    with pytest.raises(ValueError, match="model config"):
        _resume(splits, 2, three_epochs / "last.pt", d_model=32)
