"""`collatz-hpo train`: its flags are RunConfig's fields, defaults included; bad settings fail first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_main

from search.cli import build_parser
from search.cli.train import run_config_of
from search.spec.runconfig import RunConfig
from search.stats import wilson

TINY = [
    "--range", "1", "4096", "--train-size", "300", "--val-size", "64", "--test-size", "64",
    "--d-model", "16", "--nhead", "2", "--num-layers", "1", "--epochs", "2",
    "--samples-per-epoch", "none", "--threads", "1", "--batch-size", "64",
]  # fmt: skip


def _train_args(argv: list[str]) -> RunConfig:
    return run_config_of(build_parser().parse_args(["train", *argv]))


def test_no_flags_is_exactly_the_default_run_config() -> None:
    assert _train_args([]) == RunConfig()


def test_every_field_is_a_flag_with_help_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(RunConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert f.metadata["help"] in text, f.name
    assert "(default: 24)" in text and "(default: 1 1048576)" in text and "(default: none)" in text


def test_flags_reach_the_config() -> None:
    cfg = _train_args([*TINY, "--seconds", "12.5", "--patience", "3", "--monitor", "val_exact_match"])
    assert (cfg.data_range, cfg.train_size, cfg.d_model, cfg.nhead, cfg.num_decoder_layers) == (
        (1, 4096), 300, 16, 2, 1,
    )  # fmt: skip
    assert cfg.samples_per_epoch is None and cfg.time_budget == 12.5
    assert cfg.early_stopping_patience == 3 and cfg.monitor == "val_exact_match"


def test_train_runs_and_reports_held_out_exact_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["train", *TINY, "--json", "--checkpoint-dir", "ckpt"], tmp_path, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["test_size"] == 64 and 0.0 <= summary["test_exact_match"] <= 1.0
    assert summary["samples_seen"] == 2 * 300 and summary["num_parameters"] > 0
    assert (tmp_path / "ckpt" / "best.pt").is_file() and summary["best_checkpoint"].endswith("best.pt")
    code, out, err = run_main(["train", *TINY], tmp_path, capsys)  # the line a person reads
    assert code == 0, err
    held_out = wilson(summary["test_exact_match"], 64)
    assert f"held-out test exact match: {held_out} (token accuracy" in out and "n=64)" in out


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--nhead", "3"], ["nhead", "d_model"]),
        (["--train-size", "3000"], ["holds only 2048"]),
        (["--base", "65"], ["65"]),
    ],
)
def test_bad_settings_are_one_line_and_write_nothing(
    flags: list[str], needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["train", *TINY, *flags, "--checkpoint-dir", "ckpt"], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, "train:", *needles)
    assert not (tmp_path / "ckpt").exists()


def test_init_from_starts_from_the_checkpoint_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    code, _, err = run_main(["train", *TINY, "--json", "--checkpoint-dir", "a"], tmp_path, capsys)
    assert code == 0, err
    # a further epoch at a vanishing learning rate: the weights it saves are the ones it started from
    args = ["train", *TINY, "--epochs", "1", "--lr", "1e-12", "--init-from", "a/best.pt", "--json"]
    code, _, err = run_main([*args, "--checkpoint-dir", "b"], tmp_path, capsys)
    assert code == 0, err
    start = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model_state"]
    after = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["model_state"]
    assert start.keys() == after.keys()
    for name, value in start.items():
        assert torch.allclose(value, after[name], atol=1e-8), name


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--init-from", "nosuch.pt"], "--init-from nosuch.pt: no such checkpoint file"),
        (["--init-from", "a/best.pt", "--d-model", "32"], "was made for model config"),
    ],
)
def test_a_bad_init_from_is_one_line_and_writes_nothing(
    flags: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["train", *TINY, "--epochs", "1", "--checkpoint-dir", "a"], tmp_path, capsys)
    assert code == 0, err
    code, _, err = run_main(["train", *TINY, *flags, "--checkpoint-dir", "ckpt"], tmp_path, capsys)
    assert_one_line_error(code, err, "train:", needle)
    assert code == 2 and not (tmp_path / "ckpt").exists()
