"""UI benchmark (not part of the test suite): memory and start-up of the MLflow UI, before and after.

Starts, one after the other and ``--repeat`` times each, on the embedded store of ``--store``:
  - "mlflow defaults": ``mlflow ui --backend-store-uri ... --host 127.0.0.1 --port P`` as
    collatz-hpo started it before (MLflow 3.17: 4 uvicorn workers, a job runner, huey consumers);
  - "collatz-hpo ui": ``collatz-hpo ui`` (one worker, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false,
    and the study links it looks up and prints first).
For each it measures the seconds from start to the first HTTP 200 of ``/``, then samples the
whole process tree (psutil) every 0.5 s for ``--settle`` seconds: resident memory summed over
the processes (RSS, what `top` shows; shared pages count once per process) and proportional set
size (PSS, shared pages split between the processes), the peak of each, and how many processes.

Run: .venv/bin/python benchmarks/bench_ui.py --store DIR [--repeat 3] [--settle 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(store: Path, port: int) -> dict[str, list[str]]:
    db = f"sqlite:///{(store / 'mlruns' / 'mlflow.db').resolve()}"
    defaults = [
        str(BIN / "mlflow"),
        "ui",
        "--backend-store-uri",
        db,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    defaults += ["--default-artifact-root", str((store / "mlruns" / "artifacts").resolve())]
    return {
        "mlflow defaults": defaults,
        "collatz-hpo ui": [str(BIN / "collatz-hpo"), "ui", "--port", str(port)],
    }


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(RSS sum, PSS sum, process count) of ``root`` and all its descendants."""
    rss = pss = count = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return rss, pss, count


def measure(cmd: list[str], cwd: Path, port: int, settle: float) -> dict[str, float]:
    """Start ``cmd``, time its first 200, sample its tree's memory for ``settle`` s, stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:2]} exited with {proc.returncode}")
            time.sleep(0.1)
        first = time.perf_counter() - start
        samples = []
        end = time.perf_counter() + settle
        while time.perf_counter() < end:
            samples.append(tree_memory(psutil.Process(proc.pid)))
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "first_200_s": first,
        "rss_gb": max(s[0] for s in samples) / 1e9,
        "pss_gb": max(s[1] for s in samples) / 1e9,
        "processes": max(s[2] for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("."), help="directory holding mlruns/")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of memory samples after the 200")
    args = parser.parse_args()
    if not (args.store / "mlruns" / "mlflow.db").is_file():
        sys.exit(f"bench_ui: no embedded store at {args.store / 'mlruns'}: launch a study there first")
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for label in ("mlflow defaults", "collatz-hpo ui"):
            port = free_port()
            cmd = commands(args.store, port)[label]
            results.setdefault(label, []).append(measure(cmd, args.store, port, args.settle))
            time.sleep(2)  # let the page cache and the CPUs settle between servers
    memory = psutil.virtual_memory().total / 1e9
    print(f"{psutil.cpu_count()} CPUs, {memory:.0f} GB; median of {args.repeat} starts")
    for label, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        firsts = ", ".join(f"{r['first_200_s']:.1f}" for r in runs)
        print(
            f"[{label}] first HTTP 200 after {med['first_200_s']:.1f} s (runs: {firsts}); "
            f"peak resident memory {med['rss_gb']:.2f} GB RSS summed, {med['pss_gb']:.2f} GB PSS, "
            f"over {med['processes']:.0f} processes"
        )


if __name__ == "__main__":
    main()
