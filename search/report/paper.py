"""A study's best trial per base against the paper's table of bases (Charton & Narayanan; figures
in DESIGN.md): its figure, the plateau each base has reached, and the (k, k′) classes it has
learned, since accuracy climbs in the same steps in every base, one set of classes at a time.

Why classes and not only a number: a base at 0 % and one at 24 % differ by class (1, 1), which is
a quarter of the odd inputs; saying which classes a base has learned tells what more training
would have to add, where a bare percentage hides it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PAPER", "PLATEAUS", "BaseRow", "class_share", "markdown", "ordering", "plateau", "to_json"]

#: Held-out exact match the paper reports per base (d_model 512, 4 + 1 layers, n < 10^12,
#: ~300 M examples), as DESIGN.md quotes it; 8 and 16 by secondary accounts.
PAPER: dict[int, str] = {
    24: "99.7 %",
    32: "99.7 %",
    16: "99.7 % (secondary)",
    8: "99.7 % (secondary)",
    11: "37 %",
    3: "25 %",
}
#: what the paper says of every other base
PAPER_EVEN, PAPER_ODD = "≥ ~88 % (every even base)", "mostly < 80 % (odd bases)"
#: The accuracy levels every base climbs through, each a set of (k, k′) classes solved.
PLATEAUS = (0.25, 0.37, 0.55, 0.71, 0.81, 0.88, 0.92, 0.997)
#: held-out exact match at which a class counts as learned
LEARNED = 0.9


def class_share(k: int, kp: int) -> float:
    """Share of odd inputs in class (k, k′) under the natural distribution: 2^−(k+k′)."""
    return 2.0 ** -(k + kp)


def plateau(exact_match: float) -> float | None:
    """The highest of the paper's plateaus at or below ``exact_match`` (None: below the first)."""
    reached = [p for p in PLATEAUS if exact_match >= p - 0.005]  # a plateau is "about" its level
    return reached[-1] if reached else None


@dataclass(frozen=True)
class BaseRow:
    """One base's best trial: its held-out exact match (interval bounds) and per-class rates."""

    base: int
    exact_match: float
    low: float
    high: float
    by_class: Mapping[tuple[int, int], float]  # held-out exact match per (k, k′)

    @property
    def learned(self) -> list[tuple[int, int]]:
        return sorted((c for c, v in self.by_class.items() if v >= LEARNED), key=lambda c: (sum(c), c))

    @property
    def learned_share(self) -> float:
        return sum(class_share(*c) for c in self.learned)


def _paper(base: int) -> str:
    return PAPER.get(base, PAPER_EVEN if base % 2 == 0 else PAPER_ODD)


def _classes(row: BaseRow, most: int = 8) -> str:
    learned = row.learned
    if not row.by_class:
        return "(no per-class figures)"
    if not learned:
        top = max(row.by_class.items(), key=lambda kv: (kv[1], -sum(kv[0])))
        return f"none (best: ({top[0][0]},{top[0][1]}) {100 * top[1]:.0f} %)"
    shown = " ".join(f"({k},{kp})" for k, kp in learned[:most])
    return shown + (f" and {len(learned) - most} more" if len(learned) > most else "")


def ordering(rows: Sequence[BaseRow]) -> str:
    """Whether every even base is above every odd one, beyond the held-out intervals."""
    even, odd = [r for r in rows if r.base % 2 == 0], [r for r in rows if r.base % 2 == 1]
    if not even or not odd:
        return "Only even or only odd bases: no even/odd comparison."
    low_even, high_odd = min(even, key=lambda r: r.low), max(odd, key=lambda r: r.high)
    if low_even.low > high_odd.high:
        return (
            f"Every even base is above every odd base beyond the intervals (lowest even: base "
            f"{low_even.base}, {100 * low_even.low:.1f} % at its interval's low end; highest odd: base "
            f"{high_odd.base}, {100 * high_odd.high:.1f} % at its high end), as in the paper."
        )
    return (
        f"Not every even base is above every odd base beyond the intervals: base {low_even.base} "
        f"(low end {100 * low_even.low:.1f} %) against base {high_odd.base} (high end "
        f"{100 * high_odd.high:.1f} %)."
    )


def markdown(rows: Sequence[BaseRow]) -> list[str]:
    """summary.md's "Against the paper" section, one row per base with a completed trial."""
    if not rows:
        return []
    lines = [
        "",
        "## Against the paper's table of bases",
        "",
        f"Plateaus the paper's bases climb through: {', '.join(f'{100 * p:g} %' for p in PLATEAUS)}. "
        f"A class is learned at ≥ {100 * LEARNED:g} % held-out exact match; its share of odd inputs "
        "is 2^−(k+k′).",
        "",
        "| base | best held-out exact match | paper | plateau reached | classes learned | their share |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        reached = plateau(r.exact_match)
        lines.append(
            f"| {r.base} | {100 * r.exact_match:.1f} % ({100 * r.low:.1f}–{100 * r.high:.1f}) | "
            f"{_paper(r.base)} | {'below the first' if reached is None else f'{100 * reached:g} %'} | "
            f"{_classes(r)} | {100 * r.learned_share:.1f} % |"
        )
    return [*lines, "", ordering(rows)]


def to_json(rows: Sequence[BaseRow]) -> list[dict]:
    """``best_trial.json``'s ``against_paper``."""
    return [
        {
            "base": r.base,
            "test_exact_match": r.exact_match,
            "paper": _paper(r.base),
            "plateau": plateau(r.exact_match),
            "learned_classes": [list(c) for c in r.learned],
            "learned_share": r.learned_share,
        }
        for r in rows
    ]
