"""`collatz-hpo`: a thin argparse layer over the Python API.

Heavy libraries (torch, mlflow, optuna) are imported inside the command functions so that
`collatz-hpo --help` answers instantly.
"""

from __future__ import annotations

import argparse
import os
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
    p.add_argument("--samples-per-epoch", type=_positive_int, default=50_000)
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
    from core import MultiBaseEncoder
    from core.data import count_odd

    cfg.model_config(MultiBaseEncoder(cfg.base).vocab_size)
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
    from search.study import StudyError, launch, stop_on_sigterm

    stop_on_sigterm()

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


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="join a study from any machine (PostgreSQL storage + MLflow server)",
        description="Run trials of STUDY.toml against a shared storage until it holds n_trials; "
        "creates the study if absent. One GPU per worker: set CUDA_VISIBLE_DEVICES.",
    )
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--worker-index", type=int, help="sampler seed offset (default: from host and pid)")
    p.add_argument("--n-trials", type=_positive_int, help="total trials (COMPLETE + PRUNED) to reach")
    p.add_argument("--timeout", type=_positive_float, help="stop starting trials after S seconds")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_worker)


def _cmd_worker(args: argparse.Namespace) -> int:
    cfg = _load_config(args.study_file, n_trials=args.n_trials, timeout=args.timeout)
    locations = _locations(args)
    from search.storage import mask
    from search.study import StudyError, join, stop_on_sigterm

    stop_on_sigterm()
    try:
        result = join(cfg, locations, args.worker_index, log=lambda msg: print(msg, flush=True))
    except StudyError as exc:
        raise CliError(mask(str(exc))) from None
    except KeyboardInterrupt:
        print("interrupted: the running trial is recorded as FAIL (interrupted)", file=sys.stderr)
        return 130
    c = result.counts
    print(
        f"worker done: study '{result.study_name}' {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed"
    )
    return 0


def _add_server(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="start the shared MLflow tracking server (PostgreSQL backend, served artifacts)",
        description="Start `mlflow server` for workers on many machines. It binds to 127.0.0.1 "
        "unless --host says otherwise. Exposing it: pass --host 0.0.0.0 together with "
        "--allowed-hosts (MLflow rejects requests whose Host header is not listed: DNS-rebinding "
        "protection) and --basic-auth (MLflow's basic-auth app: users and passwords, admin from "
        "basic_auth.ini), or put it behind an authenticating reverse proxy.",
    )
    p.add_argument("--backend-store-uri", required=True, help="e.g. postgresql://user:pw@db:5432/mlflow")
    p.add_argument(
        "--artifacts-destination", default="./mlartifacts", help="where the server stores artifacts"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=_positive_int, default=1, help="server worker processes")
    p.add_argument("--allowed-hosts", help="comma-separated Host headers to accept (when not on localhost)")
    p.add_argument("--basic-auth", action="store_true", help="enable MLflow's basic-auth app")
    p.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    p.set_defaults(func=_cmd_server)


def server_command(args: argparse.Namespace) -> list[str]:
    import os

    exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [
        exe if os.path.exists(exe) else "mlflow",
        "server",
        "--backend-store-uri",
        args.backend_store_uri,
        "--artifacts-destination",
        args.artifacts_destination,
        "--serve-artifacts",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    ]
    if args.allowed_hosts:
        cmd += ["--allowed-hosts", args.allowed_hosts]
    if args.basic_auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def _cmd_server(args: argparse.Namespace) -> int:
    import os
    import shlex

    from search.storage import mask

    if "://" not in args.backend_store_uri:
        raise CliError(f"--backend-store-uri: {mask(args.backend_store_uri)!r} is not a URL")
    cmd = server_command(args)
    shown = mask(shlex.join(cmd))
    if args.print_only:
        print(shown)
        return 0
    print(f"starting: {shown}", flush=True)
    print(
        f"workers: collatz-hpo worker STUDY.toml --storage postgresql://... "
        f"--tracking-uri http://{args.host}:{args.port}",
        flush=True,
    )
    os.execvp(cmd[0], cmd)  # an absolute path is used as is; a bare name is looked up on PATH
    return 0


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


