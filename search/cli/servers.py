"""Server commands: `server` (the shared MLflow tracking server), `ui` (the local MLflow UI) and
`dashboard` (optuna-dashboard on a study's storage)."""

from __future__ import annotations

import argparse
import os

from search.cli.args import positive_int
from search.cli.common import (
    CliError,
    add_store_flags,
    exec_command,
    existing_study,
    locations_of,
    say,
    set_command,
    study_name,
)
from search.errors import EXIT_FAILURE
from search.locations import mask

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_server(sub)
    _add_ui(sub)
    _add_dashboard(sub)


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
    _add_address(p, 5000)
    p.add_argument("--workers", type=positive_int, default=1, help="server worker processes")
    p.add_argument("--allowed-hosts", help="comma-separated Host headers to accept (when not on localhost)")
    p.add_argument("--basic-auth", action="store_true", help="enable MLflow's basic-auth app")
    p.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    set_command(p, _cmd_server)


def _cmd_server(args: argparse.Namespace) -> int:
    import shlex

    from search.servers import LEAN_UI_ENV, server_command

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
    # lean like `ui` (no job runner: ~3 GB less) unless the environment asks for MLflow's jobs
    lean = {key: os.environ.get(key, value) for key, value in LEAN_UI_ENV.items()}
    shown = " ".join(f"{key}={value}" for key, value in lean.items()) + " " + mask(shlex.join(cmd))
    if args.print_only:
        print(shown)
        return 0
    say(f"starting: {shown}")
    say(
        f"workers: collatz-hpo worker STUDY.toml --storage postgresql://... "
        f"--tracking-uri http://{args.host}:{args.port}"
    )
    os.environ.update(lean)
    return exec_command(cmd)


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="start the MLflow UI on 127.0.0.1 for the default store; prints each study's trial runs link",
        description="Start the MLflow UI, lean (one worker, no job runner), and print the link to the "
        "trial runs of STUDY (default: of every study in the store) in its training view.",
    )
    p.add_argument("study", metavar="STUDY", nargs="?", help="study name or study file (default: all)")
    _add_address(p, 5000)
    p.add_argument("--tracking-uri", help="backend store (default: the embedded sqlite:///mlruns/mlflow.db)")
    set_command(p, _cmd_ui, prefixed=True)


def _cmd_ui(args: argparse.Namespace) -> int:
    from search.servers import LEAN_UI_ENV, study_links, ui_command

    locations = locations_of(args)
    name = study_name(args.study) if args.study else None
    base = f"http://{args.host}:{args.port}"
    links = {} if locations.missing_store("tracking_uri") else study_links(locations.tracking_uri, base, name)
    if name is not None and not links:
        raise CliError(f"no MLflow experiment named '{name}' in {mask(locations.tracking_uri)}")
    say(f"MLflow UI on {base} (one worker, no job runner; Ctrl-C to stop)")
    for study, link in sorted(links.items()):
        say(f"study '{study}' trial runs: {link}")
    os.environ.update(LEAN_UI_ENV)
    return exec_command(ui_command(locations, args.host, args.port))


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="start optuna-dashboard on 127.0.0.1 for a study (history, intermediate values, importances)",
        description="Start optuna-dashboard on the Optuna storage of STUDY and print the link to its "
        "page. It has no authentication: it binds to 127.0.0.1 unless --host says otherwise. Needs "
        "the optional extra: pip install 'collatz-hpo[dashboard]'.",
    )
    p.add_argument("study", metavar="STUDY", help="study name or study file")
    _add_address(p, 8080)
    add_store_flags(p)
    set_command(p, _cmd_dashboard, prefixed=True)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from search.servers import dashboard_command, dashboard_installed, dashboard_link

    if not dashboard_installed():
        raise CliError(
            "optuna-dashboard is not installed; install it with: pip install 'collatz-hpo[dashboard]'",
            exit_code=EXIT_FAILURE,
        )
    study, locations = existing_study(args, tracking=False)
    base = f"http://{args.host}:{args.port}"
    say(f"Optuna dashboard on {base} (Ctrl-C to stop); storage {mask(locations.storage)}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        say("warning: optuna-dashboard has no authentication: whoever reaches it can change the study")
    say(f"study '{study.study_name}': {dashboard_link(base, study._study_id)}")
    return exec_command(dashboard_command(locations.storage, args.host, args.port))


def _add_address(p: argparse.ArgumentParser, port: int) -> None:
    """--host and --port of a server command (localhost unless the user says otherwise)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=port, help=f"port to listen on (default: {port})")
