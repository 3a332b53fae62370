"""Where the best trial's errors are: held-out exact match per (k, k′) class, every class with
enough inputs, failing classes first, each with its count, 95 % interval and wrong answers by kind.

The counts come from the trial's ``test_predictions.csv`` (one row per held-out input: n, predicted,
correct, k, k′), read through the retrying client; each wrong answer is classified by core's
``error_kind``. A run without it falls back to the per-class MLflow metrics, with counts estimated
from the class's share 2^-(k+k′) of the test size (marked ``≈``) and no kinds of error.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.metrics import ERROR_KINDS, error_kind
from search.stats import Interval, wilson
from search.tracking import names

__all__ = [
    "MIN_CLASS_INPUTS",
    "ClassRow",
    "ClassTable",
    "class_table",
    "read_predictions",
]

MIN_CLASS_INPUTS = 20  # a class is listed with this many held-out inputs (fewer: summed in one line)
SOLVED = 1.0  # a class below this exact match is failing


@dataclass(frozen=True)
class ClassRow:
    k: int
    kp: int
    count: int
    right: int
    estimated: bool = False  # count from the class's share of the test size, not from predictions
    # wrong answers per kind of core.metrics.ERROR_KINDS; None when there are no predictions to read
    errors: Mapping[str, int] | None = field(default=None, hash=False)

    @property
    def interval(self) -> Interval:
        return wilson(self.right / self.count, self.count)

    @property
    def failing(self) -> bool:
        return self.right < SOLVED * self.count

    @property
    def share(self) -> float:
        return 2.0 ** -(self.k + self.kp)


@dataclass(frozen=True)
class ClassTable:
    """The listed classes (failing first, then by frequency) and the rest summed up."""

    rows: list[ClassRow]
    small: list[ClassRow]  # classes with fewer than MIN_CLASS_INPUTS inputs
    source: str  # where the counts came from

    @property
    def failing(self) -> list[ClassRow]:
        return [r for r in self.rows + self.small if r.failing]

    def error_counts(self) -> dict[str, int] | None:
        """Wrong answers per kind over the whole held-out set; None without predictions."""
        every = self.rows + self.small
        if any(r.errors is None for r in every):
            return None
        return {kind: sum(r.errors[kind] for r in every if r.errors is not None) for kind in ERROR_KINDS}

    def small_note(self) -> str | None:
        """One line on the classes too small to list, naming those with errors."""
        if not self.small:
            return None
        count, wrong = sum(r.count for r in self.small), sum(r.count - r.right for r in self.small)
        line = (
            f"{len(self.small)} classes with fewer than {MIN_CLASS_INPUTS} held-out inputs are not listed "
            f"({count:,} inputs, {wrong:,} wrong)"
        )
        bad = [f"({r.k}, {r.kp}) {r.right}/{r.count}" for r in self.small if r.failing]
        return line + (": errors in " + ", ".join(bad) if bad else "")

    def to_json(self) -> list[dict[str, Any]]:
        """One record per class: counts, interval, and wrong answers per kind (None: not known)."""
        return [
            {
                "k": r.k,
                "k_prime": r.kp,
                "inputs": r.count,
                "right": r.right,
                **r.interval.as_dict(),
                **{kind: None if r.errors is None else r.errors[kind] for kind in ERROR_KINDS},
            }
            for r in self.rows + self.small
        ]


def read_predictions(client: Any, run_id: str) -> list[dict[str, str]] | None:
    """The run's test_predictions.csv rows (n, kappa, predicted, correct, k, k_prime), or None."""
    with tempfile.TemporaryDirectory(prefix="collatz-report-") as tmp:
        try:
            path = client.download_artifacts(run_id, names.TEST_PREDICTIONS_ARTIFACT, tmp)
        except Exception:  # MLflow raises several types for a missing artifact
            return None
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))


