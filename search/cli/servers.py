"""Server commands: `server` (the shared MLflow tracking server) and `ui` (the local MLflow UI)."""

from __future__ import annotations

import argparse

from search.cli.args import positive_int
from search.cli.common import CliError, exec_command, locations_of, say

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_server(sub)
    _add_ui(sub)


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
    p.add_argument("--workers", type=positive_int, default=1, help="server worker processes")
    p.add_argument("--allowed-hosts", help="comma-separated Host headers to accept (when not on localhost)")
    p.add_argument("--basic-auth", action="store_true", help="enable MLflow's basic-auth app")
    p.add_argument("--print-only", action="store_true", help="print the command instead of running it")
    p.set_defaults(func=_cmd_server)


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
    say(f"starting: {shown}")
    say(
        f"workers: collatz-hpo worker STUDY.toml --storage postgresql://... "
        f"--tracking-uri http://{args.host}:{args.port}"
    )
    return exec_command(cmd)


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the default store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tracking-uri", help="backend store (default: the embedded sqlite:///mlruns/mlflow.db)")
    p.set_defaults(func=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    from search.servers import ui_command

    cmd = ui_command(locations_of(args), args.host, args.port)
    say(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return exec_command(cmd)
