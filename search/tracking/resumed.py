"""What a resumed run takes over from the run it goes on from: its uploaded checkpoints and its
metric history up to the checkpoint's step (``search.trial.resume`` decides when).

The history is copied point by point with the original timestamps, so a copy that is sent again
after a dropped connection adds nothing (MLflow drops points it already holds), and the new run's
curves start at step 1 with no step logged twice. System metrics (``system/...``) stay with the run
whose machine they describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlflow.entities import Metric

from search.tracking.names import checkpoint_path
from search.tracking.runs import Tracker

__all__ = ["SYSTEM_PREFIX", "copy_history", "download_checkpoints"]

SYSTEM_PREFIX = "system/"  # MLflow's system metrics: not copied


def download_checkpoints(
    tracker: Tracker, run_id: str, names: Sequence[str], dst: Path
) -> tuple[list[Path], list[str]]:
    """The checkpoints ``names`` of run ``run_id`` copied into ``dst``: (the files, one line per
    checkpoint that could not be fetched). Each is retried across the study's outage window."""
    got, missing = [], []
    for name in names:
        try:
            path = tracker.client.download(f"runs:/{run_id}/{checkpoint_path(name)}", dst)
        except Exception as exc:  # not uploaded, or the store lost it: the next one, or the start
            missing.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
            continue
        target = dst / name  # where it lands (moved there should a store keep the folder)
        Path(path).replace(target)
        got.append(target)
    return got, missing


def copy_history(tracker: Tracker, src: str, dst: str, last_step: int) -> int:
    """Every metric point of run ``src`` at a step up to ``last_step`` logged to run ``dst`` (system
    metrics aside); returns how many."""
    client = tracker.client
    points: list[Metric] = []
    for key in sorted(client.get_run(src).data.metrics):
        if key.startswith(SYSTEM_PREFIX):
            continue
        for m in client.get_metric_history(src, key):
            if m.step <= last_step:
                points.append(Metric(key, m.value, m.timestamp, m.step))
    tracker.log_points(dst, points)
    return len(points)
