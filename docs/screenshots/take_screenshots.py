"""Screenshots of what a researcher sees in a browser (not run by CI: it needs Debian's chromium).

Launches a small study (default studies/tiny.toml) in a fresh directory (or takes the one
already in ``--store``), starts
``collatz-hpo ui STUDY`` and ``collatz-hpo dashboard STUDY`` there, and takes headless Chromium
screenshots of the link each prints: the study's trial runs in the MLflow UI's training view
(Dataset column filled) and the dashboard's study page (optimization history). Installs
chromium with apt-get when it is missing (run as root, or install it first).

Run: .venv/bin/python docs/screenshots/take_screenshots.py [--study studies/tiny.toml] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "search.cli"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    """Debian's chromium, installed with apt-get if absent."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True)
        found = shutil.which("chromium")
    assert found is not None, "chromium is not on PATH after apt-get install"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPTUNA_", "MLFLOW_"))}


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, prefix: str, logs: Path) -> Iterator[str]:
    """``collatz-hpo ARGS`` until it is stopped; yields the link of the line starting with ``prefix``."""
    log = logs / f"{args[0]}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*CLI, *args], cwd=cwd, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        link = None
        while time.monotonic() < deadline and proc.poll() is None:
            lines = [line for line in log.read_text().splitlines() if line.startswith(prefix)]
            link = lines[0].split(": ", 1)[1] if lines else None
            if link is not None and _answers(link.split("#")[0]):
                break
            time.sleep(0.5)
        if link is None or proc.poll() is not None:
            raise RuntimeError(f"collatz-hpo {args[0]} did not start:\n{log.read_text()[-2000:]}")
        yield link
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def screenshot(browser: str, url: str, path: Path, size: str, wait_ms: int) -> None:
    """One headless Chromium screenshot of ``url`` after ``wait_ms`` of (virtual) page time."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
        cmd += [f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    from PIL import Image  # Pillow comes with matplotlib

    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)  # about 3x smaller
    print(f"{path} ({path.stat().st_size:,} bytes): {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "tiny.toml")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--store", type=Path, help="directory whose mlruns/ already holds the study")
    parser.add_argument("--size", default="1600,760", help="browser window, pixels")
    args = parser.parse_args()
    browser = chromium()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    study = tomllib.loads(args.study.read_text())["study"]["name"]
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        root = args.store.resolve() if args.store else Path(tmp)
        if args.store is None:
            shutil.copy(args.study, root / "study.toml")
            subprocess.run([*CLI, "launch", "study.toml"], cwd=root, env=env(), check=True)
        with serving(
            ["ui", study, "--port", str(free_port())], root, f"study '{study}' trial runs: ", Path(tmp)
        ) as link:
            screenshot(browser, link, args.out / "mlflow_trial_runs.png", args.size, 20_000)
        with serving(
            ["dashboard", study, "--port", str(free_port())], root, f"study '{study}': ", Path(tmp)
        ) as link:
            screenshot(browser, link, args.out / "dashboard_history.png", args.size, 15_000)


if __name__ == "__main__":
    main()
