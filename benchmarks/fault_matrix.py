"""Fault matrix (not part of the test suite): each fault against the real services of this machine.

Every row injects one fault on 127.0.0.1 only (services this script starts or the machine runs;
small tmpfs mounts it makes and removes), lets a real study (the real CLI and its worker
processes, real tiny trials) run through it, then reads back with Optuna and SQL on the MLflow
database: trials counted vs expected, runs left RUNNING (Optuna trials + MLflow trial runs; must
be 0), metric points lost (a reported epoch without its metrics, a COMPLETE trial without its
test metrics; must be 0) and duplicated. Rows:

  fail-fast: launch with a tracking server / a storage that is not up
  mlflow-outage: the tracking server stopped for --outage s mid-study (inside the window)
  mlflow-past-window: stopped longer than the study's outage_window (trials FAIL, study goes on)
  postgres-restart: the whole PostgreSQL server stopped for --pg-down s and started again
  disk-full-checkpoint: the workers' temp dir (checkpoints) fills up during a trial, then frees
  disk-full-artifacts: the embedded store's artifact dir fills up during a trial, then frees
  corrupt-checkpoint: last.pt truncated, then resumed from
  kill-mid-checkpoint: a process SIGKILLed at random while writing checkpoints, then resumed from
  kill-worker: a worker SIGKILLed mid-trial (heartbeats: its trial is retried)
  kill-worker-resume: a worker SIGKILLed at 2/3 of a trial: its retry resumes from the last upload

Run (root; PostgreSQL on 127.0.0.1:5432 with trust auth, restarted by one row):
  .venv/bin/python benchmarks/fault_matrix.py [--only ROW ...] [--outage 60] [--pg-down 20]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_services import MlflowServer, Postgres, free_port, mlflow_counts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "search.cli"]
PER_EPOCH = ("train_loss", "val_loss", "val_accuracy", "val_exact_match", "lr", "samples_per_sec")
ROWS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {}


def study_text(name: str, n_trials: int, *, epochs: int = 6, train_size: int = 2000, extra: str = "") -> str:
    """A small real study: a trial trains a few seconds, so faults land mid-trial."""
    return f"""\
[study]
name = "{name}"
metric = "val_accuracy"
n_trials = {n_trials}
seed = 0
{extra}

[study.pruner]
type = "none"

[data]
range = [1, 65536]
train_size = {train_size}
val_size = 200
test_size = 200

[training]
epochs = {epochs}
batch_size = 64
threads = 1

