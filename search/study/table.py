"""A study's trials as a table: one row per trial, shared by `status`, the parent run's CSV and the
report. pandas loads only where a DataFrame is asked for (``status`` prints the rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from search import keys

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["trial_rows", "trials_table"]


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, real hyperparameters, test exact match, duration."""
    import pandas as pd

    return pd.DataFrame(trial_rows(study))


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The rows of :func:`trials_table` as dicts."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = keys.trial_params(t)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value,
                **params,
                "epochs": len(t.intermediate_values),
                "test_exact_match": keys.test_exact_match(t),
                "seconds": round(duration, 1) if duration is not None else None,
                "note": keys.fail_reason(t) or keys.stop_reason(t) or "",
            }
        )
    return rows
