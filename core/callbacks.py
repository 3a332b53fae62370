"""The hooks of ``Trainer.train``: side effects that are not training (pruning, tracking) live here.

The loop only promises that when a callback raises, the checkpoints on disk are consistent.
``StopTraining`` ends training normally: raised from ``on_epoch_end``, after that epoch; from
``on_batch_end``, after that batch, so that a budget is kept to the batch, not to the epoch.
The partial epoch is then validated, recorded, checkpointed and shown to ``on_epoch_end`` like
any other, and is the last. Every callback's hook runs even after one stopped (so reporting sees
the epoch that ends training); the first ``StopTraining`` gives ``trainer.stop_reason``, which a
later one (an epoch end's after a batch's) never replaces. Any other exception propagates at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.trainer import Trainer

__all__ = ["Callback", "StopTraining", "call_hooks"]


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, like StopIteration
    """Raised by a callback to end training normally after the current epoch (or batch)."""


class Callback:
    """Hooks into ``Trainer.train``; raise to stop (``StopTraining`` ends it normally)."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        """After every optimizer step (``step``: ``trainer.global_step``); it runs per batch, so
        keep it cheap. ``StopTraining`` here ends the epoch, then training, after this batch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path, kind: str) -> None: ...

    def on_train_end(self, trainer: Trainer, history: dict[str, list[float]]) -> None: ...


def call_hooks(trainer: Trainer, hook: Callable[[Callback], None]) -> bool:
    """Call ``hook`` on each of ``trainer``'s callbacks; True once training is to stop.

    A ``StopTraining`` does not skip the callbacks after it: its message becomes
    ``trainer.stop_reason`` at once (they can see it) unless an earlier stop set it already."""
    for cb in trainer.callbacks:
        try:
            hook(cb)
        except StopTraining as stop:
            if trainer.stop_reason is None:
                trainer.stop_reason = str(stop) or "stopped by callback"
    return trainer.stop_reason is not None
