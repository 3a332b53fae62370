"""`collatz-hpo train`: one model, no search. Its flags are ``RunConfig``'s fields."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli.args import int_expr, non_negative_float, or_none, positive_float, positive_int
from search.cli.common import CliError, add_store_flags, locations_of, say, set_command, study_name
from search.errors import CollatzHpoError, one_line
from search.stats import wilson

if TYPE_CHECKING:
    from search.spec.runconfig import RunConfig

__all__ = ["add_commands", "run_config_of"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)


_FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    "base": int,  # its own range check names the allowed bases
    "seed": int,
    "data_seed": int,
    "dropout": non_negative_float,
    "weight_decay": non_negative_float,
    "warmup": non_negative_float,
    "lr_floor": non_negative_float,
    "balance": non_negative_float,
    "init_from": str,
}


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``RunConfig`` field: its default, help text and choices come from there."""
    from search.spec.runconfig import RunConfig

    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {_shown(f.default)})"
        kind = hints[f.name]
        args = typing.get_args(kind)
        # no default here: a flag given on the command line overrides --params / --from-trial
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = args
        elif f.name == "data_range":
            kwargs.update(nargs=2, type=int_expr, metavar=("LO", "HI"))
        else:
            base = next(a for a in args if a is not type(None)) if args else kind
            parse = _FIELD_TYPES.get(f.name) or (positive_int if base is int else positive_float)
            kwargs["type"] = or_none(parse) if type(None) in args else parse
            kwargs["metavar"] = {int: "N", str: "PATH"}.get(base, "X")
        p.add_argument(flag, **kwargs)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model and print its held-out test accuracy",
        description="Train one Collatz transformer (no search) and report held-out exact match. "
        "Every flag is a field of search.spec.runconfig.RunConfig, where its default is written once. "
        "Start from a found configuration with --params or --from-trial; flags override it "
        "(e.g. --from-trial quick:9 --seconds 900).",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--params",
        metavar="FILE",
        help="JSON/TOML file of run settings (a mapping of the flags' names, a trial's config.json "
        "or an export's config.json)",
    )
    start.add_argument(
        "--from-trial",
        metavar="STUDY:N",
        help="the run settings of trial N of STUDY (N = best: the best trial); --storage says where",
    )
    add_store_flags(p)
    _add_run_flags(p)
    p.add_argument("--checkpoint-dir", default="checkpoints/train", help="where last.pt/best.pt go")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    set_command(p, _cmd_train, prefixed=True)


def run_config_of(args: argparse.Namespace) -> RunConfig:
    """RunConfig's defaults, or --params / --from-trial, then the flags given."""
    from search.spec.runconfig import RunConfig, load_params

    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if hasattr(args, f.name)}
    try:
        if args.params:
            base = RunConfig().replace(**load_params(args.params))
        elif args.from_trial:
            base = _trial_config(args)
        else:
            base = RunConfig()
        cfg = base.replace(**flags)
        cfg.validate()
        if cfg.init_from is not None and not cfg.init_in_store and not Path(cfg.init_from).is_file():
            raise ValueError(f"--init-from {cfg.init_from}: no such checkpoint file")
    except CollatzHpoError:
        raise
    except (ValueError, TypeError) as exc:  # RunConfig's own checks
        raise CliError(one_line(exc)) from None
    return cfg


def _trial_config(args: argparse.Namespace) -> RunConfig:
    name, sep, which = args.from_trial.rpartition(":")
    if not sep or not name or not (which.isdigit() or which == "best"):
        raise ValueError(f"--from-trial {args.from_trial!r}: expected STUDY:N or STUDY:best")
    from search.study.opening import load_existing_study
    from search.trial.config import trial_run_config

    study = load_existing_study(study_name(name), locations_of(args))
    return trial_run_config(study, None if which == "best" else int(which))


def _fetched(cfg: RunConfig, args: argparse.Namespace, tmp: str) -> RunConfig:
    """``cfg`` with an ``init_from`` in the store (``runs:/...``, e.g. a final run's) copied to ``tmp``."""
    if not cfg.init_in_store:
        return cfg  # imports no MLflow
    from search.tracking.runs import fetch_init

    try:
        return fetch_init(cfg, locations_of(args).tracking_uri, tmp)
    except Exception as exc:  # MLflow raises several types for a missing run or artifact
        raise CliError(f"--init-from {cfg.init_from}: {one_line(exc)}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    import json
    import tempfile

    cfg = run_config_of(args)
    from search.trial.training import execute

    with tempfile.TemporaryDirectory(prefix="collatz-init-") as tmp:
        cfg = _fetched(cfg, args, tmp)
        # a bad init_from (InitFromError) is found before training: nothing written
        result = execute(cfg, checkpoint_dir=args.checkpoint_dir, log=None if args.json else say)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    held_out = wilson(summary["test_exact_match"], int(summary["test_size"]))
    print(
        f"held-out test exact match: {held_out} "
        f"(token accuracy {summary['test_token_accuracy']:.4f}, "
        f"{result.train_seconds:.0f}s of training, best epoch {result.best_epoch})"
    )
    share = summary["wrong_loop_length_share_of_errors"]
    print(f"errors with the right arithmetic but a wrong loop length: {share:.1%}")
    return 0
