"""Load test (not part of the test suite): N workers on one PostgreSQL and one `mlflow server`.

Each worker is a process running the real worker loop (``search.study.workers.Worker``: study lock,
count, ask, tell, heartbeats, parent-run updates) with the real storage and tracking code; only
the trial body is light: it samples the study's params, opens the trial's MLflow run, then per
epoch sleeps ``--epoch-seconds`` and logs the metric batch a real trial logs (losses, accuracy,
exact match, lr, throughput and the per-(k, k') class curves) and reports to the pruner, and at
the end logs the test metrics and closes the run. Per N it prints trials/min, p50/p99 latency of
ask (inside the lock), of a whole "lock + count + ask" step, of tell and of a metric batch, the
PostgreSQL connections in use (peak), the exact trial count, metrics lost and duplicated (from
the MLflow database with SQL), runs left RUNNING, and the first error a worker met.

Run (root, this machine's PostgreSQL on 127.0.0.1:5432 with trust auth):
  .venv/bin/python benchmarks/load_test.py --workers 8 32 64 [--mlflow-workers 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_services import MlflowServer, Postgres, mlflow_counts  # noqa: E402

from search import keys  # noqa: E402
from search.locations import Locations  # noqa: E402
from search.spec.space import suggest  # noqa: E402
from search.spec.study_file import parse_study  # noqa: E402
from search.study.opening import open_study  # noqa: E402
from search.study.workers import Worker  # noqa: E402
from search.tracking.runs import class_metrics  # noqa: E402
from search.trial.body import TrialBody, TrialEnv, TrialOutcome  # noqa: E402

CLASSES = [(1, 1), (1, 2), (2, 1), (1, 3), (2, 2), (3, 1), (1, 4), (4, 1)]
EPOCH_KEYS = ["train_loss", "val_loss", "val_accuracy", "val_exact_match", "lr", "samples_per_sec"]
EPOCH_KEYS += ["epoch_time", "val_time"] + [f"val_exact_match_k{k}_kp{kp}" for k, kp in CLASSES]
TEST_KEYS = ["test_exact_match", "test_token_accuracy", "best_epoch"]
TEST_KEYS += [f"test_exact_match_k{k}_kp{kp}" for k, kp in CLASSES]


def study_dict(name: str, n_trials: int, epochs: int) -> dict[str, Any]:
    """A study file as a dict: median pruning (some trials PRUNED), heartbeats, TPE."""
    return {
        "study": {
            "name": name,
            "metric": "val_exact_match",
            "n_trials": n_trials,
            "sampler": "tpe",
            "heartbeat_interval": 10,
            "grace_period": 120,
            "pruner": {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 1},
        },
        "data": {"range": [1, 65536], "train_size": 1000, "val_size": 100, "test_size": 100},
        "training": {"epochs": epochs},
        "search": {
            "base": {"choices": [16, 24, 32]},
            "d_model": {"choices": [32, 64]},
            "nhead": {"choices": [2, 4]},
            "num_layers": {"low": 1, "high": 4},
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        },
    }


def sleepy_trial(epoch_seconds: float) -> TrialBody:
    """A trial body (``run_trial``'s protocol) that trains nothing: sleep, log, report."""

    def body(trial: Any, env: TrialEnv, tags: Any) -> TrialOutcome:
        study, cfg, tracker = env.study, env.cfg, env.tracker
        params = suggest(trial, cfg.search)
        keys.set_trial_params(trial, params)
        run_id = tracker.start_trial_run(
            trial.number, keys.parent_run_id(study), {**params, "trial_number": trial.number}, {"p": params}
        )
        keys.set_run_id(trial, run_id)
        try:
            return epochs(
                trial, cfg, tracker, run_id, min(0.95, params["lr"] * 100 * params["num_layers"] / 4)
            )
        except Exception as exc:  # as run_trial does: the trial FAILs with the reason, the study goes on
            reason = f"{type(exc).__name__}: {exc}"
            keys.set_fail_reason(trial, reason)
            with contextlib.suppress(Exception):
                tracker.end_trial_run(run_id, "FAIL", reason)
            return TrialOutcome(TrialState.FAIL, None, reason)

    def epochs(trial: Any, cfg: Any, tracker: Any, run_id: str, skill: float) -> TrialOutcome:
        value = 0.0
        for epoch in range(1, cfg.training.epochs + 1):
            time.sleep(epoch_seconds)
            value = skill * epoch / cfg.training.epochs
            metrics = {k: value for k in EPOCH_KEYS[:8]}
            metrics.update(class_metrics("val_exact_match", {c: {"exact_match": value} for c in CLASSES}))
            tracker.log_metrics(run_id, metrics, step=epoch)
            trial.report(value, epoch)
            if trial.should_prune():
                tracker.end_trial_run(run_id, "PRUNED")
                return TrialOutcome(TrialState.PRUNED, None, f"pruned at epoch {epoch}")
        tracker.log_metrics(run_id, dict.fromkeys(TEST_KEYS, value), step=cfg.training.epochs)
        tracker.end_trial_run(run_id, "COMPLETE")
        return TrialOutcome(TrialState.COMPLETE, value)

    return body


class Timers:
    """Latencies (seconds) of wrapped calls, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        samples = self.seconds.setdefault(name, [])

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                samples.append(time.perf_counter() - start)

        return timed


def _join(cfg: Any, loc: Locations, index: int) -> Any:
    """Open the study as ``collatz-hpo worker`` does: with its parent run."""
    opened = open_study(cfg, loc, index, log=lambda _m: None)
    opened.ensure_parent_run()
    return opened


def worker_main(cfg_dict: dict, loc: Locations, index: int, out: str, epoch_seconds: float) -> None:
    """One worker process: open the study, run the real worker loop, write its latencies."""
    timers, error = Timers(), None
    try:
        cfg = parse_study(cfg_dict)
        opened = timers.wrap("open_study", _join)(cfg, loc, index)
        opened.study.ask = timers.wrap("ask", opened.study.ask)
        opened.study.tell = timers.wrap("tell", opened.study.tell)
        opened.tracker.log_metrics = timers.wrap("metric_batch", opened.tracker.log_metrics)
        opened.update_parent = timers.wrap("parent_update", opened.update_parent)
        worker = Worker(opened, index, None, lambda _m: None, trial_body=sleepy_trial(epoch_seconds))
        worker._next = timers.wrap("lock_count_ask", worker._next)
        worker.run()
    except BaseException as exc:  # noqa: BLE001 - reported as where it broke
        ours = [f for f in traceback.extract_tb(exc.__traceback__) if "/search/" in f.filename]
        where = f" (in {Path(ours[-1].filename).name}:{ours[-1].lineno} {ours[-1].name})" if ours else ""
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300] + where
    Path(out).write_text(json.dumps({"seconds": timers.seconds, "error": error}))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _sample_connections(pg: Postgres, stop: threading.Event, peak: list[int], mem: list[int]) -> None:
    while not stop.wait(0.5):
        try:
            peak.append(pg.connections())
        except Exception:  # noqa: BLE001 - the server may refuse us too at the peak
            peak.append(-1)
        meminfo = Path("/proc/meminfo").read_text().split()
        mem.append(int(meminfo[meminfo.index("MemAvailable:") + 1]) // 1024)


def run_one(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pg = Postgres()
    optuna_url, mlflow_db = pg.create("load_optuna"), pg.create("load_mlflow")
    work = tmp / f"n{n}"
    work.mkdir()
    server = MlflowServer(mlflow_db, work, workers=args.mlflow_workers, pool=args.mlflow_pool)
    name, n_trials = f"load{n}", n * args.trials_per_worker
    cfg = study_dict(name, n_trials, args.epochs)
    loc = Locations(optuna_url, server.url, None, None)
    try:
        with server.running():
            ctx = mp.get_context("fork")  # workers share the parent's imported modules (memory)
            outs = [work / f"w{i}.json" for i in range(n)]
            procs = [
                ctx.Process(target=worker_main, args=(cfg, loc, i, str(outs[i]), args.epoch_seconds))
                for i in range(n)
            ]
            start = time.perf_counter()
            for p in procs:
                p.start()
            stop, peak, mem = threading.Event(), [], []
            sampler = threading.Thread(target=_sample_connections, args=(pg, stop, peak, mem), daemon=True)
            sampler.start()
            for p in procs:
                p.join()
            wall = time.perf_counter() - start
            stop.set()
            sampler.join()
            return _summarise(n, n_trials, wall, outs, optuna_url, mlflow_db, name, peak, mem)
    finally:
        pg.drop_all()


def _summarise(
    n: int, n_trials: int, wall: float, outs: list[Path], optuna_url: str, mlflow_db: str, name: str,
    peak: list[int], mem: list[int],
) -> dict[str, Any]:  # fmt: skip
    seconds: dict[str, list[float]] = {}
    errors = []
    for out in outs:
        data = json.loads(out.read_text()) if out.exists() else {"seconds": {}, "error": "no report"}
        for k, v in data["seconds"].items():
            seconds.setdefault(k, []).extend(v)
        if data["error"]:
            errors.append(data["error"])
    study = optuna.load_study(study_name=name, storage=optuna_url)
    trials = study.get_trials(deepcopy=False)
    counts = keys.state_counts(trials)
    mlflow = mlflow_counts(mlflow_db, name)
    lost = 0
    for t in trials:
        run = keys.run_id(t)
        if run is None:
            continue
        steps = sorted(t.intermediate_values)
        expected = {(k, s) for s in steps for k in EPOCH_KEYS}
        if t.state == TrialState.COMPLETE:
            expected |= {(k, steps[-1]) for k in TEST_KEYS}
        lost += len(expected - mlflow["points"].get(run, set()))
    return {
        "workers": n,
        "n_trials": n_trials,
        "counted": keys.counted(counts),
        "complete": counts["complete"],
        "pruned": counts["pruned"],
        "failed": counts["fail"],
        "optuna_running": counts["running"],
        "mlflow_running": mlflow["status"].get("RUNNING", 0),
        "wall_s": round(wall, 1),
        "trials_per_min": round(keys.counted(counts) / wall * 60, 1),
        **{f"{k}_p50_ms": round(_pct(v, 0.5), 1) for k, v in sorted(seconds.items())},
        **{f"{k}_p99_ms": round(_pct(v, 0.99), 1) for k, v in sorted(seconds.items())},
        "metric_batches": len(seconds.get("metric_batch", [])),
        "metrics_lost": lost,
        "metric_duplicates": mlflow["duplicates"],
        "pg_connections_peak": max(peak, default=0),
        "mem_available_min_mb": min(mem, default=0),
        "worker_errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-seconds", type=float, default=1.0)
    parser.add_argument("--mlflow-workers", type=int, default=2, help="uvicorn workers of the mlflow server")
    parser.add_argument(
        "--mlflow-pool", type=int, default=5, help="database connections per server worker (and as many more)"
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
        for n in args.workers:
            row = run_one(n, args, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
