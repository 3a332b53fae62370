"""Recipe levers in the training loop: an average of the weights (EMA) and label smoothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from core import (
    BatchIterator,
    CollatzDataset,
    CollatzTransformer,
    Trainer,
    WeightAverage,
    load_checkpoint,
    make_splits,
)
from core.ema import TRAIN_STATE
from core.encoding import PAD
from core.evaluation import unsmoothed


def _model(vocab_size: int) -> CollatzTransformer:
    torch.manual_seed(0)
    return CollatzTransformer(
        vocab_size, d_model=16, nhead=2, num_layers=1, num_decoder_layers=1, dropout=0.0, max_seq_length=16
    )


@pytest.fixture(scope="module")
def splits() -> tuple[CollatzDataset, CollatzDataset]:
    return tuple(make_splits((1, 10**5), [128, 48], base=10, seed=0))  # type: ignore[return-value]


def _trainer(splits: tuple[CollatzDataset, CollatzDataset], ckpt: Path | None, ema: float | None) -> Trainer:
    train, val = splits
    return Trainer(
        _model(train.vocab_size),
        BatchIterator(train, 16, seed=3),
        BatchIterator(val, 64, shuffle=False),
        device="cpu",
        checkpoint_dir=ckpt,
        log=None,
        ema_decay=ema,
    )


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_average_is_the_decayed_sum_of_the_steps_first_step_copied() -> None:
    layer = nn.Linear(2, 1, bias=False)
    avg = WeightAverage(layer, decay=0.9)
    seen = []
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        avg.update(layer)
        seen.append(avg.module.weight[0, 0].item())
    # first update copies (no pull towards the initial weights); then d·avg + (1 − d)·w with the
    # decay warmed up: d = min(0.9, (1 + t) / (10 + t)) after t updates, i.e. 2/11, then 3/12
    second = 2 / 11 * 1.0 + 9 / 11 * 2.0
    assert seen == pytest.approx([1.0, second, 3 / 12 * second + 9 / 12 * 4.0])
    assert [avg.decay_after(t) for t in (1, 2, 80, 10_000)] == pytest.approx([2 / 11, 3 / 12, 0.9, 0.9])
    with pytest.raises(ValueError, match="ema decay"):
        WeightAverage(layer, decay=1.0)


def test_early_in_a_run_the_average_follows_the_weights_not_their_start(
    splits: tuple[CollatzDataset, CollatzDataset],
) -> None:
    """The decay's warmup: after one epoch of 8 steps a 0.999 average is nearer the trained weights
    than the initial ones (without it, it stays ~the weights of the first step)."""
    trainer = _trainer(splits, None, ema=0.999)
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=3e-3)
    trainer.train(1, optimizer, monitor="val_exact_match", mode="max")
    averaged, trained = trainer.ema.module.state_dict(), trainer.model.state_dict()

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in a) ** 0.5

    assert distance(averaged, trained) < 0.5 * distance(averaged, start)


def test_average_is_validated_checkpointed_and_the_trained_weights_kept(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    trainer = _trainer(splits, tmp_path, ema=0.9)
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=3e-3)
    history = trainer.train(2, optimizer, monitor="val_exact_match", mode="max")
    assert trainer.eval_model is trainer.ema.module
    averaged, trained = trainer.ema.module.state_dict(), trainer.model.state_dict()
    assert not _same(averaged, trained)  # 16 steps at 0.9: the average lags the weights
    # the history's validation is the average's, not the trained weights'
    assert history["val_loss"][-1] == pytest.approx(trainer.evaluate()["val_loss"])
    assert history["val_loss"][-1] != pytest.approx(trainer.evaluate(model=trainer.model)["val_loss"])
    last = load_checkpoint(tmp_path / "last.pt")
    assert _same(last["model_state"], averaged) and _same(last[TRAIN_STATE], trained)
    # any reader of model_state (export, init_from) gets the average without knowing of it
    plain = _model(splits[0].vocab_size)
    plain.load_state_dict(last["model_state"])
    assert _same(plain.state_dict(), averaged)


def test_resume_restores_both_the_average_and_the_trained_weights(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    first = _trainer(splits, tmp_path, ema=0.9)
    first.train(2, torch.optim.AdamW(first.model.parameters(), lr=3e-3))
    steps = int(first.ema.averaged.n_averaged)
    again = _trainer(splits, tmp_path / "again", ema=0.9)
    optimizer = torch.optim.AdamW(again.model.parameters(), lr=3e-3)
    again.train(2, optimizer, resume_from=tmp_path / "last.pt")  # already at epoch 2: nothing to train
    assert again.epoch == 2 and steps == first.global_step
    assert _same(again.ema.module.state_dict(), first.ema.module.state_dict())
    assert _same(again.model.state_dict(), first.model.state_dict())
    assert int(again.ema.averaged.n_averaged) == steps


def test_a_checkpoint_without_an_average_starts_one_from_its_weights(
    splits: tuple[CollatzDataset, CollatzDataset], tmp_path: Path
) -> None:
    plain = _trainer(splits, tmp_path, ema=None)
    plain.train(1, torch.optim.AdamW(plain.model.parameters(), lr=3e-3))
    assert TRAIN_STATE not in load_checkpoint(tmp_path / "last.pt")
    averaged = _trainer(splits, tmp_path / "b", ema=0.9)
    optimizer = torch.optim.AdamW(averaged.model.parameters(), lr=3e-3)
    averaged.train(1, optimizer, resume_from=tmp_path / "last.pt")
    assert _same(averaged.ema.module.state_dict(), plain.model.state_dict())
    assert int(averaged.ema.averaged.n_averaged) == 1


def test_label_smoothing_trains_but_validation_loss_stays_plain_cross_entropy(
    splits: tuple[CollatzDataset, CollatzDataset],
) -> None:
    trainer = _trainer(splits, None, ema=None)
    smoothed = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.2)
    history = trainer.train(1, torch.optim.AdamW(trainer.model.parameters(), lr=3e-3), criterion=smoothed)
    plain = trainer.evaluate(criterion=nn.CrossEntropyLoss(ignore_index=PAD))["val_loss"]
    assert history["val_loss"][-1] == pytest.approx(plain)
    assert trainer.evaluate(criterion=smoothed)["val_loss"] != pytest.approx(plain)
    assert unsmoothed(smoothed).label_smoothing == 0.0 and unsmoothed(smoothed).ignore_index == PAD
    assert unsmoothed(nn.MSELoss()).__class__ is nn.MSELoss
