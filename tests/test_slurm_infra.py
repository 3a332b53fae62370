"""The test cluster of .ci/slurm-up works as `submit` needs: batch jobs, arrays, requeue, and submitit."""

from __future__ import annotations

import sys
from pathlib import Path

import slurm_helpers
import submitit
from slurm_helpers import SlurmCluster, release, requeue, submit_wrap, wait_for_output, wait_for_state

slurm_cluster = slurm_helpers.slurm_cluster


def test_wrap_job_runs_and_writes_its_output(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    args = ("-p", slurm_cluster.partition, "-o", f"{tmp_path}/%j.out")
    job_id = submit_wrap("echo hello from $SLURM_JOB_ID", *args)
    wait_for_state(job_id, "COMPLETED", timeout=30)
    assert (tmp_path / f"{job_id}.out").read_text() == f"hello from {job_id}\n"


def test_requeued_array_task_runs_again(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """A requeued task starts over with SLURM_RESTART_COUNT=1, once released; its sibling is untouched."""
    command = "echo start ${SLURM_RESTART_COUNT:-0}; sleep 4"
    # stderr apart: slurmstepd writes the "CANCELLED ... DUE TO JOB REQUEUE" line there.
    args = ("-p", slurm_cluster.partition, "--array=0-1", "--open-mode=append")
    args += ("-o", f"{tmp_path}/%a.out", "-e", f"{tmp_path}/%a.err")
    array_id = submit_wrap(command, *args)
    wait_for_output(tmp_path / "1.out", "start 0", timeout=30)
    requeue(f"{array_id}_1", timeout=30)
    release(f"{array_id}_1", timeout=30)
    for task in ("0", "1"):
        wait_for_state(f"{array_id}_{task}", "COMPLETED", timeout=30)
    assert (tmp_path / "0.out").read_text() == "start 0\n"
    assert (tmp_path / "1.out").read_text() == "start 0\nstart 1\n"


def test_submitit_array_returns_values_from_our_python(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    def double(x: int) -> tuple[int, str]:
        import sys

        return 2 * x, sys.executable

    executor = submitit.AutoExecutor(folder=tmp_path / "%j")
    executor.update_parameters(
        slurm_partition=slurm_cluster.partition,
        slurm_array_parallelism=2,
        timeout_min=5,
        cpus_per_task=1,
        mem_gb=1,
    )
    jobs = executor.map_array(double, [1, 2])
    for job in jobs:
        # submitit's own watcher reads sacct, which is off here: wait on the controller, so that a job
        # that dies without a result fails the test instead of blocking job.result() for ever.
        wait_for_state(job.job_id, "COMPLETED", timeout=30)
    assert [job.result() for job in jobs] == [(2, sys.executable), (4, sys.executable)]
