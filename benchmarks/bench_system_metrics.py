"""System-metrics benchmark (not part of the test suite): what MLflow's monitor costs a trial.

On a fresh embedded store (sqlite, as studies use by default) it times what the monitor thread
of ``search.tracking.system_metrics`` does per sample — read CPU, memory, disk and network (psutil), ask
MLflow whether the run still runs, log the sample — and, once per trial, starting and stopping
the monitor. Per sample it reports wall time and the CPU time of the thread (what it takes from
training on a busy machine); the share of a trial is per-sample time / sampling interval, plus
the start/stop cost over the trial's length.

Run: .venv/bin/python benchmarks/bench_system_metrics.py [--samples 200] [--interval 5] [--trial 10]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient

from search.tracking.system_metrics import system_metrics


def per_sample(uri: str, run_id: str, samples: int) -> tuple[float, float]:
    """Median (wall, thread CPU) seconds of one monitor step: collect, check the run, log."""
    monitor = SystemMetricsMonitor(run_id, sampling_interval=1, tracking_uri=uri)
    walls, cpus = [], []
    for _ in range(samples):
        wall, cpu = time.perf_counter(), time.thread_time()
        monitor.collect_metrics()
        MlflowClient(uri).get_run(run_id)  # as the monitor loop does after every sample
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()  # the logger may batch; count the write every time
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def start_stop(uri: str, run_id: str, repeat: int) -> float:
    """Median seconds to start and stop the monitor around an empty block (once per trial)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with system_metrics(run_id, uri, 60.0):
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--interval", type=float, default=5.0, help="sampling interval to cost (s)")
    parser.add_argument("--trial", type=float, default=10.0, help="trial length to cost (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sysmetrics-") as tmp:
        uri = f"sqlite:///{Path(tmp, 'mlflow.db')}"
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("bench")).info.run_id
        wall, cpu = per_sample(uri, run_id, args.samples)
        once = start_stop(uri, run_id, 20)
    print(f"per sample: {wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU of the monitor thread")
    print(f"start + stop per trial: {once * 1e3:.1f} ms (in the trial's own thread)")
    sampling, blocking = cpu / args.interval * 100, once / args.trial * 100
    print(
        f"every {args.interval:g} s in a {args.trial:g} s trial: {sampling + blocking:.2f} % of the trial "
        f"({sampling:.2f} % CPU taken by sampling + {blocking:.2f} % start/stop; the monitor thread's "
        f"wall time, mostly waiting on the database, is {wall / args.interval * 100:.2f} % of the interval)"
    )


if __name__ == "__main__":
    main()
