"""Study benchmark (not part of the test suite): overhead of the platform and payoff of pruning.

For a study file (default studies/quick.toml) it runs the study twice in fresh temporary
stores, as configured and with pruning switched off (timeout lifted so both finish all
trials), and prints for each:
  - the platform's overhead per trial: time of the workers' trial loops (ask, build, train,
    checkpoint, MLflow logging, tell, parent-run update) not spent inside training and
    evaluation (train epochs + validation + test evaluation);
  - the whole study: wall × workers vs that compute, which also charges worker start-up
    (imports, store creation) and a worker idling while the last trial finishes;
  - total optimizer steps and the best value.

Run: .venv/bin/python benchmarks/bench_study.py [STUDY.toml] [--workers 2] [--only pruned]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna

from search import keys
from search.locations import resolve_locations
from search.spec.study_file import load_study, parse_study
from search.study.launch import launch


def run(cfg_dict: dict, source: str, workers: int, label: str) -> dict:
    cfg = parse_study(cfg_dict, source)
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        loc = resolve_locations(cwd=tmp)
        start = time.perf_counter()
        result = launch(cfg, loc, workers=workers, log=lambda _m: None)
        wall = time.perf_counter() - start
        study = optuna.load_study(study_name=cfg.study.name, storage=loc.storage)
        trials = study.get_trials(deepcopy=False)
        compute = sum(keys.compute_seconds(t) for t in trials)
        steps = sum(keys.train_steps(t) for t in trials)
    loop = sum(w.loop_seconds for w in result.workers)
    loop_compute = sum(w.compute_seconds for w in result.workers)
    out = {
        "label": label,
        "wall": wall,
        "compute": compute,
        "overhead": 1 - compute / (wall * workers),
        "trial_overhead": 1 - loop_compute / loop if loop else float("nan"),
        "steps": steps,
        "best": result.best_value,
        "complete": result.counts["complete"],
        "pruned": result.counts["pruned"],
        "failed": result.counts["fail"],
    }
    print(
        f"[{label}] {out['complete']} complete, {out['pruned']} pruned, {out['failed']} failed | "
        f"Optuna+MLflow+checkpoint overhead per trial {out['trial_overhead']:.1%} "
        f"({loop - loop_compute:.1f}s of {loop:.1f}s in trial loops) | study wall {wall:.1f}s x {workers} "
        f"worker(s) vs {compute:.1f}s inside training+evaluation -> {out['overhead']:.1%} incl. worker "
        f"start-up and idle tail | {steps} optimizer steps | best {out['best']:.4f}",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="studies/quick.toml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["pruned", "unpruned"])
    args = parser.parse_args()
    cfg = load_study(args.study)
    print(
        f"{args.study}: {cfg.study.n_trials} trials, {args.workers} workers, {os.cpu_count()} CPUs",
        flush=True,
    )
    base = cfg.to_dict()
    base["study"]["timeout"] = None
    results = {}
    if args.only != "unpruned":
        results["pruned"] = run(base, str(args.study), args.workers, "pruned")
    if args.only != "pruned":
        flat = parse_study(base, args.study).to_dict()
        flat["study"]["pruner"] = {"type": "none"}
        results["unpruned"] = run(flat, str(Path(args.study)), args.workers, "unpruned")
    if len(results) == 2:
        p, u = results["pruned"], results["unpruned"]
        print(
            f"pruning payoff: {u['steps'] / max(p['steps'], 1):.2f}x fewer optimizer steps, "
            f"best {p['best']:.4f} vs {u['best']:.4f} without pruning "
            f"({100 * (p['best'] - u['best']):+.1f} points)"
        )


if __name__ == "__main__":
    main()
