"""Per-step learning rate schedules and class-balanced sampling (core.schedule, core.data)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core import (
    BatchIterator,
    CollatzTransformer,
    StepSchedule,
    Trainer,
    WarmupDecay,
    class_balance_weights,
    make_splits,
)

# --- the shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_rises_linearly_then_decays_to_the_floor(decay: str) -> None:
    shape = WarmupDecay(decay, warmup=0.1, floor=0.05)
    assert shape.factor(0.0) == 0.0
    assert shape.factor(0.05) == pytest.approx(0.5)
    assert shape.factor(0.1) == pytest.approx(1.0)
    assert shape.factor(1.0) == pytest.approx(0.05)
    assert shape.factor(2.0) == pytest.approx(0.05)  # past the plan: stays at the floor
    after = [shape.factor(p) for p in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))  # never rises again
    middle = shape.factor(0.55)
    assert middle == pytest.approx(0.05 + 0.95 * 0.5)  # halfway through the decay, both shapes


def test_cosine_and_linear_differ_between_the_ends() -> None:
    cos, lin = WarmupDecay("cosine", 0.0, 0.0), WarmupDecay("linear", 0.0, 0.0)
    assert cos.factor(0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lin.factor(0.25) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"decay": "step"}, "decay"), ({"warmup": 1.0}, "warmup"), ({"floor": -0.1}, "floor")],
)
def test_bad_shapes_are_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        WarmupDecay(**kwargs)


def test_progress_is_the_first_budget_to_run_out() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = StepSchedule(opt, WarmupDecay("linear", 0.0, 0.0), total_steps=100, total_seconds=10.0)
    assert sched.progress(9, 0.5) == pytest.approx(0.10)  # steps lead
    assert sched.progress(9, 5.0) == pytest.approx(0.50)  # time leads
    sched.update(49, 0.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * 0.5)
    with pytest.raises(ValueError, match="total_steps or total_seconds"):
        StepSchedule(opt, WarmupDecay())


# --- in the trainer -------------------------------------------------------------------------------


def _trainer(tmp: Path | None, splits: list, seed: int = 0) -> tuple[Trainer, StepSchedule, list[float]]:
    train, val = splits
    torch.manual_seed(seed)
    model = CollatzTransformer(
        train.vocab_size, d_model=16, nhead=2, num_layers=1, dropout=0.0, max_seq_length=16
    )
    batches = BatchIterator(train, 16, seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = StepSchedule(opt, WarmupDecay("cosine", 0.2, 0.1), total_steps=4 * len(batches))
    trainer = Trainer(
        model, batches, BatchIterator(val, 64, shuffle=False), device="cpu", checkpoint_dir=tmp, log=None
    )
    seen: list[float] = []
    real_step = opt.step

    def step(*args, **kwargs):  # the rate each optimizer step actually used
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*args, **kwargs)

    opt.step = step  # type: ignore[method-assign]
    return trainer, sched, seen


@pytest.fixture(scope="module")
def splits() -> list:
    return make_splits((1, 10**5), [96, 32], base=10, seed=0)


def test_rate_follows_the_plan_step_by_step(splits: list) -> None:
    trainer, sched, seen = _trainer(None, splits)
    trainer.train(4, sched.optimizer, lr_scheduler=sched, save_best=False)
    total = 4 * len(trainer.train_loader)
    assert len(seen) == total
    expected = [3e-3 * sched.shape.factor((i + 1) / total) for i in range(total)]
    assert seen == pytest.approx(expected)
    assert seen[-1] == pytest.approx(3e-3 * 0.1)  # ends on the floor
    assert max(seen) == pytest.approx(3e-3, rel=0.01)  # the peak, within one step of it


def test_resume_continues_the_schedule_exactly(splits: list, tmp_path: Path) -> None:
    straight, sched, seen = _trainer(tmp_path / "a", splits)
    straight.train(4, sched.optimizer, lr_scheduler=sched)

    first, sched1, seen1 = _trainer(tmp_path / "b", splits)
    first.train(2, sched1.optimizer, lr_scheduler=sched1)
    resumed, sched2, seen2 = _trainer(tmp_path / "b", splits, seed=99)  # other init: the checkpoint wins
    resumed.train(4, sched2.optimizer, lr_scheduler=sched2, resume_from=tmp_path / "b" / "last.pt")

    assert seen1 + seen2 == pytest.approx(seen, rel=1e-12)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.elapsed >= first.elapsed > 0  # the time plan carries on from the checkpoint too


# --- class-balanced sampling -------------------------------------------------------------------------


def test_balance_weights_move_from_inputs_to_classes() -> None:
    k = np.array([1] * 8 + [2] * 4 + [3] * 2 + [4] * 1)
    kp = np.ones_like(k)
    natural = class_balance_weights(k, kp, 0.0)
    assert natural == pytest.approx(np.full(15, 1 / 15))
    flat = class_balance_weights(k, kp, 1.0)
    per_class = [flat[k == c].sum() for c in (1, 2, 3, 4)]
    assert per_class == pytest.approx([0.25] * 4)
    half = class_balance_weights(k, kp, 0.5)
    mass = np.array([half[k == c].sum() for c in (1, 2, 3, 4)])
    assert mass == pytest.approx(np.sqrt([8, 4, 2, 1]) / np.sqrt([8, 4, 2, 1]).sum())
    with pytest.raises(ValueError, match="temperature"):
        class_balance_weights(k, kp, 1.5)


def test_weighted_batches_follow_the_weights_and_repeat_per_epoch() -> None:
    train, _ = make_splits((1, 2**16), [4000, 10], base=16, seed=0)
    weights = class_balance_weights(train.k, train.k_prime, 1.0)
    it = BatchIterator(train, 500, seed=5, samples_per_epoch=20_000, weights=weights)
    it.set_epoch(1)
    order = it._epoch_order().numpy()
    it.set_epoch(1)
    assert np.array_equal(order, it._epoch_order().numpy())  # a function of (seed, epoch)
    it.set_epoch(2)
    assert not np.array_equal(order, it._epoch_order().numpy())
    classes = train.k.astype(np.int64) * 64 + train.k_prime
    drawn = np.unique(classes[order], return_counts=True)[1] / len(order)
    expected = np.unique(classes, return_counts=True)[1]
    # every class present gets about the same share, whatever its natural frequency
    assert drawn == pytest.approx(np.full(len(expected), 1 / len(expected)), abs=0.01)
    rows = [src.shape[0] for src, _ in it]
    assert sum(rows) == 20_000
    with pytest.raises(ValueError, match="weights"):
        BatchIterator(train, 10, weights=np.ones(3))