[search]
base = {{ choices = [16, 24] }}
d_model = {{ choices = [32, 64] }}
nhead = {{ choices = [2, 4] }}
num_layers = 1
lr = {{ low = 1e-3, high = 1e-2, log = true }}
"""


HEARTBEAT = "heartbeat_interval = 2\ngrace_period = 8\nmax_retries = 2"


def row(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def register(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        ROWS[name] = fn
        return fn

    return register


# --- running studies ----------------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTUNA_", "MLFLOW_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **(extra or {})}


def start_workers(
    work: Path, text: str, count: int, storage: str, tracking: str, env: dict[str, str] | None = None
) -> list[subprocess.Popen]:
    """``count`` `collatz-hpo worker` processes of the study ``text`` (logs: w<i>.log)."""
    (work / "study.toml").write_text(text)
    procs = []
    for i in range(count):
        cmd = [*CLI, "worker", "study.toml", "--storage", storage, "--tracking-uri", tracking]
        log = open(work / f"w{i}.log", "w")  # noqa: SIM115 - the worker's stdout
        procs.append(
            subprocess.Popen(
                [*cmd, "--worker-index", str(i)],
                cwd=work,
                env=_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int | None]:
    end = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(1.0, end - time.monotonic()))
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return [p.returncode for p in procs]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


def _study(storage: str, name: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def mid_trial(storage: str, name: str, epochs: int = 1) -> Callable[[], bool]:
    """True once a trial is RUNNING with at least ``epochs`` reported epochs."""
    from optuna.trial import TrialState

    def check() -> bool:
        trials = _study(storage, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(len(t.intermediate_values) >= epochs for t in trials)

    return check


def has_state(storage: str, name: str, state: str) -> Callable[[], bool]:
    def check() -> bool:
        return any(t.state.name == state for t in _study(storage, name).get_trials(deepcopy=False))

    return check


def verify(storage: str, mlflow_db: str, name: str, expected: int) -> dict[str, Any]:
    """What the study holds after the fault: counts, RUNNING left, metrics lost and doubled."""
    from optuna.trial import TrialState

    from search import keys

    trials = _study(storage, name).get_trials(deepcopy=False)
    counts = keys.state_counts(trials)
    mlflow = mlflow_counts(mlflow_db, name)
    lost = 0
    for t in trials:
        run = keys.run_id(t)
        if run is None or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        have = mlflow["points"].get(run, set())
        lost += len({(k, s) for s in t.intermediate_values for k in PER_EPOCH} - have)
        lost += t.state == TrialState.COMPLETE and not any(k == "test_exact_match" for k, _ in have)
    reasons = collections.Counter(
        re.sub(r"https?://[^ ]+ ", "", keys.fail_reason(t, "worker died (heartbeat stale)"))[:75]
        for t in trials
        if t.state == TrialState.FAIL
    )
    return {
        "counted": f"{keys.counted(counts)}/{expected}",
        "failed": counts["fail"],
        "running_left": counts["running"] + mlflow["status"].get("RUNNING", 0),
        "metrics_lost": lost,
        "duplicates": mlflow["duplicates"],
        "doubled_keys": mlflow["doubled_keys"],
        "fail_reasons": "; ".join(f"{n}x {r}" for r, n in reasons.items()),
    }


def tail(work: Path, pattern: str) -> list[str]:
    """Worker log lines containing ``pattern``."""
    lines = []
    for log in sorted(work.glob("w*.log")):
        lines += [line.strip() for line in log.read_text().splitlines() if pattern in line]
    return lines


@contextlib.contextmanager
def shared_services(work: Path) -> Iterator[tuple[str, str, MlflowServer]]:
    """A fresh Optuna database and an `mlflow server` on a fresh MLflow database (PostgreSQL)."""
    pg = Postgres()
    try:
        storage, mlflow_db = pg.create("fault_optuna"), pg.create("fault_mlflow")
        server = MlflowServer(mlflow_db, work, workers=1)
        server.start()
        try:
            yield storage, mlflow_db, server
        finally:
            server.stop()
    finally:
        pg.drop_all()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte; returns the filler file."""
    filler = path / "filler.bin"
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * (1 << 16))
            fh.flush()
    return filler


# --- the rows -----------------------------------------------------------------------------------


