"""`collatz-hpo`: a thin argparse layer over the Python API.

Heavy libraries (torch, mlflow, optuna) are imported inside the command functions so that
`collatz-hpo --help` answers instantly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _int_expr(text: str) -> int:
    """Integers as written by people: 1048576, 2**20, 10**12, 1_000_000."""
    t = text.replace("_", "").strip()
    try:
        if "**" in t:
            base, exp = t.split("**", 1)
            return int(base) ** int(exp)
        if "e" in t.lower() and t.replace(".", "", 1).lower().replace("e", "", 1).isdigit():
            value = float(t)
            if value != int(value):
                raise ValueError
            return int(value)
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int_expr(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model and print its held-out test accuracy",
        description="Train one Collatz transformer (no search) and report held-out exact match.",
    )
    p.add_argument("--base", type=int, default=24)
    p.add_argument("--range", nargs=2, type=_int_expr, default=(1, 2**20), metavar=("LO", "HI"))
    p.add_argument("--train-size", type=_positive_int, default=400_000)
    p.add_argument("--val-size", type=_positive_int, default=2_000)
    p.add_argument("--test-size", type=_positive_int, default=10_000)
    p.add_argument("--d-model", type=_positive_int, default=128)
    p.add_argument("--nhead", type=_positive_int, default=4)
    p.add_argument("--num-layers", type=_positive_int, default=2)
    p.add_argument("--decoder-layers", type=_positive_int, default=1)
    p.add_argument("--dim-feedforward", type=_positive_int, default=None)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=_positive_float, default=1e-3)
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--samples-per-epoch", type=_positive_int, default=100_000)
    p.add_argument("--seconds", type=_positive_float, default=180.0, help="training time budget")
    p.add_argument("--patience", type=_positive_int, default=None, help="early-stopping patience")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: all)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--checkpoint-dir", default="checkpoints/train")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from search.run import RunConfig, execute

    try:
        cfg = RunConfig(
            base=args.base,
            d_model=args.d_model,
            nhead=args.nhead,
            num_layers=args.num_layers,
            num_decoder_layers=args.decoder_layers,
            dim_feedforward=args.dim_feedforward,
            dropout=args.dropout,
            data_range=tuple(args.range),
            train_size=args.train_size,
            val_size=args.val_size,
            test_size=args.test_size,
            lr=args.lr,
            batch_size=args.batch_size,
            epochs=args.epochs,
            samples_per_epoch=args.samples_per_epoch,
            early_stopping_patience=args.patience,
            time_budget=args.seconds,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
        )
        _validate_train(cfg)
    except (ValueError, TypeError) as exc:
        raise CliError(f"train: {exc}") from None
    log = None if args.json else (lambda msg: print(msg, flush=True))
    result = execute(cfg, checkpoint_dir=args.checkpoint_dir, log=log, log_interval=10**9)
    test = result.test
    summary = {
        "test_exact_match": test["exact_match"],
        "test_token_accuracy": test["token_accuracy"],
        "test_size": test["num_samples"],
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 1),
        "samples_seen": result.extra["samples_seen"],
        "num_parameters": result.extra["num_parameters"],
        "stop_reason": result.stop_reason,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "exact_match_by_class": {
            f"{k},{kp}": round(v["exact_match"], 4)
            for (k, kp), v in test["by_class"].items()
            if v["count"] >= 20
        },
        "wrong_loop_length_share_of_errors": test["wrong_loop_length_share"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"held-out test exact match: {test['exact_match']:.4f} "
            f"(token accuracy {test['token_accuracy']:.4f}, {test['num_samples']} unseen inputs, "
            f"{result.train_seconds:.0f}s of training, best epoch {result.best_epoch})"
        )
        print(
            f"errors with the right arithmetic but a wrong loop length: {test['wrong_loop_length_share']:.1%}"
        )
    return 0


def _validate_train(cfg: object) -> None:
    """Fail before any work (data, model, files) on settings that cannot run."""
    from core import ModelConfig, MultiBaseEncoder
    from core.data import count_odd

    MultiBaseEncoder(cfg.base)
    ModelConfig(
        vocab_size=cfg.base + 3,
        d_model=cfg.d_model,
        nhead=cfg.nhead,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_decoder_layers,
        dim_feedforward=cfg.dim_feedforward,
        dropout=cfg.dropout,
    )
    total = cfg.train_size + cfg.val_size + cfg.test_size
    available = count_odd(cfg.data_range)
    if total > available:
        lo, hi = cfg.data_range
        raise ValueError(f"train+val+test = {total} odd values but [{lo}, {hi}) holds only {available}")


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", help="Optuna storage URL (default: $OPTUNA_STORAGE or sqlite:///mlruns/optuna.db)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="create or resume a study from a study file and run it",
        description="Create the study of STUDY.toml, or resume it until n_trials trials are done.",
    )
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--n-trials", type=_positive_int, help="total trials (COMPLETE + PRUNED) to reach")
    p.add_argument("--timeout", type=_positive_float, help="stop starting trials after S seconds")
    p.add_argument("--workers", type=_positive_int, default=1, help="local worker processes")
    p.add_argument("--seed", type=int, help="sampler seed (worker i uses seed + i)")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_launch)


def _load_config(path: str, **overrides: object) -> object:
    from search.config import ConfigError, load_study

    try:
        return load_study(path, **overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _locations(args: argparse.Namespace) -> object:
    from search.storage import resolve_locations

    try:
        return resolve_locations(args.storage, args.tracking_uri)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _cmd_launch(args: argparse.Namespace) -> int:
    cfg = _load_config(args.study_file, n_trials=args.n_trials, timeout=args.timeout, seed=args.seed)
    locations = _locations(args)
    from search.storage import mask
    from search.study import StudyError, launch

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        result = launch(cfg, locations, workers=args.workers, log=log)
    except StudyError as exc:
        raise CliError(mask(str(exc))) from None
    c = result.counts
    print(
        f"study '{result.study_name}': {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
        + (
            f"; best {result.best_value:.4f} (trial {result.best_trial})"
            if result.best_trial is not None
            else ""
        )
    )
    if result.best_params:
        print("best params: " + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    if result.interrupted:
        print("interrupted: run the same command to resume", file=sys.stderr)
    return result.exit_code


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="table of a study's trials and the best so far")
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_status)


def _study_name(text: str) -> str:
    if text.endswith(".toml"):
        return _load_config(text).study.name
    return text


def _cmd_status(args: argparse.Namespace) -> int:
    name = _study_name(args.study)
    locations = _locations(args)
    from search.report import trials_table
    from search.storage import mask
    from search.study import StudyError, load_existing_study, summarize

    if (
        locations.store_dir is not None
        and not (locations.store_dir / "optuna.db").exists()
        and (locations.storage.startswith("sqlite"))
    ):
        raise CliError(f"no study named '{name}': {mask(locations.storage)} does not exist")
    try:
        study = load_existing_study(name, locations.storage)
    except StudyError as exc:
        raise CliError(str(exc)) from None
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(trials_table(study).to_string(index=False))
    print(summarize(study))
    return 0


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the default store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tracking-uri", help="backend store (default: the embedded sqlite:///mlruns/mlflow.db)")
    p.set_defaults(func=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    import os

    from search.storage import resolve_locations

    loc = resolve_locations(None, args.tracking_uri)
    cmd = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        loc.tracking_uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    if loc.artifact_root:
        cmd += ["--default-artifact-root", loc.artifact_root]
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
    os.execv(exe if os.path.exists(exe) else cmd[0], cmd)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collatz-hpo",
        description="Hyperparameter search and experiment tracking for transformers "
        "that learn the long Collatz step.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_launch(sub)
    _add_status(sub)
    _add_ui(sub)
    _add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"collatz-hpo: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("collatz-hpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
