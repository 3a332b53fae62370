"""The strategy benchmark: which sampler and pruner find a good model soonest on this task?

Four steps (see docs/strategies.md, "Which search strategy"):

  record    train every configuration of benchmarks/strategies_grid.toml (144) once to its end, and
            24 of them with 2 more seeds, recording each epoch's validation metrics and its wall and
            CPU seconds, and each run's held-out test exact match: benchmarks/results/strategies/
            curves.csv.gz. Resumable: runs already in the table are skipped.
  replay    run real Optuna samplers and pruners against the table in simulated time with 1, 2 and 8
            workers, 7 strategies x >= 20 seeds: replay.csv.gz (incumbent curves).
  report    figures (PNG) and the markdown tables of docs/strategies.md from the replay.
  validate  one real study of the default strategy (TPE + successive halving) on the grid, through
            the platform, drawn on the replay's band.

Run (from the repository root, ~1 h 45 min of recording on 2 cores, a few minutes for the rest):
  nice -n 10 .venv/bin/python benchmarks/bench_strategies.py record --processes 2
  .venv/bin/python benchmarks/bench_strategies.py replay --seeds 20
  .venv/bin/python benchmarks/bench_strategies.py report
  .venv/bin/python benchmarks/bench_strategies.py validate --seconds 300 --workers 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the strategies package beside this file


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="train the grid and record the learning-curve table")
    rec.add_argument("--processes", type=int, default=2, help="runs trained at once (one thread each)")
    rec.add_argument("--limit", type=int, default=None, help="record at most this many runs, then stop")
    rep = sub.add_parser("replay", help="replay the strategies against the table")
    rep.add_argument("--seeds", type=int, default=20, help="replays per strategy and worker count")
    rep.add_argument("--workers", type=int, nargs="+", default=[1, 2, 8])
    rep.add_argument("--horizon", type=float, default=900.0, help="simulated seconds of each replay")
    rep.add_argument("--overhead", type=float, default=0.5, help="seconds each trial costs besides training")
    rep.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="the table's cost of an epoch")
    rep.add_argument("--processes", type=int, default=2)
    rep.add_argument("--only", nargs="+", default=None, help="strategy names (default: all)")
    rpt = sub.add_parser("report", help="figures and tables from the replay")
    rpt.add_argument("--budgets", type=float, nargs="+", default=[150.0, 300.0, 900.0])
    val = sub.add_parser("validate", help="one real study of the default strategy on the grid")
    val.add_argument("--seconds", type=float, default=300.0)
    val.add_argument("--workers", type=int, default=2)
    val.add_argument("--label", default="real study", help="its name in the validation figure")
    for p in (rec, rep, rpt, val):
        p.add_argument("--out", type=Path, default=None, help="results folder (default: results/strategies)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from strategies import commands

    return getattr(commands, args.command)(args)


if __name__ == "__main__":
    raise SystemExit(main())
