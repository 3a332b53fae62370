"""The four subcommands of benchmarks/bench_strategies.py: each reads and writes the results folder."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from strategies.grid import RESULTS, grid_config, read_table

CURVES, SUMMARY = "replay_curves.csv.gz", "replay_summary.csv"
REAL_CURVE, REAL_TRIALS = "validation_curve.csv", "validation_trials.csv"


def _out(args: argparse.Namespace) -> Path:
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    return out


def record(args: argparse.Namespace) -> int:
    from strategies.record import record as run

    run(args.processes, args.limit, _out(args) / "curves.csv.gz")
    return 0


def replay(args: argparse.Namespace) -> int:
    from strategies.replay import STRATEGIES, replay_all

    out = _out(args)
    frame = read_table(out / "curves.csv.gz")
    strategies = [s for s in STRATEGIES if args.only is None or s.name in args.only]
    started = time.perf_counter()
    curves, summary = replay_all(
        grid_config(),
        frame,
        strategies,
        args.workers,
        range(args.seeds),
        args.horizon,
        args.overhead,
        args.clock,
        args.processes,
    )
    wall = time.perf_counter() - started
    curves.to_csv(out / CURVES, index=False, compression="gzip", float_format="%.6g")
    summary.to_csv(out / SUMMARY, index=False, float_format="%.6g")
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "replay_args.json").write_text(json.dumps({**meta, "wall_seconds": round(wall, 1)}, indent=1))
    print(f"{len(summary)} replays in {wall:.0f} s: {out / CURVES}")
    return 0


def report(args: argparse.Namespace) -> int:
    from strategies.replay import RunTable
    from strategies.report import clock_ratio, headline, plot, plot_validation, trial_counts

    out = _out(args)
    curves = pd.read_csv(out / CURVES)
    replayed = json.loads((out / "replay_args.json").read_text())
    table = RunTable(read_table(out / "curves.csv.gz"), replayed["clock"])
    best = table.best_test()
    text = f"Best mean test exact match of a configuration in the table: {best:.3f}\n\n"
    text += headline(curves, best, args.budgets) + "\n" + trial_counts(pd.read_csv(out / SUMMARY))
    if (out / REAL_CURVE).is_file():
        ratio = clock_ratio(pd.read_csv(out / REAL_TRIALS), table, grid_config())
        text += (
            f"\nValidation study: its finished trials took {ratio:.2f}x the table's "
            f"{replayed['clock']} seconds for the same configurations and epochs (wall, start to end).\n"
        )
        plot_validation(curves, best, pd.read_csv(out / REAL_CURVE), out / "validation.png", ratio=ratio)
    (out / "headline.md").write_text(text)
    print(text)
    plot(curves, best, replayed["horizon"], out / "strategies.png")
    return 0


def validate(args: argparse.Namespace) -> int:
    from strategies.validate import validate as run

    out = _out(args)
    curve, trials = run(args.seconds, args.workers)
    curve.to_csv(out / REAL_CURVE, index=False, float_format="%.6g")
    trials.to_csv(out / REAL_TRIALS, index=False, float_format="%.6g")
    done = trials[trials["overhead"].notna()]
    print(curve.to_string(index=False))
    print(
        f"{len(trials)} trials ({(trials['state'] == 'COMPLETE').sum()} complete); median overhead per trial "
        f"{done['overhead'].median():.2f} s (the replay's --overhead)"
    )
    return 0