@row("fail-fast")
def fail_fast(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """launch against a tracking server and a storage that are not up: one line, exit 2, nothing written."""
    (work / "study.toml").write_text(study_text("ff", 2))
    out = []
    for flag, url in (
        ("--tracking-uri", f"http://127.0.0.1:{free_port()}"),
        ("--storage", f"postgresql://u:secret@127.0.0.1:{free_port()}/x"),
    ):
        start = time.monotonic()
        proc = subprocess.run(
            [*CLI, "launch", "study.toml", flag, url], cwd=work, env=_env(), capture_output=True, text=True
        )
        written = sorted(p.name for p in work.iterdir() if p.name != "study.toml")
        out.append(
            f"{flag} down: exit {proc.returncode} in {time.monotonic() - start:.1f}s, "
            f"{len(proc.stderr.strip().splitlines())} line, written {written or 'nothing'}"
        )
    return {
        "done": "launch with the tracking server / the storage not up",
        "study": "; ".join(out),
        "counted": "0/0",
        "running_left": 0,
        "metrics_lost": 0,
    }


def _outage(args: argparse.Namespace, work: Path, down: float, window: float | None) -> dict[str, Any]:
    """Stop the tracking server for ``down`` s once a trial is mid-way; study of 6 trials, 2 workers."""
    extra = HEARTBEAT + (f"\noutage_window = {window:g}" if window is not None else "")
    with shared_services(work) as (storage, mlflow_db, server):
        procs = start_workers(work, study_text("outage", 6, extra=extra), 2, storage, server.url)
        wait_until(mid_trial(storage, "outage"), 180, "a trial mid-way")
        server.stop()
        time.sleep(down)
        server.start()
        codes = wait_all(procs, 600)
        result = verify(storage, mlflow_db, "outage", 6)
    result["study"] = f"workers exit {codes}; " + (
        f"{result['failed']} trial(s) FAIL: {result['fail_reasons']}"
        if result["failed"]
        else "no trial failed"
    )
    return result


@row("mlflow-outage")
def mlflow_outage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = _outage(args, work, args.outage, None)
    result["done"] = f"mlflow server stopped {args.outage:g}s mid-trial (window 300s)"
    return result


@row("mlflow-past-window")
def mlflow_past_window(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = _outage(args, work, args.outage, args.outage / 3)
    result["done"] = f"mlflow server stopped {args.outage:g}s, study's outage_window {args.outage / 3:g}s"
    return result


@row("postgres-restart")
def postgres_restart(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole PostgreSQL (Optuna's storage and the MLflow server's backend) gone for a while."""
    with shared_services(work) as (storage, mlflow_db, server):
        procs = start_workers(work, study_text("pgrestart", 6, extra=HEARTBEAT), 2, storage, server.url)
        wait_until(mid_trial(storage, "pgrestart"), 180, "a trial mid-way")
        start = time.monotonic()
        Postgres().restart(args.pg_down)
        down = time.monotonic() - start
        codes = wait_all(procs, 600)
        result = verify(storage, mlflow_db, "pgrestart", 6)
    result["done"] = f"PostgreSQL stopped (fast) and started after {down:.0f}s, mid-trial"
    result["study"] = f"workers exit {codes}; {result['failed']} trial(s) FAIL {result['fail_reasons'] or ''}"
    return result


def _disk_full(args: argparse.Namespace, work: Path, which: str) -> dict[str, Any]:
    """Launch a study of 6 trials (embedded store, 2 workers); fill ``which`` mid-trial until a
    trial FAILs, then free it."""
    store = work / "mlruns"
    target = store / "artifacts" if which == "artifacts" else work / "tmp"
    with tmpfs(target, "64m"):
        (work / "study.toml").write_text(study_text("disk", 6, epochs=8))
        env = _env({"TMPDIR": str(target)} if which == "tmp" else None)
        log = open(work / "w0.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*CLI, "launch", "study.toml", "--workers", "2"],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        storage = f"sqlite:///{store / 'optuna.db'}"
        wait_until(
            lambda: (store / "optuna.db").exists() and mid_trial(storage, "disk", 2)(), 300, "mid-trial"
        )
        filler = fill(target)
        with contextlib.suppress(TimeoutError):
            wait_until(has_state(storage, "disk", "FAIL"), 120, "a FAIL")
        filler.unlink()
        code = wait_all([proc], 600)[0]
        leftovers = [p.name for p in target.rglob("*") if p.name.endswith(".tmp")]
        bad = _unreadable_checkpoints(store) if which == "artifacts" else []
    result = verify(storage, f"sqlite:///{store / 'mlflow.db'}", "disk", 6)
    result["study"] = (
        f"launch exit {code}; {result['failed']} trial(s) FAIL {result['fail_reasons']}; "
        f"partial .tmp files left {len(leftovers)}; unreadable checkpoints in MLflow {len(bad)}"
    )
    return result


def _unreadable_checkpoints(store: Path) -> list[Path]:
    from core import CheckpointError, load_checkpoint

    bad = []
    for path in store.glob("artifacts/**/checkpoints/*.pt"):
        try:
            load_checkpoint(path)
        except CheckpointError:
            bad.append(path)
    return bad


@row("disk-full-checkpoint")
def disk_full_checkpoint(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = _disk_full(args, work, "tmp")
    result["done"] = "workers' temp dir (checkpoints; 64 MB tmpfs) filled mid-trial, freed after a FAIL"
    return result


@row("disk-full-artifacts")
def disk_full_artifacts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result = _disk_full(args, work, "artifacts")
    result["done"] = "artifact store (64 MB tmpfs) filled mid-trial, freed after a FAIL"
    return result


@row("corrupt-checkpoint")
def corrupt_checkpoint(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train 3 epochs (a checkpoint per epoch), truncate last.pt, resume to epoch 5."""
    lines = _train_tiny(work, 3, None, [])
    last = work / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    lines = []
    history = _train_tiny(work, 5, last, lines)
    said = [line.replace(f"{work}/", "") for line in lines if line.startswith(("cannot", "resumed", "no "))]
    return {
        "done": "last.pt truncated to a third, then Trainer.train(resume_from=last.pt)",
        "study": f"{' / '.join(said)}; trained epochs {history['epoch']}",
        "counted": "-",
        "running_left": 0,
        "metrics_lost": 0,
    }


def _train_tiny(folder: Path, epochs: int, resume: Path | None, lines: list[str]) -> Any:
    import torch

    from core import BatchIterator, CollatzTransformer, Trainer, make_splits

    torch.manual_seed(0)
    train, val = make_splits((1, 10**5), [96, 32], base=10, seed=0)
    model = CollatzTransformer(
        vocab_size=train.vocab_size,
        d_model=16,
        nhead=2,
        num_layers=1,
        num_decoder_layers=1,
        max_seq_length=train.max_length,
    )
    out = folder if resume is None else folder / "resumed"
    batches = BatchIterator(train, 16), BatchIterator(val, 64, shuffle=False)
    trainer = Trainer(model, *batches, device="cpu", checkpoint_dir=out, log=lines.append)
    return trainer.train(epochs, save_every=1, resume_from=resume)


KILL_WRITER = """
import sys, torch
from core.checkpoint import save_checkpoint
payload = {"model_config": {}, "model_state": {"w": torch.randn(16_000_000)}, "epoch": 0}
while True:
    payload["epoch"] += 1
    save_checkpoint(sys.argv[1] + "/last.pt", payload)
"""


@row("kill-mid-checkpoint")
def kill_mid_checkpoint(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """SIGKILL a process that writes 64 MB checkpoints in a loop, 20 times at random moments."""
    import random

    from core import load_checkpoint, resume_candidates

    rng, cut, good = random.Random(0), 0, 0
    last = work / "last.pt"
    for _ in range(20):
        before = set(work.glob(".*.tmp"))
        mtime = last.stat().st_mtime_ns if last.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(work)], env=_env())
        # this process's first checkpoint is in place: from now on it is always mid-write or between
        wait_until(lambda m=mtime: last.exists() and last.stat().st_mtime_ns != m, 60, "a first checkpoint")
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cut += len(set(work.glob(".*.tmp")) - before)  # a write the kill cut short
        good += load_checkpoint(resume_candidates(work)[0])["epoch"] > 0
    return {
        "done": "20 SIGKILLs of a process writing 64 MB checkpoints in a loop",
        "study": f"{cut} kills cut a write (partial .tmp left beside); "
        f"resume found a readable last.pt {good}/20 times",
        "counted": "-",
        "running_left": 0,
        "metrics_lost": 0,
    }


@row("kill-worker")
def kill_worker(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """SIGKILL one of two workers mid-trial (checkpoints written every epoch)."""
    with shared_services(work) as (storage, mlflow_db, server):
        procs = start_workers(work, study_text("killed", 6, extra=HEARTBEAT), 2, storage, server.url)
        wait_until(lambda: bool(tail(work, "epoch 2/")) and procs[1].poll() is None, 180, "epoch 2")
        os.killpg(procs[1].pid, signal.SIGKILL)
        codes = wait_all(procs, 600)
        result = verify(storage, mlflow_db, "killed", 6)
    retried = tail(work, "retries trial")
    result["done"] = "worker 1 of 2 SIGKILLed mid-trial (heartbeat 2 s, grace 8 s)"
    result["study"] = f"workers exit {codes}; {result['failed']} FAIL {result['fail_reasons']}; {retried}"
    return result


@row("kill-worker-resume")
def kill_worker_resume(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """SIGKILL one of two workers after epoch 6 of a 9-epoch trial (checkpoint_every: the default,
    bounded by the upload cost); its retry resumes from the latest checkpoint it uploaded."""
    with shared_services(work) as (storage, mlflow_db, server):
        text = study_text("resumed", 4, epochs=9, extra=HEARTBEAT)
        procs = start_workers(work, text, 2, storage, server.url)
        wait_until(lambda: bool(_lines(work / "w1.log", "epoch 6/9")) and procs[1].poll() is None, 300, "2/3")
        os.killpg(procs[1].pid, signal.SIGKILL)
        codes = wait_all(procs, 600)
        result = verify(storage, mlflow_db, "resumed", 4)
        lost = _lost_compute(storage, server.url, "resumed")
    result["done"] = "worker 1 of 2 SIGKILLed after epoch 6 of 9 (heartbeat 2 s, grace 8 s)"
    result["study"] = (
        f"workers exit {codes}; {result['failed']} FAIL {result['fail_reasons']}; {lost}; "
        + "; ".join(tail(work, "resumes trial"))
    )
    return result


def _lines(log: Path, pattern: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if pattern in line] if log.exists() else []


def _lost_compute(storage: str, tracking: str, name: str) -> str:
    """Training + validation seconds of the killed trial's run (lost without a resume) and of its
    epochs after the checkpoint its retry resumed from (lost with it); the uploads' share of the
    completed trials' time."""
    from mlflow.tracking import MlflowClient

    from search import keys

    client, trials = MlflowClient(tracking), _study(storage, name).get_trials(deepcopy=False)
    retries = [t for t in trials if keys.resumed(t) is not None]
    if not retries:
        return "no trial resumed"
    resumed = keys.resumed(retries[0])
    assert resumed is not None
    per_epoch: dict[int, float] = collections.defaultdict(float)
    for key in ("epoch_time", "val_time"):
        for m in client.get_metric_history(resumed.run_id, key):
            per_epoch[m.step] += m.value
    before = sum(per_epoch.values())
    after = sum(v for step, v in per_epoch.items() if step > resumed.epoch)
    done = [t for t in trials if t.state.name == "COMPLETE" and keys.checkpoint(t) is not None]
    uploads = sum(keys.checkpoint(t).upload_seconds for t in done)  # type: ignore[union-attr]
    spent = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return (
        f"compute lost: {before:.1f} s ({max(per_epoch)} epochs) without resuming, {after:.1f} s "
        f"({max(per_epoch) - resumed.epoch} epochs) with it (resumed after epoch {resumed.epoch}); "
        f"checkpoint uploads {uploads / spent * 100:.2f} % of trial time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(ROWS), help="run these rows only")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the tracking server is down")
    parser.add_argument("--pg-down", type=float, default=20.0, help="seconds PostgreSQL is down")
    args = parser.parse_args()
    print(
        "| fault | what was done | what the study did | trials counted / expected | runs left RUNNING "
        "| metric points lost | points doubled |"
    )
    print("|---|---|---|---|---:|---:|---:|")
    for name in args.only or list(ROWS):
        with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as tmp:
            try:
                r = ROWS[name](args, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a row that could not run says why
                r = {
                    "done": "-",
                    "study": f"row failed: {type(exc).__name__}: {exc}",
                    "counted": "-",
                    "running_left": "-",
                    "metrics_lost": "-",
                }
        doubled = r.get("duplicates", 0)
        doubled = f"{doubled} {r.get('doubled_keys')}" if doubled else "0"
        print(
            f"| {name} | {r['done']} | {r['study']} | {r['counted']} | {r['running_left']} "
            f"| {r['metrics_lost']} | {doubled} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
