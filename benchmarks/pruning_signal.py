"""Which validation signal predicts a trial's end? (not part of the test suite)

Runs N trials of a study file's search space with pruning off, each to the same number of
samples, then prints, at each rung (epoch = a fixed number of training samples), the Spearman
rank correlation over trials between each candidate pruning signal — val_exact_match,
val_accuracy, −val_loss — and the trial's final held-out test exact match. The signal whose
ranking at the early rungs agrees best with the final ranking is the one to prune on.

Run: .venv/bin/python benchmarks/pruning_signal.py [STUDY.toml] [--trials 16] [--epochs 6]
         [--samples-per-epoch 50000] [--workers 2] [--store DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import optuna
import pandas as pd
from mlflow.tracking import MlflowClient

from search import keys
from search.locations import resolve_locations
from search.spec.study_file import load_study, parse_study
from search.study.launch import launch

SIGNALS = ("val_exact_match", "val_accuracy", "val_loss")


def unpruned(path: str, trials: int, epochs: int, samples_per_epoch: int) -> dict:
    """The study file as a pruning-free study of ``trials`` equal-length trials."""
    data = load_study(path).to_dict()
    data["study"].update(name="pruning-signal", n_trials=trials, timeout=None, warm_start=None)
    data["study"]["pruner"] = {"type": "none"}
    data["training"].update(epochs=epochs, samples_per_epoch=samples_per_epoch, early_stopping_patience=None)
    data["final"] = None
    return data


def table(study: optuna.Study, tracking_uri: str, samples_per_epoch: int) -> pd.DataFrame:
    """Spearman correlation per rung (rows) and signal (columns) with the final test exact match."""
    client = MlflowClient(tracking_uri=tracking_uri)
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        run_id = keys.run_id(t)
        for name in SIGNALS:
            for m in client.get_metric_history(run_id, name):
                value = -m.value if name == "val_loss" else m.value
                rows.append({"trial": t.number, "epoch": m.step, "signal": name, "value": value})
        rows.append({"trial": t.number, "epoch": 0, "signal": "final", "value": keys.test_exact_match(t)})
    frame = pd.DataFrame(rows)
    final = frame[frame.signal == "final"].set_index("trial")["value"]
    out = {}
    for (epoch, signal), group in frame[frame.signal != "final"].groupby(["epoch", "signal"]):
        values = group.set_index("trial")["value"]
        out[(epoch * samples_per_epoch, "-val_loss" if signal == "val_loss" else signal)] = values.corr(
            final.loc[values.index], method="spearman"
        )
    result = pd.Series(out).unstack()
    result.index.name = "samples"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="studies/cpu_hour.toml")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples-per-epoch", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", help="keep the study in DIR/mlruns (default: a temporary folder)")
    args = parser.parse_args()
    cfg = parse_study(unpruned(args.study, args.trials, args.epochs, args.samples_per_epoch), args.study)
    with tempfile.TemporaryDirectory(prefix="pruning-signal-") as tmp:
        loc = resolve_locations(cwd=args.store or tmp)
        start = time.perf_counter()
        result = launch(cfg, loc, workers=args.workers, log=lambda _m: None)
        study = optuna.load_study(study_name=cfg.study.name, storage=loc.storage)
        corr = table(study, loc.tracking_uri, args.samples_per_epoch)
    print(
        f"{args.study}: {result.counts['complete']} unpruned trials of {args.epochs} x "
        f"{args.samples_per_epoch:,} samples, {args.workers} workers, {time.perf_counter() - start:.0f}s"
    )
    print("Spearman rank correlation with the final held-out test exact match:")
    print(corr.round(3).to_string())


if __name__ == "__main__":
    main()
