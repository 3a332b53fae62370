"""Tables of a study's trials (pandas), shared by `status`, the parent run's CSV and reports."""

from __future__ import annotations

import optuna
import pandas as pd

__all__ = ["trials_table"]


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, real hyperparameters, test exact match, duration."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = t.user_attrs.get("params", t.params)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value,
                **params,
                "epochs": len(t.intermediate_values),
                "test_exact_match": t.user_attrs.get("test_exact_match"),
                "seconds": round(duration, 1) if duration is not None else None,
                "note": t.user_attrs.get("fail_reason") or t.user_attrs.get("stop_reason") or "",
            }
        )
    return pd.DataFrame(rows)
