"""`collatz-hpo submit` / `cancel` and the SLURM side of `status`, on the real single-node SLURM of
.ci/slurm-up with the machine's PostgreSQL and a real `mlflow server`.

Refusals write and submit nothing; ``--slurm KEY=VALUE`` becomes sbatch options or a one-line
error; a tiny study submitted as a 2-task array ends with exactly ``n_trials`` although one task
is requeued (``scontrol requeue``) in the middle of a trial. Without SLURM (or PostgreSQL) the
tests that need it skip with the reason; under CI=true they fail instead.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pg_helpers
import pytest
import server_helpers
import slurm_helpers
from cli_helpers import assert_one_line_error, run_main
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from slurm_helpers import SlurmCluster, release, requeue, slurm, submit_wrap, wait_for_state

from search import keys
from search.spec.study_file import parse_study
from search.study.slurm_jobs import SlurmOptions, parse_slurm_settings

slurm_cluster = slurm_helpers.slurm_cluster
pg_url = pg_helpers.pg_url
mlflow_server = server_helpers.mlflow_server

TINY = dict(
    pruner='type = "none"',
    base="{ choices = [16, 24] }",
    nhead="{ choices = [2, 4] }",
    num_layers="1",
    lr="{ low = 1e-3, high = 1e-2, log = true }",
    # beats a loaded 2-core CI machine keeps (see test_distributed.HEARTBEATS): only dead workers' trials
    study_extra="heartbeat_interval = 2\ngrace_period = 20",
)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _write_study(tmp_path: Path, hpo: Any, name: str, **kwargs: Any) -> Path:
    return hpo.write_study(tmp_path, hpo.study_toml(name, **{**TINY, **kwargs}))


def _jobs_named(name: str) -> list[str]:
    """Every job of the study the controller knows, by the job name submit gives it."""
    return slurm("squeue", "-h", "-t", "all", "-n", f"collatz-hpo-{name}", "-o", "%i").split()


# --- --slurm KEY=VALUE and the other resources -------------------------------------------------


def test_slurm_settings_become_sbatch_options() -> None:
    settings = ["account=proj", "qos=high", "constraint=a100|h100", "exclusive", "nodes=1", "mail_type=END"]
    assert parse_slurm_settings(settings) == {
        "account": "proj",
        "qos": "high",
        "constraint": "a100|h100",
        "exclusive": True,
        "nodes": 1,
        "mail-type": "END",
    }


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--slurm", "=proj"], "expected KEY=VALUE"),
        (["--slurm", "Bad Key=1"], "expected KEY=VALUE"),
        (["--slurm", "partition=gpu"], "use --partition instead"),
        (["--slurm", "time=10"], "use --time-limit instead"),
        (["--slurm", "array=0-9"], "submit sets it itself"),
        (["--slurm", "output=x.log"], "submit sets it itself"),
        (["--slurm", "account="], "empty value"),
        (["--slurm", "account=a\nb"], "control characters"),
        (["--slurm", "account=a", "--slurm", "account=b"], "given twice"),
        (["--gpus-per-worker", "2"], "a worker trains on one GPU"),
    ],
)
def test_bad_slurm_options_are_one_line_and_submit_nothing(
    flags: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], hpo: Any
) -> None:
    study = _write_study(tmp_path, hpo, "opts")
    code, _, err = run_main(["submit", study, "--workers", "2", *flags], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_resources_become_submitit_parameters(tmp_path: Path, hpo: Any) -> None:
    from search.study.slurm import executor_parameters

    cfg = parse_study(_study_dict(tmp_path, hpo))
    options = SlurmOptions(
        partition="gpu",
        gpus_per_worker=1,
        mem_gb=8,
        time_limit=30,
        extra=parse_slurm_settings(["account=proj", "exclusive"]),
    )
    params = executor_parameters(cfg, options)
    assert params == {
        "name": "collatz-hpo-res",
        "timeout_min": 30,
        "cpus_per_task": 1,  # the study's training.threads
        "stderr_to_stdout": True,
        "slurm_partition": "gpu",
        "gpus_per_node": 1,
        "mem_gb": 8,
        "slurm_additional_parameters": {"account": "proj", "exclusive": True},
    }
    assert executor_parameters(cfg, SlurmOptions(cpus_per_worker=4))["cpus_per_task"] == 4
    if shutil.which("srun") is None:
        return
    import submitit

    # the batch script submitit writes from them (its text is what sbatch reads)
    executor = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("true", "uid")  # no public accessor
    for line in ("--partition=gpu", "--gpus-per-node=1", "--mem=8GB", "--time=30", "--account=proj"):
        assert f"#SBATCH {line}\n" in script, script
    assert "#SBATCH --exclusive\n" in script and "#SBATCH --cpus-per-task=1\n" in script


def _study_dict(tmp_path: Path, hpo: Any) -> dict[str, Any]:
    from search.spec.study_file import load_study

    return load_study(_write_study(tmp_path, hpo, "res")).to_dict()


# --- the worker callable -------------------------------------------------------------------------


def test_worker_pickles_and_checkpoints_to_itself(tmp_path: Path, hpo: Any, monkeypatch: Any) -> None:
    from submitit.helpers import DelayedSubmission

    from search.locations import resolve_locations
    from search.study.slurm import SlurmWorker, worker_index

    locations = resolve_locations("postgresql://u:pw@db/x", "http://mlflow:5000")
    worker = pickle.loads(pickle.dumps(SlurmWorker(_study_dict(tmp_path, hpo), locations, 2)))
    again = worker.checkpoint(1)
    assert isinstance(again, DelayedSubmission) and again.args == (1,)
    assert isinstance(again.function, SlurmWorker) and again.function.__dict__ == worker.__dict__
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert worker_index(1, 2) == 1
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")  # requeued twice: new sampler seeds
    assert worker_index(1, 2) == 5


def test_usr2_from_submitit_stops_the_worker_like_ctrl_c() -> None:
    """submitit's USR2 handler checkpoints, requeues and exits: the worker sees an interrupt instead,
    so its running trial is recorded before the process ends."""
    from search.study import slurm as cluster

    requeued: list[int] = []

    def submitit_handler(signum: int, frame: Any) -> None:
        requeued.append(signum)
        sys.exit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        cluster._interrupt_on_preemption()
        with pytest.raises(KeyboardInterrupt, match="requeued"):
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert requeued == [signal.SIGUSR2]


# --- refusals: nothing written, nothing submitted ------------------------------------------------


def _refused(args: list[Any], tmp_path: Path, capsys: Any, name: str, *needles: str) -> None:
    code, out, err = run_main(["submit", *args, "--workers", "2"], tmp_path, capsys)
    assert code == 2, out + err
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "slurm").exists()
    assert _jobs_named(name) == []


def test_submit_refuses_the_embedded_sqlite_store(
    slurm_cluster: SlurmCluster, tmp_path: Path, capsys: Any, hpo: Any, monkeypatch: Any
) -> None:
    for var in ("OPTUNA_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    name = _unique("sqlite")
    study = _write_study(tmp_path, hpo, name)
    _refused([study], tmp_path, capsys, name, "sqlite", "SLURM workers on other nodes cannot share it")


def test_submit_refuses_a_local_tracking_store(
    slurm_cluster: SlurmCluster, pg_url: str, tmp_path: Path, capsys: Any, hpo: Any
) -> None:
    name = _unique("file")
    study = _write_study(tmp_path, hpo, name)
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [study, "--storage", pg_url, "--tracking-uri", tracking]
    _refused(args, tmp_path, capsys, name, "tracking URI", "cannot share it")
    assert optuna.get_all_study_names(pg_url) == []


def test_submit_refuses_an_unreachable_storage(
    slurm_cluster: SlurmCluster, tmp_path: Path, capsys: Any, hpo: Any
) -> None:
    name = _unique("nodb")
    study = _write_study(tmp_path, hpo, name)
    storage = f"postgresql://postgres:{pg_helpers.SECRET}@127.0.0.1:{server_helpers.free_port()}/x"
    args = [study, "--storage", storage, "--tracking-uri", f"http://127.0.0.1:{server_helpers.free_port()}"]
    _refused(args, tmp_path, capsys, name, "Optuna storage", "postgres:***@")


def test_submit_refuses_an_unreachable_tracking_server(
    slurm_cluster: SlurmCluster, pg_url: str, tmp_path: Path, capsys: Any, hpo: Any
) -> None:
    name = _unique("nomlflow")
    study = _write_study(tmp_path, hpo, name)
    tracking = f"http://127.0.0.1:{server_helpers.free_port()}"
    _refused([study, "--storage", pg_url, "--tracking-uri", tracking], tmp_path, capsys, name, tracking)
    assert optuna.get_all_study_names(pg_url) == []


# --- status and cancel of a study's jobs --------------------------------------------------------


def _study_with_job(tmp_path: Path, job_id: str) -> str:
    """A study in the embedded store of ``tmp_path`` that records ``job_id`` as submitted."""
    name = _unique("jobs")
    (tmp_path / "mlruns").mkdir()
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    keys.add_slurm_job(study, job_id)
    return name


def test_status_shows_and_cancel_stops_the_study_jobs(
    slurm_cluster: SlurmCluster, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    job = submit_wrap("sleep 120", "-p", slurm_cluster.partition, "-o", "/dev/null")
    try:
        name = _study_with_job(tmp_path, job)
        wait_for_state(job, "PENDING", "RUNNING", timeout=30)
        code, out, _ = run_main(["status", name], tmp_path, capsys)
        assert code == 0 and "SLURM jobs:" in out
        assert re.search(rf"^  {job}\s+(PENDING|RUNNING)\s+-$", out, re.M), out
        code, out, err = run_main(["cancel", name], tmp_path, capsys)
        assert code == 0, err
        cancelled = rf"SLURM job {job}: cancelled 1 task\(s\) \(1 (PENDING|RUNNING)\)\n"
        assert re.fullmatch(cancelled, out), out
        wait_for_state(job, "CANCELLED", timeout=30)
        code, out, _ = run_main(["cancel", name], tmp_path, capsys)
        assert out == f"SLURM job {job}: nothing to cancel (1 CANCELLED)\n"
        with monkeypatch.context() as patch:
            patch.setenv("PATH", str(tmp_path))  # no squeue: status shows the trials only
            code, out, _ = run_main(["status", name], tmp_path, capsys)
        assert code == 0 and "SLURM" not in out
    finally:
        subprocess.run(["scancel", job], check=False)


def test_cancel_of_a_study_without_jobs(tmp_path: Path, capsys: Any) -> None:
    name = _unique("nojobs")
    (tmp_path / "mlruns").mkdir()
    optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    code, out, _ = run_main(["cancel", name], tmp_path, capsys)
    assert code == 0 and out == f"study '{name}' has no SLURM jobs (submit records them)\n"


# --- end to end: a job array, one task requeued mid-trial ---------------------------------------

N_TRIALS = 3


def _study(storage: Any, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def _wait_for_trial_mid_training(url: str, name: str, timeout: float = 180) -> tuple[int, str]:
    """(trial, array task) of a RUNNING trial of a SLURM worker that has reported two epochs."""
    storage = optuna.storages.RDBStorage(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in {s.study_name for s in storage.get_all_studies()}:
            for t in _study(storage, name).get_trials(states=(TrialState.RUNNING,)):
                job = keys.worker_slurm_job(t)
                if job is not None and len(t.intermediate_values) >= 2:
                    return t.number, job
        time.sleep(0.5)
    pytest.fail(f"no trial of study {name} reached its second epoch within {timeout}s")


def _submit_tiny(tmp_path: Path, hpo: Any, name: str, storage: str, tracking: str) -> tuple[str, str]:
    """Submit the study with 2 workers; (array id, submit's stdout)."""
    study = _write_study(tmp_path, hpo, name, n_trials=N_TRIALS, epochs=30)
    args = ["submit", study, "--workers", 2, "--cpus-per-worker", 1, "--time-limit", 15]
    proc = hpo.check(hpo.run_cli([*args, "--storage", storage, "--tracking-uri", tracking], tmp_path))
    found = re.search(r"^submitted SLURM job array (\d+): 2 worker\(s\) \(\1_0, \1_1\)$", proc.stdout, re.M)
    assert found, proc.stdout
    return found[1], proc.stdout


def test_submitted_study_survives_a_requeued_task(
    slurm_cluster: SlurmCluster, pg_url: str, mlflow_server: str, tmp_path: Path, hpo: Any
) -> None:
    name = _unique("array")
    array, out = _submit_tiny(tmp_path, hpo, name, pg_url, mlflow_server)
    try:
        assert pg_helpers.SECRET not in out and "postgres:***@" in out
        assert f"logs: slurm/{name}/ (one file per worker, e.g. {array}_0_0_log.out)" in out
        interrupted, task = _wait_for_trial_mid_training(pg_url, name)
        requeue(task)
        release(task)
        for i in range(2):
            wait_for_state(f"{array}_{i}", "COMPLETED", timeout=300)
    finally:
        subprocess.run(["scancel", array], check=False)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "slurm" / name).glob("*_log.out")))
    _check_study(pg_url, mlflow_server, name, interrupted, logs)
    status = hpo.check(hpo.run_cli(["status", name, "--storage", pg_url], tmp_path, timeout=120)).stdout
    for i in range(2):
        assert re.search(rf"^  {array}_{i}\s+COMPLETED\s+-$", status, re.M), status
    cancel = hpo.check(hpo.run_cli(["cancel", name, "--storage", pg_url], tmp_path, timeout=120)).stdout
    assert cancel.startswith(f"SLURM job {array}: nothing to cancel (")
    _check_resumed(_study(pg_url, name), interrupted)


