"""Learning rate per optimizer step: linear warmup to the peak, then cosine or linear decay to a floor.

The plan is a number of steps, a time budget, or both: progress is the larger of the two
fractions, so the rate reaches its floor when the first budget runs out. The rate is a pure
function of (step, elapsed seconds), which the trainer checkpoints: a resumed run continues
the schedule exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = ["StepSchedule", "WarmupDecay"]


@dataclass(frozen=True)
class WarmupDecay:
    """The shape of the schedule, as a factor of the peak learning rate over progress in [0, 1]."""

    decay: Literal["cosine", "linear"] = "cosine"
    warmup: float = 0.03  # share of the plan spent rising linearly from 0 to the peak
    floor: float = 0.05  # final rate as a share of the peak

    def __post_init__(self) -> None:
        if self.decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {self.decay!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")

    def factor(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        if p < self.warmup:
            return p / self.warmup
        q = (p - self.warmup) / (1.0 - self.warmup)
        if self.decay == "cosine":
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * q))
        return 1.0 - (1.0 - self.floor) * q


class StepSchedule:
    """Sets the optimizer's learning rate before every step (``Trainer`` calls ``update``).

    ``total_steps`` and/or ``total_seconds`` make the plan; each param group's learning rate at
    construction is its peak.
    """

    per_step = True  # the trainer steps it per batch, not per epoch

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        shape: WarmupDecay,
        total_steps: int | None = None,
        total_seconds: float | None = None,
    ) -> None:
        if not total_steps and not total_seconds:
            raise ValueError("a step schedule needs total_steps or total_seconds")
        self.optimizer = optimizer
        self.shape = shape
        self.total_steps = total_steps
        self.total_seconds = total_seconds
        self.peaks = [group["lr"] for group in optimizer.param_groups]

    def progress(self, step: int, seconds: float) -> float:
        """How far through the plan step ``step`` (0-based) is, after ``seconds`` of training."""
        fractions = []
        if self.total_steps:
            fractions.append((step + 1) / self.total_steps)
        if self.total_seconds:
            fractions.append(seconds / self.total_seconds)
        return max(fractions)

    def update(self, step: int, seconds: float) -> float:
        """Set the rate for step ``step``; returns the factor of the peak it used."""
        factor = self.shape.factor(self.progress(step, seconds))
        for group, peak in zip(self.optimizer.param_groups, self.peaks, strict=True):
            group["lr"] = peak * factor
        return factor

    def state_dict(self) -> dict[str, Any]:
        return {
            "peaks": list(self.peaks),
            "total_steps": self.total_steps,
            "total_seconds": self.total_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peaks = list(state["peaks"])
        self.total_steps = state["total_steps"]
        self.total_seconds = state["total_seconds"]
