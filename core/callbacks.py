"""The hooks of ``Trainer.train``: side effects that are not training (pruning, tracking) live here.

The loop only promises that when a callback raises, the checkpoints on disk are consistent;
``StopTraining`` ends training normally after the current epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.trainer import Trainer

__all__ = ["Callback", "StopTraining"]


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, like StopIteration
    """Raised by a callback to end training normally after the current epoch."""


class Callback:
    """Hooks into ``Trainer.train``; raise to stop (``StopTraining`` ends it normally)."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path, kind: str) -> None: ...

    def on_train_end(self, trainer: Trainer, history: dict[str, list[float]]) -> None: ...
