"""Why the best trial's failing classes fail: its wrong held-out answers by kind, per failing
class and over the whole held-out set, in words a reader understands.

The counts are the class table's (``ClassRow.errors``, core's ``error_kind`` of each wrong
answer); this module only names the kinds and lays them out for summary.md and best_trial.json.
"""

from __future__ import annotations

from typing import Any

from core.metrics import ERROR_KINDS
from search.report.classes import MIN_CLASS_INPUTS, ClassTable
from search.tracking import names

__all__ = ["LABELS", "MEANINGS", "markdown", "to_json"]

#: The kinds of core.metrics.ERROR_KINDS as summary.md names them.
LABELS = {
    "wrong_k_prime": "wrong k′ (κ·2^l)",
    "wrong_k": "wrong k",
    "other": "wrong digits",
    "undecodable": "undecodable",
}
#: What each kind means, one sentence each.
MEANINGS = {
    "wrong_k_prime": "the right arithmetic with a wrong number of halvings, κ(n)·2^l or κ(n)/2^l "
    "(the paper's most common error: k′ underestimated, set to one already learned)",
    "wrong_k": "the right arithmetic with a wrong number of (3x+1)/2 steps, i.e. the long step of "
    "another class (k₂, k′₂) applied to n",
    "other": "the digits are not the long step of n for any nearby (k, k′)",
    "undecodable": "the output does not read back as an integer (no end token, a leading zero, "
    "a special token among the digits)",
}


def to_json(table: ClassTable) -> dict[str, Any] | None:
    """best_trial.json's ``error_kinds``: wrong answers per kind over the whole held-out set,
    counts and shares of all errors; None when the run kept no predictions."""
    counts = table.error_counts()
    if counts is None:
        return None
    errors = sum(counts.values())
    return {
        "errors": errors,
        "counts": counts,
        "shares": {kind: c / errors if errors else 0.0 for kind, c in counts.items()},
    }


def markdown(table: ClassTable) -> list[str]:
    """summary.md's error taxonomy, right after the per-class table: one row per listed failing
    class, then the whole held-out set; one line when the kinds are not known or there are none."""
    overall = to_json(table)
    if overall is None:
        return [
            "",
            f"Kinds of error not known: the best trial's run kept no {names.TEST_PREDICTIONS_ARTIFACT} "
            "(an older run), so its wrong answers cannot be read.",
        ]
    if not overall["errors"]:
        return ["", "No wrong answer on the held-out set: no kinds of error to tell."]
    lines = ["", "### Why the failing classes fail: wrong answers by kind", ""]
    lines += [f"- **{LABELS[kind]}**: {MEANINGS[kind]};" for kind in ERROR_KINDS]
    lines[-1] = lines[-1][:-1] + "."
    lines += [
        "",
        f"Every failing class with at least {MIN_CLASS_INPUTS} held-out inputs, in the order above; "
        "the last line is the whole held-out set, each kind's count and share of all wrong answers.",
        "",
        "| k | k′ | wrong | " + " | ".join(LABELS[kind] for kind in ERROR_KINDS) + " |",
        "|---|---|---|" + "---|" * len(ERROR_KINDS),
    ]
    for r in (r for r in table.rows if r.failing and r.errors is not None):
        cells = " | ".join(f"{r.errors[kind]:,}" for kind in ERROR_KINDS)
        lines.append(f"| {r.k} | {r.kp} | {r.count - r.right:,} | {cells} |")
    errors, counts = overall["errors"], overall["counts"]
    cells = " | ".join(f"{counts[kind]:,} ({100 * counts[kind] / errors:.1f} %)" for kind in ERROR_KINDS)
    lines.append(f"| all | all | {errors:,} | {cells} |")
    return lines
