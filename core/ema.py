"""An exponential moving average of the weights: the model that is validated, saved and exported.

Why: late in a run the step size is still large enough that the weights rattle around a minimum;
their average over the last ~1/(1 - decay) steps sits nearer its centre, and for an exact-match
task a rare class is often right under the average and wrong under the last step. The average is
torch's own ``AveragedModel`` with ``get_ema_multi_avg_fn`` (one fused lerp per step).

The decay warms up: after t updates it is min(decay, (1 + t) / (10 + t)), so early in a run the
average follows the weights (a fixed 0.999 still gave the first step's weights 0.999^t, 46 % after
a first epoch of 781 steps, and the pruner's first rung saw ~0 % exact match) and the full decay
applies from ~9 / (1 - decay) steps on. The count is the average's own (``n_averaged``), so a
resumed run goes on with the decay it had.

Checkpoints keep the average as ``model_state`` (so every reader of a checkpoint, export and
``init_from`` included, gets the averaged weights without knowing of it) and the weights being
trained as ``train_model_state``, so a resumed run goes on training those.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["TRAIN_STATE", "WeightAverage"]

#: the checkpoint key of the weights being trained, when ``model_state`` holds their average
TRAIN_STATE = "train_model_state"
_STEPS = "ema_steps"


class WeightAverage:
    """``decay`` per optimizer step, warmed up (:meth:`decay_after`); the first step copies the
    weights (no bias towards init)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)

    def decay_after(self, updates: int) -> float:
        """The decay of the update that follows ``updates`` earlier ones (the first one copies)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    def _lerp(self, averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        get_ema_multi_avg_fn(self.decay_after(int(n_averaged)))(averaged, current, n_averaged)

    @property
    def module(self) -> nn.Module:
        """The averaged copy of the model (same class and config)."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def payload(self, model: nn.Module) -> dict[str, Any]:
        """Checkpoint entries: the average as ``model_state``, the trained weights beside it."""
        return {
            "model_state": self.module.state_dict(),
            TRAIN_STATE: model.state_dict(),
            _STEPS: int(self.averaged.n_averaged),
        }

    def restore(self, model: nn.Module, ckpt: dict[str, Any]) -> None:
        """Back to a checkpoint's state. One saved without an average (``model_state`` is then the
        trained weights, already loaded into ``model``) starts the average afresh from them."""
        if TRAIN_STATE in ckpt:
            self.module.load_state_dict(ckpt["model_state"])
            model.load_state_dict(ckpt[TRAIN_STATE])
            steps = int(ckpt.get(_STEPS, 1))
        else:
            steps = 0
        self.averaged.n_averaged.fill_(steps)
        if steps == 0:
            self.update(model)  # the first update copies
