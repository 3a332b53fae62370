"""`make run`'s study, timed at two commits side by side (not part of the test suite).

`make run` is `collatz-hpo launch studies/quick.toml --workers 2` after the set-up. Whether a change
made it slower can only be told on the same machine in the same hour (this machine's speed moves
from day to day), so this script checks out each revision into a temporary folder and runs that
study from each in turn, ``--repeat`` rounds, alternating, each in a fresh folder (a fresh embedded
store), with this venv's packages and each revision's own code (PYTHONPATH). Prints and writes,
per revision: wall seconds of each run, trials finished, the best value.

Needs the machine to itself (the study's timeout caps it at 300 s of starting trials).

Run: .venv/bin/python benchmarks/bench_make_run.py [--revisions c5c7b14 HEAD] [--repeat 1]
        [--out benchmarks/results/make_run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LAUNCH = ["launch", "studies/quick.toml", "--workers", "2"]
COUNTS = re.compile(r"(\d+) complete, (\d+) pruned, (\d+) failed")


def checkout(revision: str, into: Path) -> str:
    """The tree of ``revision`` under ``into`` (git archive: no worktree left behind); its full hash."""
    full = subprocess.run(
        ["git", "rev-parse", revision], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", full], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return full


def launch(tree: Path, cwd: Path) -> dict[str, object]:
    """One `launch studies/quick.toml --workers 2` of ``tree``'s code in the fresh folder ``cwd``."""
    (cwd / "studies").symlink_to(tree / "studies")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTUNA_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", *LAUNCH], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: launch failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    counts = COUNTS.findall(proc.stdout)
    complete, pruned, failed = (int(x) for x in counts[-1]) if counts else (0, 0, 0)
    best = re.findall(r"best (\d[\d.]*)", proc.stdout)
    return {
        "wall_seconds": round(seconds, 1),
        "complete": complete,
        "pruned": pruned,
        "failed": failed,
        "best": best[-1] if best else None,
        "load_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", nargs="+", default=["c5c7b14", "HEAD"])
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each runs every revision once")
    parser.add_argument("--out", type=Path, default=RESULTS / "make_run.json")
    args = parser.parse_args()
    results: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-make-run-") as tmp:
        trees = {rev: Path(tmp, f"tree-{i}") for i, rev in enumerate(args.revisions)}
        hashes = {rev: checkout(rev, tree) for rev, tree in trees.items()}
        for round_ in range(args.repeat):
            for i, (rev, tree) in enumerate(trees.items()):
                cwd = Path(tmp, f"run-{round_}-{i}")
                cwd.mkdir()
                run = launch(tree, cwd)
                results.setdefault(rev, []).append(run)
                print(f"{rev} ({hashes[rev][:7]}) round {round_}: {run}", flush=True)
    out = {
        "command": "benchmarks/bench_make_run.py --revisions "
        + " ".join(args.revisions)
        + f" --repeat {args.repeat}",
        "launch": "collatz-hpo " + " ".join(LAUNCH),
        "revisions": {rev: {"commit": hashes[rev], "runs": runs} for rev, runs in results.items()},
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
