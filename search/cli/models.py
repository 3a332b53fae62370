"""Model commands: `export` (best trial → directory + registry), `predict`, `report`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from search.cli.common import (
    STORE_FAILURES,
    CliError,
    add_connect_timeout,
    add_store_flags,
    existing_study,
    format_table,
    locations_of,
    say,
    set_command,
)
from search.errors import EXIT_FAILURE

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_export(sub)
    _add_predict(sub)
    _add_report(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the best trial's model (safetensors + config + MLflow model) and register it",
        description="Re-evaluate the best (or a given) COMPLETE trial's best checkpoint on the held-out "
        "test set, write a self-contained export directory and register it in the MLflow Model "
        "Registry under the name of its task (the input range, e.g. collatz-n2^20). The alias "
        "'champion' moves to the new version only if its held-out exact match beats the current "
        "champion's on the same split beyond the champion's 95 %% interval.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    p.add_argument("--out", metavar="DIR", help="export directory (default: exports/<study>-trial-<n>)")
    p.add_argument("--trial", type=int, metavar="N", help="export trial N instead of the best trial")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument(
        "--register",
        metavar="NAME",
        help="registered model name (default: the task's, collatz-n<hi> for odd n < hi)",
    )
    reg.add_argument("--no-register", action="store_true", help="write the directory only")
    p.add_argument(
        "--promote", action="store_true", help="make the new version the champion whatever it scored"
    )
    add_store_flags(p)
    set_command(p, _cmd_export, prefixed=True, failures=STORE_FAILURES)


def _cmd_export(args: argparse.Namespace) -> int:
    if args.promote and args.no_register:
        raise CliError("--promote needs a registered version: drop --no-register")
    study, locations = existing_study(args)
    from search.models.export import export_trial

    export_trial(
        study,
        locations.tracking_uri,
        out=args.out,
        trial_number=args.trial,
        register=None if args.no_register else args.register or True,
        log=say,
        promote=args.promote,
    )
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
    add_connect_timeout(p)
    set_command(p, _cmd_predict, prefixed=True)


Inputs = list[tuple[int | None, str]]  # (line number in the file or stdin, or None for an argument; text)


def _read_integers(text: str) -> Inputs:
    words: Inputs = []
    for number, line in enumerate(text.splitlines(), 1):
        words += [(number, word) for word in line.split("#", 1)[0].replace(",", " ").split()]
    return words


def _predict_inputs(args: argparse.Namespace) -> tuple[Inputs, bool]:
    """The inputs with where they came from, and whether some came from a file or stdin: then a
    bad one is reported with its line number and the others are still predicted."""
    values: Inputs = [(None, value) for value in args.values]
    if args.file:
        try:
            with open(args.file) as fh:
                values += _read_integers(fh.read())
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror or exc}", EXIT_FAILURE) from None
    elif not values:
        if sys.stdin is None or sys.stdin.isatty():
            raise CliError("no inputs: give N ..., --file F, or pipe integers on stdin")
        values = _read_integers(sys.stdin.read())
    if not values:
        raise CliError("no integers to predict")
    return values, len(values) > len(args.values)


def _load_model(args: argparse.Namespace) -> Any:
    """The export directory, or the registered ``models:/`` model (downloaded, then loaded)."""
    import tempfile

    from search.models.loading import load_export

    if not args.model.startswith("models:/"):
        return load_export(args.model)
    from search.models.registry import resolve_model
    from search.study.services import check_tracking

    locations = locations_of(args)
    check_tracking(locations.tracking_uri, args.connect_timeout)
    with tempfile.TemporaryDirectory(prefix="collatz-predict-") as tmp:
        return load_export(resolve_model(args.model, locations, tmp))


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    inputs, bulk = _predict_inputs(args)
    model = _load_model(args)
    texts = [text for _, text in inputs]
    if bulk:
        rows = model.compare_each(texts)
        for (line, _), row in zip(inputs, rows, strict=True):
            if line is not None:
                row["line"] = line
    else:
        rows = model.compare(texts)  # the first bad input is the error
    failed = [row for row in rows if "error" in row]
    for row in failed:
        where = f"line {row['line']}" if "line" in row else "argument"
        print(f"collatz-hpo: predict: {where}: {row['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))
    else:
        _print_table(rows, model, args.model)
    return 1 if failed else 0


def _print_table(rows: list[dict[str, Any]], model: Any, name: str) -> None:
    """One row per input (``error`` where the model could not take it; ``outside`` where it lies
    outside the range the model was trained on), then how many were right and the model's own
    held-out figure."""
    header = ("n", "predicted κ", "true κ", "right", "trained range")
    table = [
        (
            str(r["n"]),
            "-" if "error" in r else "?" if r["predicted"] is None else str(r["predicted"]),
            "-" if "error" in r else str(r["kappa"]),
            "error" if "error" in r else "yes" if r["correct"] else "no",
            "-" if "error" in r else "inside" if r["in_training_range"] else "OUTSIDE",
        )
        for r in rows
    ]
    for line in format_table(header, table):
        print(line)
    right, failed = sum(r["correct"] for r in rows), sum("error" in r for r in rows)
    outside = sum(r.get("in_training_range") is False for r in rows)
    print(_summary(model, name, right, len(rows) - failed, failed, outside))


def _summary(model: Any, name: str, right: int, answered: int, failed: int, outside: int) -> str:
    """``2/3 right, 1 outside the trained range (model M: trial 3, base 24, trained on odd n <
    2^16; held-out exact match 64.00 % (61.9–66.1, n=2,000))``."""
    from search.models.loading import held_out, range_text

    failures = f", {failed} failed (reasons on stderr)" if failed else ""
    trained = model.training_range
    beyond = f", {outside} outside the trained range: the model never saw such inputs" if outside else ""
    about = [f"trial {model.config.get('trial')}", f"base {model.base}"]
    if trained is not None:
        about.append(f"trained on {range_text(trained)}")
    figure = held_out(model.config)
    tail = f"; held-out exact match {figure}" if figure is not None else ""
    return f"{right}/{answered} right{failures}{beyond} (model {name}: {', '.join(about)}{tail})"


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="trials table, best-trial summary and plots of a study (also logged to MLflow)",
        description="Write a study's trials table (CSV), best-trial summary and PNG plots, and log "
        "them under report/ of the study's parent MLflow run.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    p.add_argument("--out", metavar="DIR", help="report directory (default: reports/<study>)")
    add_store_flags(p)
    set_command(p, _cmd_report, prefixed=True, failures=STORE_FAILURES)


def _cmd_report(args: argparse.Namespace) -> int:
    study, locations = existing_study(args)
    from search.report.study_report import log_report, write_report

    out = args.out or os.path.join("reports", study.study_name)
    report = write_report(study, out, locations.tracking_uri)
    log_report(report, study, locations.tracking_uri)
    print(f"report of study '{study.study_name}' in {out}/:")
    for path in report.files:
        print(f"  {path.name} ({path.stat().st_size:,} bytes)")
    for note in report.notes:
        print(f"  note: {note}")
    if report.parent_run_id:
        print(f"logged under report/ of the parent run {report.parent_run_id}")
    return 0
