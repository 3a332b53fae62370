"""Command latency (not part of the test suite): `status` and `predict` against `import torch` alone.

What a user waits for when they type a command is mostly imports, and this shared machine's
speed moves from day to day; so the commands are timed interleaved, in one run, next to the
floor every model-running command pays: ``python -c "import torch"``.

Without ``--store``, a small study is made first in a temporary folder (``studies/tiny.toml``,
one worker, on the embedded store) and its best trial exported. Then, ``--repeat`` rounds of:
  python -c "import torch"
  collatz-hpo status STUDY
  collatz-hpo predict EXPORT 27 97 12345
each timed from process start to exit (wall seconds); prints median and range.

Run: .venv/bin/python benchmarks/bench_commands.py [--repeat 7]
     .venv/bin/python benchmarks/bench_commands.py --store DIR --study NAME --export DIR
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
NUMBERS = ["27", "97", "12345"]


def run(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one command, which must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTUNA_", "MLFLOW_"))}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds


def prepare(store: Path) -> tuple[str, Path]:
    """A finished tiny study with an exported best trial, in ``store``: (study name, export dir)."""
    cli = str(BIN / "collatz-hpo")
    run([cli, "launch", str(ROOT / "studies" / "tiny.toml"), "--workers", "1"], store)
    run([cli, "export", "tiny", "--out", "export"], store)
    return "tiny", store / "export"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="folder holding the study's mlruns/ (default: make one)")
    parser.add_argument("--study", help="study to show with status (with --store)")
    parser.add_argument("--export", type=Path, help="export directory to predict with (with --store)")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (default: 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        if args.store is None:
            store = Path(tmp)
            study, export = prepare(store)
        else:
            if not (args.study and args.export):
                parser.error("--store needs --study and --export")
            store, study, export = args.store, args.study, args.export.resolve()
        cli = str(BIN / "collatz-hpo")
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            f"collatz-hpo status {study}": [cli, "status", study],
            f"collatz-hpo predict {export.name} 27 97 12345": [cli, "predict", str(export), *NUMBERS],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache once, untimed
            run(argv, store)
        for _ in range(args.repeat):
            for name, argv in commands.items():
                times[name].append(run(argv, store))
    print(f"{args.repeat} rounds, interleaved; wall seconds from start to exit, median (range)")
    for name, values in times.items():
        print(f"{name:60} {statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
