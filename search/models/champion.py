"""The registry's champion is a claim: a new version takes the alias ``champion`` only when its
held-out exact match beats the champion's beyond the champion's 95 % interval, measured on the same
held-out split. A version for another input range (another task) never takes it; a champion
measured on another split of the same range is re-evaluated on the inputs of the new split it never
trained on, and the new version with it. ``--promote`` moves the alias regardless.

Every verdict is one line that says why, for the export's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.models.loading import held_out, load_export, range_text
from search.stats import Interval, beats, wilson

__all__ = ["HeldOut", "Verdict", "judge", "reevaluate"]

_SPLIT_KEYS = ("range", "train_size", "val_size", "test_size", "seed")


@dataclass(frozen=True)
class HeldOut:
    """A model's held-out exact match and the split it was measured on (config.json's ``data``:
    the range and the train/val/test sizes and seed that cut it, which fix the test inputs)."""

    interval: Interval
    split: dict[str, Any]

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> HeldOut | None:
        """From an export's config.json; None where it lacks the figure or the split."""
        interval, data = held_out(config), config.get("data") or {}
        if interval is None or any(k not in data for k in _SPLIT_KEYS):
            return None
        return cls(interval, {k: data[k] for k in _SPLIT_KEYS})

    @classmethod
    def of_tags(cls, interval: Interval | None, split: str | None) -> HeldOut | None:
        """From a model version's tags (``names.ModelVersionSource``)."""
        if interval is None or not split:
            return None
        return cls(interval, json.loads(split))

    @property
    def data_range(self) -> tuple[int, int]:
        lo, hi = self.split["range"]
        return int(lo), int(hi)

    def split_json(self) -> str:
        return json.dumps(self.split, separators=(",", ":"))

    def split_text(self) -> str:
        """``the held-out split of odd n < 2^20 (train/val/test 500,000/2,000/10,000, seed 0)``."""
        s = self.split
        sizes = "/".join(f"{int(s[k]):,}" for k in ("train_size", "val_size", "test_size"))
        return (
            f"the held-out split of {range_text(self.data_range)} (train/val/test {sizes}, seed {s['seed']})"
        )

    def describe(self) -> str:
        """The model version's description: the figure, its interval and where it was measured."""
        return f"held-out exact match {self.interval} on {self.split_text()}"


@dataclass(frozen=True)
class Verdict:
    """Whether the new version becomes the champion, and why (one line)."""

    promote: bool
    reason: str


def judge(new: HeldOut, champion: HeldOut | None, version: str, reevaluated: Any = None) -> Verdict:
    """The verdict on ``new`` against the champion (model version ``version``). ``reevaluated``:
    ``(new, champion)`` intervals measured afresh on the same inputs, or the reason there are none
    (see :func:`reevaluate`), for a champion measured on another split of the same range."""
    keep = f"alias 'champion' stays on version {version}"
    if champion is None:
        return Verdict(False, f"{keep}: it carries no held-out figure to compare with (--promote moves it)")
    if champion.data_range != new.data_range:
        return Verdict(
            False,
            f"{keep}: it answers {range_text(champion.data_range)}, this version "
            f"{range_text(new.data_range)}, another task (--promote moves it)",
        )
    ours, theirs, where = new.interval, champion.interval, "on the same held-out split"
    if champion.split != new.split:
        if isinstance(reevaluated, str) or reevaluated is None:
            return Verdict(
                False, f"{keep}: {reevaluated or 'measured on another split'} (--promote moves it)"
            )
        ours, theirs = reevaluated
        where = f"on the {theirs.n:,} inputs of this split it never trained on (re-evaluated)"
    if beats(ours, theirs):
        return Verdict(
            True, f"alias 'champion' moved: held-out {ours} beats version {version}'s {theirs} {where}"
        )
    return Verdict(False, f"{keep}: held-out {ours} does not beat its {theirs} {where} (--promote moves it)")


def reevaluate(
    new_dir: Path, champion_dir: Path, new: HeldOut, champion: HeldOut
) -> tuple[Interval, Interval] | str:
    """Both models on the inputs of the new version's held-out split that the champion never
    trained or validated on (the same range, another cut): their intervals, or why there are none."""
    import numpy as np

    from core.data import split_values

    def cut(split: dict[str, Any]) -> list[np.ndarray]:
        sizes = [split["train_size"], split["val_size"], split["test_size"]]
        return split_values(tuple(split["range"]), sizes, split["seed"])

    test = cut(new.split)[2]
    seen = np.concatenate(cut(champion.split)[:2])
    unseen = test[~np.isin(test, seen)]
    if len(unseen) == 0:
        return f"it trained on every one of this split's {len(test):,} held-out inputs: no fair comparison"
    values = [int(v) for v in unseen]
    return _exact_match(new_dir, values), _exact_match(champion_dir, values)


def _exact_match(directory: Path, values: list[int]) -> Interval:
    from core.collatz import long_step

    model = load_export(directory)
    right = sum(p == long_step(n) for n, p in zip(values, model.predict(values), strict=True))
    return wilson(right / len(values), len(values))
