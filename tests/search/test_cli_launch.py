"""`collatz-hpo` as users run it: launch, resume, workers, Ctrl-C, crash recovery, bad input, status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

# Fixtures (tests/search/conftest.py): ``hpo`` holds the helpers (run_cli, Store, Background,
# study_toml, ...); ``tiny_study`` is studies/tiny.toml launched once, a ``FinishedStudy``.
FinishedStudy = Any
Store = Any

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def _counted(trials: list) -> list:
    return [t for t in trials if t.state in COUNTED]


def _nothing_running(store: Store, name: str) -> None:
    trials = store.study(name).trials
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert not [r.info.run_name for r in store.runs(name) if r.info.status == "RUNNING"]


# --- resume ------------------------------------------------------------------------------------


def test_resume_reaches_the_new_total_with_the_same_parent_run(tmp_path: Path, hpo: Any) -> None:
    from search.spec.study_file import load_study

    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tiny.toml").write_bytes(hpo.TINY.read_bytes())
    name = load_study(tmp_path / "studies" / "tiny.toml").study.name
    store = hpo.Store(tmp_path)

    hpo.check(hpo.run_cli(["launch", "studies/tiny.toml", "--n-trials", "2"], tmp_path))
    assert len(_counted(store.study(name).trials)) == 2
    parents = store.parent_runs(name)
    assert len(parents) == 1
    parent_id = parents[0].info.run_id

    proc = hpo.check(hpo.run_cli(["launch", "studies/tiny.toml", "--n-trials", "5"], tmp_path))
    trials = store.study(name).trials
    assert len(_counted(trials)) == 5, proc.stdout
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert store.study(name).user_attrs["mlflow_parent_run_id"] == parent_id
    parents = store.parent_runs(name)
    assert [r.info.run_id for r in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED"
    children = store.child_runs(name)
    assert sorted(r.info.run_name for r in children) == [f"trial-{i}" for i in range(5)]
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent_id
    _nothing_running(store, name)

    # resuming with a file that measures something else is refused, and changes nothing
    changed, n = re.subn(r"(?m)^epochs\s*=\s*\d+", "epochs = 99", hpo.TINY.read_text())
    assert n == 1
    (tmp_path / "studies" / "tiny.toml").write_text(changed)
    proc = hpo.run_cli(["launch", "studies/tiny.toml", "--n-trials", "6"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "epochs" in lines[0], proc.stderr
    assert len(store.study(name).trials) == 5


# --- workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_finish_exactly_the_trial_count(tmp_path: Path, workers: int, hpo: Any) -> None:
    hpo.write_study(tmp_path, hpo.study_toml("workers", n_trials=6, epochs=2), "workers.toml")
    proc = hpo.run_cli(["launch", "workers.toml", "--workers", str(workers)], tmp_path)
    output = proc.stdout + proc.stderr
    hpo.check(proc)
    assert "database is locked" not in output.lower()
    store = hpo.Store(tmp_path)
    trials = store.study("workers").trials
    assert not [t.number for t in trials if t.state == TrialState.FAIL], output
    assert len(_counted(trials)) == 6
    assert len(trials) == 6, output
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    pids = set()
    for t in trials:
        worker = t.user_attrs.get("worker")
        assert worker and "pid" in worker and "host" in worker, t.user_attrs
        pids.add(worker["pid"])
    assert len(pids) >= 2, pids
    assert len(store.child_runs("workers")) == 6
    _nothing_running(store, "workers")


# --- reproducibility ---------------------------------------------------------------------------


def test_same_study_same_seed_gives_identical_trials(
    tiny_study: FinishedStudy, tmp_path: Path, hpo: Any
) -> None:
    again = hpo.launch_copy_of_tiny(tmp_path)
    hpo.check(again.proc)
    first = tiny_study.store.study(tiny_study.name).trials
    second = again.store.study(again.name).trials
    assert len(first) == len(second)
    c1, c2 = tiny_study.store.client(), again.store.client()
    for a, b in zip(first, second, strict=True):
        assert a.number == b.number
        assert a.params == b.params, a.number
        assert a.user_attrs["params"] == b.user_attrs["params"], a.number
        assert a.state == b.state, a.number
        assert a.intermediate_values == b.intermediate_values, a.number
        assert a.value == b.value, a.number
        for metric in ("train_loss", "val_loss"):
            h1 = [(m.step, m.value) for m in c1.get_metric_history(a.user_attrs["mlflow_run_id"], metric)]
            h2 = [(m.step, m.value) for m in c2.get_metric_history(b.user_attrs["mlflow_run_id"], metric)]
            assert sorted(h1) == sorted(h2), (a.number, metric)


# --- Ctrl-C and crashes ------------------------------------------------------------------------


# A study whose trial is still training when we interrupt it (at epoch 2), yet short enough
# (about 15 × 0.3 s on one thread) for a resumed launch to run a whole new trial.
def _long(hpo: Any, n_trials: int = 1, epochs: int = 15) -> str:
    return hpo.study_toml("long", n_trials=n_trials, epochs=epochs, train_size=1500)


def _at_epoch_2(prefixes: tuple[str, ...]) -> object:
    """Per-epoch lines (``launch --verbose``) show that every worker is inside a trial."""

    def seen(lines: list[str]) -> bool:
        return all(any(line.startswith(p) and "epoch 2/" in line for line in lines) for p in prefixes)

    return seen


def test_ctrl_c_marks_the_running_trial_interrupted_and_resume_goes_on(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, _long(hpo), "long.toml")
    bg = hpo.Background(["launch", "long.toml", "--verbose"], tmp_path)
    bg.wait_for(_at_epoch_2(("trial 0",)))
    bg.signal_group(signal.SIGINT)
    code = bg.wait(timeout=90)
    assert code == 130, bg.output
    store = hpo.Store(tmp_path)
    (trial,) = store.study("long").trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs.get("fail_reason") == "interrupted"
    assert store.run_of(trial).info.status == "FAILED"
    _nothing_running(store, "long")
    parent_id = store.study("long").user_attrs["mlflow_parent_run_id"]

    proc = hpo.check(hpo.run_cli(["launch", "long.toml", "--timeout", "5"], tmp_path))
    trials = store.study("long").trials
    old = trials[0]
    assert old.state == TrialState.FAIL and old.user_attrs.get("fail_reason") == "interrupted"
    assert len(trials) == 2, proc.stdout
    assert trials[1].state in COUNTED, proc.stdout
    assert store.run_of(old).info.status == "FAILED"
    assert [r.info.run_id for r in store.parent_runs("long")] == [parent_id]
    _nothing_running(store, "long")


def test_ctrl_c_with_two_workers_marks_both_trials_interrupted(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, _long(hpo, n_trials=2, epochs=200), "long.toml")
    bg = hpo.Background(["launch", "long.toml", "--workers", "2", "--verbose"], tmp_path)
    bg.wait_for(_at_epoch_2(("[w0] trial", "[w1] trial")), timeout=180)
    bg.signal_group(signal.SIGINT)
    code = bg.wait(timeout=120)
    assert code == 130, bg.output
    store = hpo.Store(tmp_path)
    trials = store.study("long").trials
    assert len(trials) == 2, bg.output
    for t in trials:
        assert t.state == TrialState.FAIL, (t.number, bg.output)
        assert t.user_attrs.get("fail_reason") == "interrupted", t.number
        assert store.run_of(t).info.status == "FAILED", t.number
    _nothing_running(store, "long")


@pytest.mark.parametrize("how", ["sigterm", "sigkill-parent"])
def test_stopping_launch_alone_stops_its_workers_cleanly(tmp_path: Path, hpo: Any, how: str) -> None:
    """SIGTERM to `launch` (a scheduler) or SIGKILL of it alone: no worker goes on orphaned."""
    hpo.write_study(tmp_path, _long(hpo, n_trials=2, epochs=200), "long.toml")
    bg = hpo.Background(["launch", "long.toml", "--workers", "2", "--verbose"], tmp_path)
    bg.wait_for(_at_epoch_2(("[w0] trial", "[w1] trial")), timeout=180)
    os.kill(bg.proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)  # not the group
    code = bg.wait(timeout=120)
    assert code == (130 if how == "sigterm" else -signal.SIGKILL), bg.output
    store = hpo.Store(tmp_path)
    deadline = time.time() + 60  # orphaned workers get SIGTERM from the kernel (PDEATHSIG)
    while time.time() < deadline and any(t.state == TrialState.RUNNING for t in store.study("long").trials):
        time.sleep(0.5)
    for t in store.study("long").trials:
        assert t.state == TrialState.FAIL, (t.number, bg.output)
        assert t.user_attrs.get("fail_reason") == "interrupted", t.number
        assert store.run_of(t).info.status == "FAILED", t.number


def test_dead_worker_trial_is_failed_on_next_launch(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, _long(hpo), "long.toml")
    bg = hpo.Background(["launch", "long.toml", "--verbose"], tmp_path)
    bg.wait_for(_at_epoch_2(("trial 0",)))
    bg.signal_group(signal.SIGKILL)
    assert bg.wait(timeout=30) == -signal.SIGKILL
    store = hpo.Store(tmp_path)
    (trial,) = store.study("long").trials
    assert trial.state == TrialState.RUNNING
    assert store.run_of(trial).info.status == "RUNNING"

    proc = hpo.check(hpo.run_cli(["launch", "long.toml", "--timeout", "3"], tmp_path))
    trials = store.study("long").trials
    old = trials[0]
    assert old.state == TrialState.FAIL, proc.stdout
    assert "died" in old.user_attrs.get("fail_reason", ""), old.user_attrs
    assert store.run_of(old).info.status == "FAILED"
    assert len(trials) == 2 and trials[1].state in COUNTED, proc.stdout
    _nothing_running(store, "long")


# --- bad input ---------------------------------------------------------------------------------

# (id, edits of the valid file (old, new) — old "" appends new —, or None for "no file",
#  a fragment the one-line error must contain)
BAD_FILES = [
    ("unknown-key", [("n_trials = 4\n", 'n_trials = 4\ncolour = "red"\n')], "colour"),
    ("typo-suggestion", [("n_trials = 4", "n_trails = 4")], "did you mean 'n_trials'"),
    ("unknown-section", [("", "\n[extra]\nx = 1\n")], "extra"),
    ("wrong-type", [("n_trials = 4", 'n_trials = "four"')], "n_trials"),
    ("bool-for-int", [("n_trials = 4", "n_trials = true")], "n_trials"),
    ("float-for-int", [("num_layers = { low = 1, high = 2 }", "num_layers = 1.5")], "num_layers"),
    ("empty-choices", [("base = { choices = [16, 24, 32] }", "base = { choices = [] }")], "base"),
    (
        "low-above-high",
        [("num_layers = { low = 1, high = 2 }", "num_layers = { low = 3, high = 1 }")],
        "num_layers",
    ),
    ("base-1", [("base = { choices = [16, 24, 32] }", "base = 1")], "base"),
    ("no-dividing-nhead", [("nhead = { choices = [2, 4, 3] }", "nhead = { choices = [3, 5] }")], "nhead"),
    (
        "d_model-without-head",
        [("d_model = { choices = [16, 32] }", "d_model = { choices = [16, 25] }")],
        "25",
    ),
    ("negative-lr", [("lr = { low = 1e-4, high = 1e-2, log = true }", "lr = -0.001")], "lr"),
    ("lr-choices", [("lr = { low = 1e-4, high = 1e-2, log = true }", "lr = { choices = [1e-3] }")], "lr"),
    ("dropout-1", [("", "dropout = 1.0\n")], "dropout"),
    ("unknown-metric", [('metric = "val_accuracy"', 'metric = "val_acc"')], "val_acc"),
    ("direction-vs-metric", [("n_trials = 4\n", 'n_trials = 4\ndirection = "minimize"\n')], "direction"),
    ("unknown-sampler", [('sampler = "tpe"', 'sampler = "cmaes"')], "cmaes"),
    ("unknown-pruner", [('type = "median"', 'type = "patient"')], "patient"),
    ("grid-with-range", [('sampler = "tpe"', 'sampler = "grid"')], "grid"),
    (
        "missing-section",
        [("[training]\nepochs = 3\nbatch_size = 64\neval_batch_size = 256\nthreads = 1\n", "")],
        "training",
    ),
    ("missing-key", [("train_size = 300\n", "")], "train_size"),
    ("epochs-0", [("epochs = 3", "epochs = 0")], "epochs"),
    ("sizes-beyond-range", [("range = [1, 4096]", "range = [1, 400]")], "400"),
    ("range-of-3", [("range = [1, 4096]", "range = [1, 2, 3]")], "range"),
    ("toml-syntax", [("n_trials = 4", "n_trials = ")], "TOML"),
    ("missing-file", None, "no such"),
]
BAD_PARAMS = [pytest.param(edits, fragment, id=case) for case, edits, fragment in BAD_FILES] + [
    pytest.param(
        [
            ('sampler = "tpe"', 'sampler = "grid"'),
            ("d_model = { choices = [16, 32] }", "d_model = { choices = [16, 24] }"),
            ("nhead = { choices = [2, 4, 3] }", "nhead = { choices = [3, 4] }"),
            ("num_layers = { low = 1, high = 2 }", "num_layers = 1"),
            ("lr = { low = 1e-4, high = 1e-2, log = true }", "lr = 1e-3"),
        ],
        "nhead",
        id="grid-heads-differ-per-d_model",
    ),
    pytest.param(
        [("[training]\n", "[trainings]\n")],
        "did you mean 'training'",
        id="misspelled-section",
    ),
    pytest.param(
        [("train_size = 300", "trian_size = 300")],
        "did you mean 'train_size'",
        id="misspelled-required-key",
    ),
]


def _edited(valid: str, edits: list[tuple[str, str]]) -> str:
    text = valid
    for old, new in edits:
        if not old:
            text += new
        else:
            assert old in text, old
            text = text.replace(old, new, 1)
    return text


def _entries(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize(("edits", "fragment"), BAD_PARAMS)
def test_bad_study_file_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, hpo: Any, edits: list[tuple[str, str]] | None, fragment: str
) -> None:
    if edits is not None:
        hpo.write_study(tmp_path, _edited(hpo.study_toml("bad"), edits), "bad-study.toml")
    before = _entries(tmp_path)
    proc = hpo.run_cli(["launch", "bad-study.toml"], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bad-study.toml" in lines[0]
    assert fragment in lines[0], lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "mlruns").exists()
    assert _entries(tmp_path) == before


def test_directory_as_study_file(tmp_path: Path, hpo: Any) -> None:
    (tmp_path / "dir.toml").mkdir()
    proc = hpo.run_cli(["launch", "dir.toml"], tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dir.toml" in lines[0], proc.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["--workers", "0"],
        ["--n-trials", "0"],
        ["--n-trials", "two"],
        ["--timeout", "-1"],
        ["--storage", "not-a-url"],
        ["--tracking-uri", "not-a-url"],
    ],
    ids=lambda f: " ".join(f),
)
def test_bad_launch_flags_exit_2_and_write_nothing(tmp_path: Path, flags: list[str], hpo: Any) -> None:
    hpo.write_study(tmp_path, hpo.study_toml("bad"), "ok.toml")
    proc = hpo.run_cli(["launch", "ok.toml", *flags], tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error" in proc.stderr
    assert not (tmp_path / "mlruns").exists()
    assert _entries(tmp_path) == {"ok.toml"}
    if flags[0] in ("--storage", "--tracking-uri"):
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def unusable_storage_launch(tmp_path_factory: pytest.TempPathFactory, hpo: Any) -> Any:
    """A launch whose Optuna storage cannot be used (no server, no driver); its URL has a password."""
    root = tmp_path_factory.mktemp("unusable")
    hpo.write_study(root, hpo.study_toml("bad"), "ok.toml")
    url = "postgresql://alice:s3cr3t-pw@127.0.0.1:1/db"
    return hpo.run_cli(["launch", "ok.toml", "--storage", url], root, timeout=120)


def test_unusable_storage_does_not_leak_its_password(unusable_storage_launch: Any) -> None:
    proc = unusable_storage_launch
    assert proc.returncode != 0
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr


def test_unusable_storage_is_a_one_line_error(unusable_storage_launch: Any) -> None:
    proc = unusable_storage_launch
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_status_of_unknown_study_on_empty_dir_creates_nothing(tmp_path: Path, hpo: Any) -> None:
    proc = hpo.run_cli(["status", "nosuch"], tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0], proc.stderr
    assert _entries(tmp_path) == set()


def test_status_of_unknown_study_in_a_store(tiny_study: FinishedStudy, hpo: Any) -> None:
    proc = hpo.run_cli(["status", "nosuch"], tiny_study.root, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0], proc.stderr
    assert tiny_study.name in lines[0]  # the studies that do exist are named


def test_status_of_missing_study_file(tmp_path: Path, hpo: Any) -> None:
    proc = hpo.run_cli(["status", "missing.toml"], tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.toml" in lines[0], proc.stderr
    assert _entries(tmp_path) == set()


# --- help --------------------------------------------------------------------------------------


def _console_script(hpo: Any) -> list[str]:
    script = Path(sys.executable).with_name("collatz-hpo")
    return [str(script)] if script.exists() else hpo.CLI


def test_top_level_help_is_fast(tmp_path: Path, hpo: Any) -> None:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run(
            [*_console_script(hpo), "--help"], cwd=tmp_path, env=hpo.cli_env(), capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
        for command in ("launch", "status", "train"):
            assert command in proc.stdout
    assert min(times) < 0.5, times


@pytest.mark.parametrize("command", ["launch", "status", "train"])
def test_subcommand_help(tmp_path: Path, command: str, hpo: Any) -> None:
    proc = hpo.run_cli([command, "--help"], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ")
    assert command in proc.stdout.splitlines()[0]
    assert not (tmp_path / "mlruns").exists()


# --- status ------------------------------------------------------------------------------------


def _check_status_output(out: str, done: FinishedStudy) -> None:
    study = done.store.study(done.name)
    rows = re.findall(r"^\s*(\d+)\s+(COMPLETE|PRUNED|FAIL|RUNNING)\b", out, flags=re.M)
    assert sorted(int(n) for n, _ in rows) == [t.number for t in study.trials], out
    for n, state in rows:
        assert study.trials[int(n)].state.name == state
    best = [line for line in out.splitlines() if "best" in line]
    assert best, out
    assert f"trial {study.best_trial.number}" in best[-1]


@pytest.mark.parametrize("which", ["name", "file"])
def test_status_prints_a_row_per_trial_and_the_best(tiny_study: FinishedStudy, which: str, hpo: Any) -> None:
    arg = tiny_study.name if which == "name" else str(tiny_study.file)
    proc = hpo.check(hpo.run_cli(["status", arg], tiny_study.root, timeout=120))
    _check_status_output(proc.stdout, tiny_study)


def _status_study(url: str) -> None:
    """A study like cpu_hour: exact match on 2,000 validation inputs, the pruner on val_loss
    (negated) per training samples; two complete trials, one pruned, one replicate."""
    import optuna
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(study_name="figures", storage=url, direction="maximize")
    study.set_user_attr(
        "config",
        {
            "study": {"metric": "val_exact_match", "prune_on": "val_loss", "pruner": {"unit": "samples"}},
            "data": {"range": [1, 1 << 20], "val_size": 2000, "test_size": 10_000},
        },
    )
    dist = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for value, test, attrs in [(0.9747, 0.9731, {}), (0.9, 0.89, {}), (0.97, 0.9701, {"replicate_of": 0})]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3},
                distributions=dist,
                value=value,
                intermediate_values={100_000: -0.9, 300_000: -0.3},
                user_attrs={"params": {"lr": 1e-3}, "test_exact_match": test, **attrs},
            )
        )
    pruned = {100_000: -1.2, 300_000: -0.7596}
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 1e-2}, distributions=dist, state=TrialState.PRUNED, intermediate_values=pruned
        )
    )


def test_status_keeps_the_objective_apart_from_what_the_pruner_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The objective column holds COMPLETE trials only, with its interval; a pruned trial says where
    it stopped and the val_loss the pruner saw there (not negated), in columns of their own."""
    from cli_helpers import run_main

    from search.stats import wilson  # checked against scipy in test_stats.py

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _status_study(url)
    code, out, err = run_main(["status", "figures", "--storage", url], tmp_path, capsys)
    assert code == 0, err
    lines = out.splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    assert header[:5] == ["trial", "state", "val_exact_match %", "pruned at", "pruner's val_loss"]
    assert "test exact match %" in header
    rows = {int(line.split()[0]): re.split(r"\s{2,}", line.strip()) for line in lines[1:5]}
    assert rows[0][2] == wilson(0.9747, 2000).short() and rows[0][3:5] == ["-", "-"]
    assert rows[3][1:5] == ["PRUNED", "-", "300k samples", "0.7596"]
    assert rows[0][header.index("test exact match %")] == wilson(0.9731, 10_000).short()
    assert rows[2][-1] == "replicate of trial 0"
    figures = f"val_exact_match {wilson(0.9747, 2000)}; held-out exact match {wilson(0.9731, 10_000)}"
    assert f"best trial 0: {figures}" in out
    assert "2 trial(s) cannot be told apart from it" not in out  # 90 % is apart; 97.0 % is not
    assert "1 trial(s) cannot be told apart from it (val_exact_match intervals overlap): 2" in out
    assert "trial 0 and 1 replicate(s): held-out exact match 97.16 ±0.21 % (mean ± std over 2 seeds)" in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_failing_trials_are_fail_with_their_reason_and_the_study_goes_on(tmp_path: Path, hpo: Any) -> None:
    """A trial that cannot run (here: device cuda on a CPU machine) is FAIL with the reason, its
    run FAILED with a fail_reason tag; the worker goes on with new trials and stops with a clear
    error after max(3, n_trials) failures instead of looping for ever."""
    text = hpo.study_toml("broken", n_trials=3).replace("threads = 1", 'threads = 1\ndevice = "cuda"')
    hpo.write_study(tmp_path, text, "broken.toml")
    proc = hpo.run_cli(["launch", "broken.toml"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "3 trials failed in this worker" in proc.stdout
    store = hpo.Store(tmp_path)
    trials = store.study("broken").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # it went on after the first failure
    for t in trials:
        assert "no CUDA GPU" in t.user_attrs["fail_reason"]
        run = store.run_of(t)
        assert run.info.status == "FAILED"
        assert "no CUDA GPU" in run.data.tags["fail_reason"]
    _nothing_running(store, "broken")


def test_grid_study_with_two_workers_runs_each_point_exactly_once(tmp_path: Path, hpo: Any) -> None:
    text = hpo.study_toml(
        "grid",
        n_trials=6,
        sampler="grid",
        pruner='type = "none"',
        base="{ choices = [16, 24, 32] }",
        d_model="16",
        nhead="2",
        num_layers="{ choices = [1, 2] }",
        lr="1e-3",
        epochs=1,
    )
    hpo.write_study(tmp_path, text, "grid.toml")
    proc = hpo.check(hpo.run_cli(["launch", "grid.toml", "--workers", "2"], tmp_path))
    assert "Traceback" not in proc.stdout + proc.stderr
    trials = hpo.Store(tmp_path).study("grid").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    points = sorted((t.params["base"], t.params["num_layers"]) for t in trials)
    assert points == [(b, n) for b in (16, 24, 32) for n in (1, 2)]


def test_the_summary_line_carries_the_intervals_and_leaves_a_loss_bare(tmp_path: Path) -> None:
    """What launch prints after each trial: the best exact match with its validation interval and
    the held-out figure with its own; a study minimizing val_loss shows the loss as it is."""
    import optuna
    from optuna.distributions import FloatDistribution

    from search.stats import wilson
    from search.study.opening import summarize

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _status_study(url)
    study = optuna.load_study(study_name="figures", storage=url)
    line = summarize(study, of=8)
    assert line.startswith("3 complete, 1 pruned, 0 failed, 0 running of 8 | ")
    assert line.endswith(f"best {wilson(0.9747, 2000)} (trial 0), held-out {wilson(0.9731, 10_000)}")
    assert summarize(study, best=False) == "3 complete, 1 pruned, 0 failed, 0 running"
    loss = optuna.create_study(study_name="loss", storage=url, direction="minimize")
    loss.set_user_attr("config", {"study": {"metric": "val_loss"}, "data": {"val_size": 2000}})
    loss.add_trial(
        optuna.trial.create_trial(
            params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2)}, value=0.7596
        )
    )
    assert summarize(loss).endswith("| best 0.7596 (trial 0)")
