"""CPU, memory and (on CUDA) GPU use of a trial, recorded by MLflow's own system-metrics monitor.

MLflow's ``SystemMetricsMonitor`` samples psutil (CPU utilisation, system memory, disk, network)
and, when nvidia-ml-py is installed and a GPU is present, NVML (GPU utilisation, memory, power)
in a background thread and logs them to the run as ``system/*`` metrics, step = sample. One sample
costs a few milliseconds (``benchmarks/bench_system_metrics.py``): at the default interval of
``[training] system_metrics`` (seconds; 0 turns them off) that is far below 1 % of a trial.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["system_metrics"]

# Seconds a trial waits for the monitor to stop and flush. MLflow's ``finish`` joins its thread
# without a limit, and that thread may sit in a store call (a locked sqlite file after Ctrl-C cut
# a write short, a tracking server mid-outage): the trial must end and be recorded regardless.
FINISH_TIMEOUT = 10.0


@contextlib.contextmanager
def system_metrics(run_id: str, tracking_uri: str, interval: float) -> Iterator[None]:
    """Sample every ``interval`` seconds into ``run_id``'s ``system/*`` metrics while the block runs.

    ``interval`` 0: nothing is sampled. A sample is logged once its interval has passed, so a
    block shorter than one interval records none.
    """
    if interval <= 0:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        # stops the thread and flushes what it sampled; samples still unflushed after
        # FINISH_TIMEOUT are given up (the thread is a daemon), never the trial's own record
        stopper = threading.Thread(target=monitor.finish, name="collatz-hpo-system-metrics", daemon=True)
        stopper.start()
        stopper.join(FINISH_TIMEOUT)