def _check_study(storage: str, tracking: str, name: str, interrupted: int, logs: str) -> None:
    """Exactly n_trials counted, the requeued trial FAIL (interrupted), nothing left RUNNING."""
    trials = _study(storage, name).get_trials()
    states = [t.state for t in trials]
    assert sum(s in keys.COUNTED for s in states) == N_TRIALS, (states, logs[-3000:])
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    stopped = trials[interrupted]
    assert stopped.state == TrialState.FAIL and keys.fail_reason(stopped) == "interrupted", logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    by_name = {r.info.run_name: r.info.status for r in runs}
    assert "RUNNING" not in by_name.values(), by_name
    assert by_name[f"trial-{interrupted}"] == "FAILED" and by_name[f"study-{name}"] == "FINISHED", by_name


def _check_resumed(study: optuna.Study, interrupted: int) -> None:
    """The interrupted trial is retried with its params and resumes from its uploaded checkpoint:
    the retry took over after an epoch > 0 (its own first trained epoch comes after it)."""
    stopped = study.trials[interrupted]
    params = keys.trial_params(stopped)
    retries = [t for t in study.trials if t.number > interrupted and keys.trial_params(t) == params]
    assert retries, f"trial {interrupted} was not retried with its params"
    took_over = keys.resumed(retries[0])
    assert took_over is not None and took_over.epoch > 0, (
        f"trial {retries[0].number} started over instead of resuming trial {interrupted}"
    )