def _existing_study(args: argparse.Namespace) -> tuple[object, object]:
    """(study, locations) of STUDY (a name or a study file); one-line error when there is none."""
    name = _study_name(args.study)
    locations = _locations(args)
    from search.storage import mask
    from search.study import StudyError, load_existing_study, quiet_libraries

    quiet_libraries()
    db = locations.storage.split("sqlite:///", 1)[1] if locations.storage.startswith("sqlite:///") else None
    if db is not None and not os.path.exists(db):
        raise CliError(f"no study named '{name}': {mask(locations.storage)} does not exist")
    try:
        return load_existing_study(name, locations.storage), locations
    except StudyError as exc:
        raise CliError(str(exc)) from None


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the best trial's model (safetensors + config + MLflow model) and register it",
        description="Re-evaluate the best (or a given) COMPLETE trial's best checkpoint on the held-out "
        "test set, write a self-contained export directory and register it in the MLflow Model "
        "Registry with the alias 'champion'.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    p.add_argument("--out", metavar="DIR", help="export directory (default: exports/<study>-trial-<n>)")
    p.add_argument("--trial", type=int, metavar="N", help="export trial N instead of the best trial")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument(
        "--register", metavar="NAME", default="collatz-transformer", help="registered model name"
    )
    reg.add_argument("--no-register", action="store_true", help="write the directory only")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    study, locations = _existing_study(args)
    from mlflow.exceptions import MlflowException

    from search.export import export_trial
    from search.model_io import ExportError
    from search.storage import mask

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        export_trial(
            study,
            locations.tracking_uri,
            out=args.out,
            trial_number=args.trial,
            register=None if args.no_register else args.register,
            log=log,
        )
    except (ExportError, MlflowException, OSError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise CliError(f"export: {mask(text)}", code=1) from None
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict κ(n) with an exported or registered model",
        description="Predict the long Collatz step κ(n) of odd integers with an export directory or "
        "a registered model (models:/NAME@champion). Integers come from the arguments, from "
        "--file, or from stdin when neither is given.",
    )
    p.add_argument("model", metavar="MODEL", help="export directory or models:/NAME@ALIAS (or /VERSION)")
    p.add_argument("values", metavar="N", nargs="*", help="odd positive integers")
    p.add_argument("--file", metavar="F", help="file of integers (whitespace or comma separated, # comments)")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI for models:/ (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    p.set_defaults(func=_cmd_predict)


def _read_integers(text: str) -> list[str]:
    words = []
    for line in text.splitlines():
        words += line.split("#", 1)[0].replace(",", " ").split()
    return words


def _predict_inputs(args: argparse.Namespace) -> list[str]:
    values = list(args.values)
    if args.file:
        try:
            with open(args.file) as fh:
                values += _read_integers(fh.read())
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"predict: cannot read {args.file}: {exc.strerror or exc}", code=1) from None
    elif not values:
        if sys.stdin is None or sys.stdin.isatty():
            raise CliError("predict: no inputs: give N ..., --file F, or pipe integers on stdin")
        values = _read_integers(sys.stdin.read())
    if not values:
        raise CliError("predict: no integers to predict")
    return values


def _load_for_predict(args: argparse.Namespace, tmp: str) -> object:
    from search.model_io import load_export

    if not args.model.startswith("models:/"):
        return load_export(args.model)
    import mlflow
    from mlflow.exceptions import MlflowException

    from search.storage import mask, resolve_locations

    uri = resolve_locations(None, args.tracking_uri).tracking_uri
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///") :]):
        raise CliError(f"predict: cannot resolve {args.model}: {mask(uri)} does not exist", code=1)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    # Resolved with an explicit client: mlflow's global tracking/registry URIs stay untouched.
    name, sep, alias = args.model[len("models:/") :].partition("@")
    version = None
    if not sep:
        name, _, version = name.partition("/")
        if not version.isdigit():
            raise CliError(f"predict: {args.model}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if version is None:
            version = client.get_model_version_by_alias(name, alias).version
        location = client.get_model_version_download_uri(name, version)
        path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=uri)
    except (MlflowException, OSError) as exc:
        text = " ".join(str(exc).split())
        raise CliError(f"predict: cannot resolve {args.model} in {mask(uri)}: {mask(text)}", code=1) from None
    return load_export(path)


def _cmd_predict(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from core.collatz import long_step
    from search.model_io import ExportError, InputError

    values = _predict_inputs(args)
    with tempfile.TemporaryDirectory(prefix="collatz-predict-") as tmp:
        try:
            model = _load_for_predict(args, tmp)
        except ExportError as exc:
            raise CliError(f"predict: {exc}", code=1) from None
    try:
        ints = model.check(values)
    except InputError as exc:
        raise CliError(f"predict: {exc}") from None
    predicted = model.predict(ints)
    rows = [
        {"n": n, "predicted": p, "kappa": (k := long_step(n)), "correct": p == k}
        for n, p in zip(ints, predicted, strict=True)
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    header = ("n", "predicted κ", "true κ", "right")
    table = [
        (
            str(r["n"]),
            "?" if r["predicted"] is None else str(r["predicted"]),
            str(r["kappa"]),
            "yes" if r["correct"] else "no",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    for row in (header, *table):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    right = sum(r["correct"] for r in rows)
    trial = model.config.get("trial")
    print(f"{right}/{len(rows)} right (model {args.model}: trial {trial}, base {model.base})")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="trials table, best-trial summary and plots of a study (also logged to MLflow)",
        description="Write a study's trials table (CSV), best-trial summary and PNG plots, and log "
        "them under report/ of the study's parent MLflow run.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    p.add_argument("--out", metavar="DIR", help="report directory (default: reports/<study>)")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    study, locations = _existing_study(args)
    from mlflow.exceptions import MlflowException

    from search.report import ReportError, log_report, write_report
    from search.storage import mask

    out = args.out or os.path.join("reports", study.study_name)
    try:
        report = write_report(study, out, locations.tracking_uri)
        log_report(report, study, locations.tracking_uri)
    except ReportError as exc:
        raise CliError(f"report: {exc}") from None
    except (MlflowException, OSError) as exc:
        raise CliError(f"report: {mask(' '.join(str(exc).split()))}", code=1) from None
    print(f"report of study '{study.study_name}' in {out}/:")
    for path in report.files:
        print(f"  {path.name} ({path.stat().st_size:,} bytes)")
    for note in report.notes:
        print(f"  note: {note}")
    if report.parent_run_id:
        print(f"logged under report/ of the parent run {report.parent_run_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collatz-hpo",
        description="Hyperparameter search and experiment tracking for transformers "
        "that learn the long Collatz step.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_launch(sub)
    _add_worker(sub)
    _add_server(sub)
    _add_status(sub)
    _add_ui(sub)
    _add_train(sub)
    _add_export(sub)
    _add_predict(sub)
    _add_report(sub)
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