def class_table(
    predictions: Iterable[Mapping[str, str]] | None, metrics: Mapping[str, float], test_n: int | None
) -> ClassTable | None:
    """The per-class table from the predictions, else from the run's per-class test metrics."""
    if predictions is not None:
        classes = _from_predictions(predictions)
        source = f"the best trial's {names.TEST_PREDICTIONS_ARTIFACT}"
    else:
        classes = _from_metrics(metrics, test_n)
        source = "per-class MLflow metrics (counts ≈ share × test size)"
    if not classes:
        return None
    big = [r for r in classes if r.count >= MIN_CLASS_INPUTS]
    big.sort(key=lambda r: (not r.failing, r.right / r.count if r.failing else 0.0, -r.count, r.k, r.kp))
    small = sorted((r for r in classes if r.count < MIN_CLASS_INPUTS), key=lambda r: (-r.count, r.k, r.kp))
    return ClassTable(big, small, source)


def _from_predictions(predictions: Iterable[Mapping[str, str]]) -> list[ClassRow]:
    """One row per (k, k′) class of test_predictions.csv, in one pass: inputs, right answers and the
    wrong ones by kind (core's ``error_kind`` of n and the predicted integer, empty: undecodable)."""
    tallies: dict[tuple[int, int], tuple[list[int], dict[str, int]]] = {}
    for row in predictions:
        counts, kinds = tallies.setdefault(
            (int(row["k"]), int(row["k_prime"])), ([0, 0], dict.fromkeys(ERROR_KINDS, 0))
        )
        counts[0] += 1
        if int(row["correct"]):
            counts[1] += 1
        else:
            predicted = row["predicted"]
            kinds[error_kind(int(row["n"]), int(predicted) if predicted else None)] += 1
    return [ClassRow(k, kp, n, right, errors=kinds) for (k, kp), ((n, right), kinds) in tallies.items()]


def _from_metrics(metrics: Mapping[str, float], test_n: int | None) -> list[ClassRow]:
    if test_n is None:
        return []
    out = []
    for key, rate in metrics.items():
        found = names.parse_class_metric(key, names.TEST_EXACT_MATCH)
        if found is not None:
            count = max(1, round(test_n * 2.0 ** -sum(found)))
            out.append(ClassRow(*found, count, round(rate * count), estimated=True))
    return out


def markdown(table: ClassTable) -> list[str]:
    """summary.md's per-class section."""
    lines = [
        "",
        f"### Held-out exact match per (k, k′) class ({len(table.failing)} failing)",
        "",
        f"Every class with at least {MIN_CLASS_INPUTS} held-out inputs, failing classes (below 100 %) "
        f"first; counts from {table.source}.",
        "",
    ]
    if table.rows:
        lines += ["| k | k′ | inputs | right | exact match (95 % interval) | |", "|---|---|---|---|---|---|"]
    else:
        lines.append(f"No class has {MIN_CLASS_INPUTS} held-out inputs or more.")
    for r in table.rows:
        about = "≈" if r.estimated else ""
        lines.append(
            f"| {r.k} | {r.kp} | {about}{r.count:,} | {about}{r.right:,} | {r.interval} | "
            f"{'**fails**' if r.failing else 'solved'} |"
        )
    note = table.small_note()
    if note:
        lines += ["", note + "."]
    return lines


def plotted_classes(table: ClassTable | None, available: Iterable[tuple[int, int]], most: int = 20) -> list:
    """The classes whose validation curves are plotted: the failing ones (most inputs first, at
    most ``most``), or, when none fails, the 12 most frequent."""
    have = set(available)
    if table is not None:
        failing = [(r.k, r.kp) for r in sorted(table.failing, key=lambda r: -r.count) if (r.k, r.kp) in have]
        if failing:
            return failing[:most]
    return sorted(have, key=lambda c: (c[0] + c[1], c[0]))[:12]


def save(table: ClassTable, path: Path) -> Path:
    """The table as CSV (every class, the small ones too)."""
    import pandas as pd

    pd.DataFrame(table.to_json()).to_csv(path, index=False)
    return path
