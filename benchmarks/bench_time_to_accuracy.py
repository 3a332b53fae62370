"""Time to accuracy (not part of the test suite): does the search beat a hand-picked config?

Serially, on this machine, in one run:
  1. the hour study (default studies/cpu_hour_long.toml, the hour's best measured study; or
     studies/cpu_hour.toml, the hour by search), with 2 workers: its best-so-far held-out test exact
     match against wall time (the best trial by validation value at each moment; its test figure);
  2. the default config (`collatz-hpo train --seconds 900`, 2 threads) for 15 minutes;
  3. the best configuration the study found (its best search trial, i.e. not the final run),
     trained alone the same way for 15 minutes, its schedule planned over those 15 minutes.
Prints a table and writes the curves as PNG and JSON (validation exact match per epoch for the
two single runs; test exact match of the best trial so far for the study).

Run: .venv/bin/python benchmarks/bench_time_to_accuracy.py [--study studies/cpu_hour_long.toml]
         [--seconds 900] [--store DIR] [--reuse-study] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search import keys
from search.locations import resolve_locations
from search.spec.runconfig import RunConfig
from search.spec.study_file import load_study
from search.study.launch import launch
from search.trial.config import trial_run_config
from search.trial.training import execute


def study_curve(study: optuna.Study, started: float) -> list[dict[str, Any]]:
    """Best trial so far (by validation value) after each completed trial, with its test figure."""
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
        key=lambda t: t.datetime_complete,
    )
    curve, best = [], None
    for t in done:
        if best is None or t.value > best.value:
            best = t
        curve.append(
            {
                "seconds": t.datetime_complete.timestamp() - started,
                "trial": best.number,
                "final": keys.final_seconds(best) is not None,
                "test_exact_match": keys.test_exact_match(best),
            }
        )
    return curve


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of the hour: what it tried, how far it went and what it measured."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "final_of": t.user_attrs.get(keys.FINAL_OF_ATTR),
                "init_from": keys.final_init_from(t),
                "params": keys.trial_params(t),
                "value": t.value,
                "samples_reported": max(t.intermediate_values, default=None),
                "test_exact_match": keys.test_exact_match(t),
                "minutes": (t.datetime_complete - t.datetime_start).total_seconds() / 60
                if t.datetime_complete and t.datetime_start
                else None,
            }
        )
    return rows


def class_figures(study: optuna.Study, number: int, tracking_uri: str) -> dict[str, dict[str, float]]:
    """Held-out exact match per (k, k') class of trial ``number``, from its test_predictions.csv."""
    import csv
    import tempfile
    from collections import Counter

    from mlflow.artifacts import download_artifacts

    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"runs:/{keys.run_id(trial)}/test_predictions.csv"
        path = download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    total, right = Counter(), Counter()
    for row in rows:
        cls = f"{row['k']},{row['k_prime']}"
        total[cls] += 1
        right[cls] += int(row["correct"])
    return {c: {"count": total[c], "exact_match": right[c] / total[c]} for c in sorted(total)}


def single_run(cfg: RunConfig, label: str) -> dict[str, Any]:
    """Train ``cfg`` alone; its validation curve against wall time and its held-out test figure."""
    start = time.perf_counter()
    result = execute(cfg, checkpoint_dir=None, log=None)
    wall = time.perf_counter() - start
    h = result.history
    elapsed, curve = 0.0, []
    for epoch_time, val_time, exact in zip(h["epoch_time"], h["val_time"], h["val_exact_match"], strict=True):
        elapsed += epoch_time + val_time
        curve.append({"seconds": elapsed, "val_exact_match": exact})
    by_class = {
        f"{k},{kp}": v["exact_match"] for (k, kp), v in result.test["by_class"].items() if v["count"] >= 20
    }
    print(
        f"[{label}] held-out test exact match {result.test['exact_match']:.4f} after {wall:.0f}s "
        f"({result.samples_seen:,} samples, {result.samples_seen / result.train_seconds:,.0f} samples/s)",
        flush=True,
    )
    return {
        "label": label,
        "config": cfg.to_dict(),
        "test_exact_match": result.test["exact_match"],
        "samples_seen": result.samples_seen,
        "wall_seconds": wall,
        "curve": curve,
        "test_exact_match_by_class": by_class,
    }


def plot(study: list[dict], runs: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    xs = [p["seconds"] / 60 for p in study]
    ax.step(  # markers: a study whose trials all end with the hour has one point, at its end
        xs,
        [p["test_exact_match"] for p in study],
        where="post",
        marker="o",
        label="hour study: best trial so far (test)",
    )
    for run in runs:
        (line,) = ax.plot(
            [p["seconds"] / 60 for p in run["curve"]],
            [p["val_exact_match"] for p in run["curve"]],
            marker=".",
            label=f"{run['label']} (validation per epoch)",
        )
        ax.scatter(
            [run["wall_seconds"] / 60],
            [run["test_exact_match"]],
            marker="*",
            s=120,
            zorder=3,
            color=line.get_color(),
        )
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Time to accuracy: base 24, odd n < 2^20, this 2-core CPU (stars: held-out test)")
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/cpu_hour_long.toml")
    parser.add_argument("--seconds", type=float, default=900.0, help="budget of each single run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each single run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", default="bench-tta", help="where the study's mlruns/ goes")
    parser.add_argument("--reuse-study", action="store_true", help="skip the study: it is already in --store")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_study(args.study)
    loc = resolve_locations(cwd=args.store)
    started = time.time()
    if not args.reuse_study:
        result = launch(cfg, loc, workers=args.workers, log=lambda m: print(m, flush=True))
        print(f"[study] {result.counts} in {time.time() - started:.0f}s", flush=True)
    study = optuna.load_study(study_name=cfg.study.name, storage=loc.storage)
    if args.reuse_study:  # the launch's start is not recorded: count from the first trial's
        started = min(
            t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start
        ).timestamp()
    curve = study_curve(study, started)
    search = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if keys.final_seconds(t) is None
    ]
    found_trial = max(search, key=lambda t: t.value)

    budget = {
        "time_budget": args.seconds,
        "threads": args.threads,
        "epochs": 10_000,
        "early_stopping_patience": None,
    }
    default = single_run(RunConfig().replace(**budget), "default config")
    found = single_run(
        trial_run_config(study, found_trial.number).replace(**budget),
        f"found config (trial {found_trial.number})",
    )

    print("\nminutes | hour study: best so far (held-out test) | default config | found config")
    for minute in (5, 10, 15, 20, 30, 40, 50, 60):
        so_far = [p for p in curve if p["seconds"] <= minute * 60]
        study_em = f"{so_far[-1]['test_exact_match']:.4f} (trial {so_far[-1]['trial']})" if so_far else "-"
        single = [
            f"{r['test_exact_match']:.4f}" if minute == round(args.seconds / 60) else ""
            for r in (default, found)
        ]
        print(f"{minute:7d} | {study_em:>40} | {single[0]:>14} | {single[1]:>12}")
    final = curve[-1] if curve else None
    if final:
        print(
            f"study end: best trial {final['trial']} test exact match {final['test_exact_match']:.4f}"
            f"{' (the final run)' if final['final'] else ''}"
        )
    trials = trials_table(study)
    for row in trials:
        value, test = row["value"], row["test_exact_match"]
        print(
            f"trial {row['trial']:3d} {row['state']:8} value {'-' if value is None else f'{value:.4f}':>6}"
            f" test {'-' if test is None else f'{test:.4f}':>6}"
            f" samples {row['samples_reported']!s:>9} {row['minutes'] or 0:5.1f} min"
            f"{' final of ' + str(row['final_of']) if row['final_of'] is not None else ''} {row['params']}"
        )
    classes = class_figures(study, final["trial"], loc.tracking_uri) if final else {}
    shown = ", ".join(f"({c}) {v['exact_match']:.0%}" for c, v in classes.items() if v["count"] >= 20)
    print(f"hour's best by (k, k') class, classes with >= 20 held-out inputs: {shown}")
    plot(curve, [default, found], out / "time_to_accuracy.png")
    (out / "time_to_accuracy.json").write_text(
        json.dumps(
            {"study": curve, "runs": [default, found], "trials": trials, "best_by_class": classes},
            indent=2,
            default=str,
        )
    )
    print(f"wrote {out / 'time_to_accuracy.png'} and {out / 'time_to_accuracy.json'}")


if __name__ == "__main__":
    main()
