"""One GPU per worker: `launch --workers N` gives worker i its own device, round robin over
`--devices` or every visible GPU, more workers than GPUs only with `--share-devices`; the device is
recorded on each trial's run; without a GPU nothing changes. Tested without a GPU: the device count
is faked (torch asks NVML for it, so a fake count is all the launching process looks at)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_one_line_error, run_main

from search.spec.runconfig import RunConfig
from search.study.devices import DeviceError, assign_devices, cuda_visible_value, use_device
from search.trial.lifecycle import device_tags


@pytest.mark.parametrize(
    ("workers", "visible", "devices", "share", "expected"),
    [
        (3, 0, None, False, [None, None, None]),  # no GPU: the CPU path, whatever the count
        (1, 1, None, False, [0]),
        (2, 1, None, True, [0, 0]),
        (4, 4, None, False, [0, 1, 2, 3]),
        (2, 4, None, False, [0, 1]),
        (6, 4, None, True, [0, 1, 2, 3, 0, 1]),
        (2, 4, [2, 0], False, [2, 0]),
        (3, 4, [3, 1], True, [3, 1, 3]),
        (1, 4, [3], False, [3]),
    ],
)
def test_each_worker_gets_its_gpu(
    workers: int, visible: int, devices: list[int] | None, share: bool, expected: list[int | None]
) -> None:
    assert assign_devices(workers, visible, devices, share) == expected


@pytest.mark.parametrize(
    ("workers", "visible", "devices", "share", "needle"),
    [
        (2, 1, None, False, "--share-devices"),
        (5, 4, None, False, "--workers 5 on 4 GPU(s) (0,1,2,3)"),
        (3, 4, [0, 2], False, "--workers 3 on 2 GPU(s) (0,2)"),
        (1, 0, [0], False, "no CUDA GPU"),
        (1, 4, [4], False, "no GPU 4 here (torch sees 4: 0,1,2,3)"),
        (2, 4, [1, 1], True, "named twice"),
    ],
)
def test_workers_and_gpus_that_do_not_fit_are_refused(
    workers: int, visible: int, devices: list[int] | None, share: bool, needle: str
) -> None:
    with pytest.raises(DeviceError) as err:
        assign_devices(workers, visible, devices, share)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_worker_sees_its_gpu_through_the_launching_process_own_visible_devices() -> None:
    assert cuda_visible_value(2, {}) == "2"
    assert cuda_visible_value(2, {"CUDA_VISIBLE_DEVICES": "4, 5,6,7"}) == "6"


def test_use_device_sets_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    use_device(None)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # restored afterwards
    use_device("1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_the_trial_records_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device_tags(RunConfig(device="auto")) == {"device": "cpu"}  # the CPU path: as before
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device_tags(RunConfig(device="auto")) == {"device": "cpu", "cuda_visible_devices": "3"}


@pytest.mark.parametrize(
    ("gpus", "flags", "needle"),
    [
        (1, ["--workers", "2"], "--share-devices"),
        (4, ["--workers", "5"], "--workers 5 on 4 GPU(s)"),
        (4, ["--devices", "0,4"], "no GPU 4 here"),
        (0, ["--devices", "0"], "no CUDA GPU"),
    ],
)
def test_launch_refuses_before_anything_is_written(
    tmp_path: Path,
    hpo: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    gpus: int,
    flags: list[str],
    needle: str,
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    hpo.write_study(tmp_path, hpo.study_toml("dev", n_trials=2, epochs=1), "dev.toml")
    code, _, err = run_main(["launch", "dev.toml", *flags], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.toml"]


# The launching process with a faked count of 4 GPUs (in its own process: the count is patched
# there), run through the CLI; its worker processes are spawned as always and train on the CPU.
FAKE_FOUR_GPUS = """
import sys, torch
torch.cuda.device_count = lambda: 4
from search.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_launch_gives_each_worker_process_its_gpu(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, hpo.study_toml("dev", n_trials=4, epochs=1), "dev.toml")
    env = {**hpo.cli_env(), "CUDA_VISIBLE_DEVICES": "4,5,6,7"}  # the machine's GPUs 4-7 are ours
    proc = subprocess.run(
        [sys.executable, "-c", FAKE_FOUR_GPUS, "launch", "dev.toml", "--workers", "2", "--devices", "3,1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    hpo.check(proc)
    assert "GPU of each worker (CUDA_VISIBLE_DEVICES): [w0] 7, [w1] 5" in proc.stdout
    runs = hpo.Store(tmp_path).child_runs("dev")
    assert len(runs) == 4
    # each worker saw its own GPU only (here: none trains, the machine has no GPU)
    assert {r.data.tags["cuda_visible_devices"] for r in runs} == {"7", "5"}
    assert {r.data.tags["device"] for r in runs} == {"cpu"}
