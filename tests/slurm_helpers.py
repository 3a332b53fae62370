"""Helpers for tests that run jobs on a real SLURM: the single-node cluster that `.ci/slurm-up` starts.

Accounting is off on that cluster (no slurmdbd), so `sacct` fails: job states are read from the
controller with `squeue -t all`, which still lists a finished job for MinJobAge seconds.
A test module uses the fixture by binding it at module level: `slurm_cluster = slurm_helpers.slurm_cluster`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Where SLURM must be there: CI runs .ci/slurm-up first, so a missing cluster is a failure, not a skip.
IN_CI = os.environ.get("CI") == "true"
# States after which a job no longer changes by itself (man squeue, JOB STATE CODES).
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
# Seconds between a requeued job's PENDING and its release (see `release`).
REVOKE_GRACE = 1.5
# States in which the node can take a job.
READY_NODE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})


@dataclass(frozen=True)
class SlurmCluster:
    """What tests need to address the running cluster."""

    partition: str
    node: str


def slurm(*args: str, timeout: float = 15) -> str:
    """Run a SLURM client command and return its stdout; raise with its stderr when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def find_cluster() -> SlurmCluster | str:
    """The cluster, or why there is none usable (a reason for skip or fail)."""
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (no sinfo); start it with: sudo .ci/slurm-up"
    try:
        partitions = slurm("sinfo", "-h", "-o", "%P").split()
        nodes = slurm("sinfo", "-h", "-N", "-o", "%N %T").split()
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        return f"SLURM does not answer ({error}); start it with: sudo .ci/slurm-up"
    default = [p.rstrip("*") for p in partitions if p.endswith("*")]
    if not default or len(nodes) < 2:
        return f"SLURM has no default partition or no node (partitions {partitions}, nodes {nodes})"
    node, state = nodes[0], nodes[1]
    if state not in READY_NODE_STATES:
        return f"SLURM node {node} is {state}, not idle; run .ci/slurm-up again"
    return SlurmCluster(partition=default[0], node=node)


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running cluster; skips without one, except under CI=true where that is a failure."""
    found = find_cluster()
    if isinstance(found, str):
        if IN_CI:
            pytest.fail(f"CI=true but {found}", pytrace=False)
        pytest.skip(found)
    return found


@contextlib.contextmanager
def node_to_myself() -> Iterator[None]:
    """Hold the cluster alone while the block runs: test processes (pytest-xdist workers) that use
    SLURM take turns on one lock file, since the single node runs only as many jobs as it has CPUs."""
    with open(Path(tempfile.gettempdir()) / "collatz-hpo-slurm-tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def submit_wrap(command: str, *sbatch_args: str) -> str:
    """Submit a shell command as a batch job (`sbatch --wrap`); return its job id."""
    out = slurm("sbatch", "--parsable", *sbatch_args, "--wrap", command)
    return out.strip().split(";")[0]


def job_state(job_id: str) -> str:
    """The job's state (PENDING, RUNNING, COMPLETED...), or "" when the controller does not know it.

    `job_id` may name one array task ("12_1"); for a whole array the first task listed counts.
    """
    lines = slurm("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").split()
    return lines[0] if lines else ""


def job_info(job_id: str) -> str:
    """The controller's full record of the job, for failure messages."""
    try:
        return slurm("scontrol", "show", "job", "-o", job_id).strip()
    except RuntimeError as error:
        return str(error)


def wait_for_state(job_id: str, *states: str, timeout: float = 60) -> str:
    """Poll until the job is in one of `states`; fail if it ends in another or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(job_id)
        if state in states:
            return state
        if state in FINAL_STATES:
            pytest.fail(f"job {job_id} ended {state}, waiting for {states}:\n{job_info(job_id)}")
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {state or 'unknown'} after {timeout}s, waiting for {states}")
        time.sleep(0.3)


def wait_for_output(path: Path, text: str, timeout: float = 30) -> None:
    """Poll until a job's output file contains `text` (RUNNING comes before the script has started)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        if time.monotonic() > deadline:
            pytest.fail(f"{path} has no {text!r} after {timeout}s")
        time.sleep(0.3)


def requeue(job_id: str, timeout: float = 60) -> None:
    """Requeue a job once it runs (`scontrol requeue` refuses a pending one): SLURM kills it and
    queues it again, held until a BeginTime about two minutes on (see `release`)."""
    wait_for_state(job_id, "RUNNING", timeout=timeout)
    slurm("scontrol", "requeue", job_id)


def release(job_id: str, timeout: float = 60) -> None:
    """Let a requeued job start now instead of at its BeginTime.

    The update only holds once the job is back in PENDING: while it is still COMPLETING (the
    KillWait grace after SIGTERM), the requeue resets BeginTime afterwards.
    """
    wait_for_state(job_id, "PENDING", timeout=timeout)
    # slurmd revoked the killed run's credential; a new one made within the same second is refused
    # ("Job credential revoked": the task ends FAILED at once), which is why SLURM itself waits.
    time.sleep(REVOKE_GRACE)
    slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now")


def requeue_and_release(job_id: str, timeout: float = 60) -> None:
    """Requeue a running job and let it start again at once, as a preempted and rescheduled job would."""
    requeue(job_id, timeout=timeout)
    release(job_id, timeout=timeout)
