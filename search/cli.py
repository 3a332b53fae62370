"""`collatz-hpo`: parses arguments, calls the Python API, prints. Nothing else lives here.

Heavy libraries (torch, mlflow, optuna) are imported inside the command functions so that
`collatz-hpo --help` answers instantly, and each command imports only what it needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.config import StudyConfig
    from search.launch import LaunchResult
    from search.locations import Locations

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _print(msg: str) -> None:
    print(msg, flush=True)


# --- argument types -------------------------------------------------------------------------------


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


def _float(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 if positive else value >= 0):
        raise argparse.ArgumentTypeError(f"must be {'>' if positive else '>='} 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _float(text, positive=True)


def _non_negative_float(text: str) -> float:
    return _float(text, positive=False)


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag whose default may be None accepts ``none`` to ask for it back."""

    def convert(text: str) -> Any:
        return None if text.strip().lower() == "none" else parse(text)

    convert.__name__ = parse.__name__
    return convert


# --- train ------------------------------------------------------------------------------------------

# RunConfig fields whose values are not parsed by their type's default rule (int >= 1, float > 0).
_FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    "base": int,  # its own range check names the allowed bases
    "seed": int,
    "data_seed": int,
    "dropout": _non_negative_float,
    "weight_decay": _non_negative_float,
}


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``RunConfig`` field: its default, help text and choices come from there."""
    from search.runconfig import RunConfig

    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {_shown(f.default)})"
        kind = hints[f.name]
        args = typing.get_args(kind)
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": help_text}
        if typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = args
        elif f.name == "data_range":
            kwargs.update(nargs=2, type=_int_expr, metavar=("LO", "HI"))
        else:
            base = next(a for a in args if a is not type(None)) if args else kind
            parse = _FIELD_TYPES.get(f.name) or (_positive_int if base is int else _positive_float)
            kwargs["type"] = _or_none(parse) if type(None) in args else parse
            kwargs["metavar"] = "N" if base is int else "X"
        p.add_argument(flag, **kwargs)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model and print its held-out test accuracy",
        description="Train one Collatz transformer (no search) and report held-out exact match. "
        "Every flag is a field of search.runconfig.RunConfig, where its default is written once.",
    )
    _add_run_flags(p)
    p.add_argument("--checkpoint-dir", default="checkpoints/train", help="where last.pt/best.pt go")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import json

    from search.runconfig import RunConfig

    try:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
        cfg = RunConfig(**{**values, "data_range": tuple(values["data_range"])})
        cfg.validate()
    except (ValueError, TypeError) as exc:
        raise CliError(f"train: {exc}") from None
    from search.run import execute

    result = execute(cfg, checkpoint_dir=args.checkpoint_dir, log=None if args.json else _print)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"held-out test exact match: {summary['test_exact_match']:.4f} "
        f"(token accuracy {summary['test_token_accuracy']:.4f}, {summary['test_size']} unseen inputs, "
        f"{result.train_seconds:.0f}s of training, best epoch {result.best_epoch})"
    )
    share = summary["wrong_loop_length_share_of_errors"]
    print(f"errors with the right arithmetic but a wrong loop length: {share:.1%}")
    return 0


# --- studies ----------------------------------------------------------------------------------------


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", help="Optuna storage URL (default: $OPTUNA_STORAGE or sqlite:///mlruns/optuna.db)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )


def _load_config(path: str, **overrides: Any) -> StudyConfig:
    from search.config import ConfigError, load_study

    try:
        return load_study(path, **overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _locations(args: argparse.Namespace) -> Locations:
    from search.locations import resolve_locations

    try:
        return resolve_locations(getattr(args, "storage", None), args.tracking_uri)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _study_name(text: str) -> str:
    """STUDY arguments are a study name or a study file."""
    return _load_config(text).study.name if text.endswith(".toml") else text


def _run_study(run: Callable[[], LaunchResult]) -> LaunchResult:
    """Run ``launch``/``join`` with SIGTERM stopping like Ctrl-C; StudyError is a one-line error."""
    from search.errors import StudyError
    from search.locations import mask
    from search.signals import stop_on_sigterm

    stop_on_sigterm()
    try:
        return run()
    except StudyError as exc:
        raise CliError(mask(str(exc))) from None


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


def _cmd_launch(args: argparse.Namespace) -> int:
    cfg = _load_config(args.study_file, n_trials=args.n_trials, timeout=args.timeout, seed=args.seed)
    locations = _locations(args)
    from search.launch import launch

    result = _run_study(lambda: launch(cfg, locations, workers=args.workers, log=_print))
    c = result.counts
    best = (
        f"; best {result.best_value:.4f} (trial {result.best_trial})" if result.best_trial is not None else ""
    )
    counts = f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
    print(f"study '{result.study_name}': {counts}{best}")
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
    from search.launch import join

    try:
        result = _run_study(lambda: join(cfg, locations, args.worker_index, log=_print))
    except KeyboardInterrupt:
        print("interrupted: the running trial is recorded as FAIL (interrupted)", file=sys.stderr)
        return 130
    c = result.counts
    print(
        f"worker done: study '{result.study_name}' {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed"
    )
    return 0


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="table of a study's trials and the best so far")
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    _add_store_flags(p)
    p.set_defaults(func=_cmd_status)


def _existing_study(args: argparse.Namespace) -> tuple[Any, Locations]:
    """(study, locations) of STUDY (a name or a study file); one-line error when there is none."""
    name = _study_name(args.study)
    locations = _locations(args)
    from search.errors import StudyError
    from search.study import load_existing_study

    try:
        return load_existing_study(name, locations), locations
    except StudyError as exc:
        raise CliError(str(exc)) from None


def _cmd_status(args: argparse.Namespace) -> int:
    study, _ = _existing_study(args)
    import pandas as pd

    from search.report import trials_table
    from search.study import summarize

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(trials_table(study).to_string(index=False))
    print(summarize(study))
    return 0


# --- servers ----------------------------------------------------------------------------------------


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


def _exec(cmd: list[str]) -> int:
    """Become ``cmd`` (an absolute path is run as is, a bare name is looked up on PATH)."""
    os.execvp(cmd[0], cmd)
    return 0


def _cmd_server(args: argparse.Namespace) -> int:
    import shlex

    from search.locations import mask
    from search.servers import server_command

    if "://" not in args.backend_store_uri:
        raise CliError(f"--backend-store-uri: {mask(args.backend_store_uri)!r} is not a URL")
    cmd = server_command(
        args.backend_store_uri,
        args.artifacts_destination,
        args.host,
        args.port,
        args.workers,
        args.allowed_hosts,
        args.basic_auth,
    )
    shown = mask(shlex.join(cmd))
    if args.print_only:
        print(shown)
        return 0
    _print(f"starting: {shown}")
    _print(
        f"workers: collatz-hpo worker STUDY.toml --storage postgresql://... "
        f"--tracking-uri http://{args.host}:{args.port}"
    )
    return _exec(cmd)


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the default store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tracking-uri", help="backend store (default: the embedded sqlite:///mlruns/mlflow.db)")
    p.set_defaults(func=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    from search.servers import ui_command

    cmd = ui_command(_locations(args), args.host, args.port)
    _print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return _exec(cmd)


# --- export, predict, report ----------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    from search.locations import mask

    return mask(" ".join(str(exc).split()) or type(exc).__name__)


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

    try:
        export_trial(
            study,
            locations.tracking_uri,
            out=args.out,
            trial_number=args.trial,
            register=None if args.no_register else args.register,
            log=_print,
        )
    except (ExportError, MlflowException, OSError) as exc:
        raise CliError(f"export: {_one_line(exc)}", code=1) from None
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


def _load_model(args: argparse.Namespace) -> Any:
    """The export directory, or the registered ``models:/`` model (downloaded, then loaded)."""
    import tempfile

    from search.model_io import ExportError, load_export

    try:
        if not args.model.startswith("models:/"):
            return load_export(args.model)
        from search.registry import ModelUriError, resolve_model

        with tempfile.TemporaryDirectory(prefix="collatz-predict-") as tmp:
            try:
                return load_export(resolve_model(args.model, _locations(args), tmp))
            except ModelUriError as exc:
                raise CliError(f"predict: {exc}") from None
    except ExportError as exc:
        raise CliError(f"predict: {exc}", code=1) from None


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from search.model_io import InputError

    values = _predict_inputs(args)
    model = _load_model(args)
    try:
        rows = model.compare(values)
    except InputError as exc:
        raise CliError(f"predict: {exc}") from None
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

    out = args.out or os.path.join("reports", study.study_name)
    try:
        report = write_report(study, out, locations.tracking_uri)
        log_report(report, study, locations.tracking_uri)
    except ReportError as exc:
        raise CliError(f"report: {exc}") from None
    except (MlflowException, OSError) as exc:
        raise CliError(f"report: {_one_line(exc)}", code=1) from None
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
    for add in (
        _add_launch,
        _add_worker,
        _add_server,
        _add_status,
        _add_ui,
        _add_train,
        _add_export,
        _add_predict,
        _add_report,
    ):
        add(sub)
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
