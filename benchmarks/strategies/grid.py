"""The benchmark's grid (``benchmarks/strategies_grid.toml``) and its recorded learning-curve table.

The table is long: one row per run x epoch, with the run's own columns repeated on each of its
rows. A run is one configuration (``config``, its index in :func:`grid_points`) trained with one
training seed to its end (16 epochs or early stopping).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pandas as pd

from search.spec.study_file import StudyConfig, load_study

HERE = Path(__file__).resolve().parent.parent
GRID_FILE = HERE / "strategies_grid.toml"
RESULTS = HERE / "results" / "strategies"
TABLE = RESULTS / "curves.csv.gz"

#: The searched parameters, in the grid's order (the last varies fastest).
AXES = ("base", "d_model", "nhead", "num_layers", "lr")
#: Per-epoch columns of the table.
EPOCH_COLUMNS = (
    "epoch",
    "val_exact_match",
    "val_loss",
    "val_accuracy",
    "train_loss",
    "samples_seen",
    "epoch_wall",  # wall seconds from the end of the previous epoch (or training start) to this one's
    "epoch_cpu",  # process CPU seconds over the same span: the replay's cost (one torch thread)
    "train_time",  # the trainer's own wall figures: training pass, validation pass
    "val_time",
)
#: Per-run columns, repeated on every row of the run.
RUN_COLUMNS = (
    "config",
    *AXES,
    "seed",
    "epochs_run",
    "best_epoch",
    "test_exact_match",
    "test_token_accuracy",
    "setup_cpu",  # model, optimizer and batches before the first epoch
    "setup_wall",
    "tail_cpu",  # loading the best checkpoint and the held-out test evaluation
    "tail_wall",
    "num_parameters",
    "stop_reason",
    "load1",  # the machine's 1-minute load average when the run started: how shared it was
)
COLUMNS = (*RUN_COLUMNS, *EPOCH_COLUMNS)


def grid_config(path: str | Path = GRID_FILE) -> StudyConfig:
    """The grid's study file, validated by the platform's own loader."""
    return load_study(path)


def grid_points(cfg: StudyConfig | None = None) -> list[dict[str, Any]]:
    """Every configuration of the grid (searched axes only), in a fixed order; index = config id."""
    cfg = cfg or grid_config()
    values = [axis_values(cfg, name) for name in AXES]
    return [dict(zip(AXES, combo, strict=True)) for combo in itertools.product(*values)]


def axis_values(cfg: StudyConfig, name: str) -> list[Any]:
    """The values one searched axis takes: its choices, or the points of a stepped range."""
    param = getattr(cfg.search, name)
    if hasattr(param, "values"):
        return list(param.values)
    count = round((param.high - param.low) / param.step)
    return [round(param.low + i * param.step, 12) for i in range(count + 1)]


def config_of(cfg: StudyConfig, params: dict[str, Any]) -> int:
    """The config id of a trial's params (a sampled lr snapped to the nearest grid value)."""
    index = 0
    for name in AXES:
        values = axis_values(cfg, name)
        value = params[name]
        pos = min(range(len(values)), key=lambda i: abs(values[i] - value))
        if abs(values[pos] - value) > 1e-9 * max(1.0, abs(value)):
            raise ValueError(f"{name} = {value!r} is not a grid value {values}")
        index = index * len(values) + pos
    return index


def replicated(n_configs: int, every: int, lr_count: int) -> list[int]:
    """Configurations trained with extra seeds: one in ``every``, shifted so each lr gets its share."""
    return [i * every + (i % lr_count) for i in range(n_configs // every)]


def read_table(path: str | Path = TABLE) -> pd.DataFrame:
    """The recorded table (empty, with its columns, when nothing is recorded yet)."""
    if not Path(path).is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(path)


def append_runs(rows: list[dict[str, Any]], path: str | Path = TABLE) -> None:
    """Add one run's rows to the table: rewritten whole, atomically (a killed recorder loses nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.concat([read_table(path), pd.DataFrame(rows, columns=list(COLUMNS))], ignore_index=True)
    tmp = path.with_suffix(".tmp.gz")
    table.to_csv(tmp, index=False, compression="gzip", float_format="%.6g")
    os.replace(tmp, path)
