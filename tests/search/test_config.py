"""Study files: the shipped ones load, bad ones fail with one precise line."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from search.spec.study_file import (
    Categorical,
    ConfigError,
    Fixed,
    FloatRange,
    IntRange,
    StudyConfig,
    load_study,
    parse_study,
)
from search.trial.config import run_config_for

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SHIPPED = sorted(p.stem for p in STUDIES.glob("*.toml"))  # every study the project ships

VALID = """\
[study]
name = "t"
n_trials = 3
sampler = "tpe"

[study.pruner]
type = "median"
n_startup_trials = 1

[data]
range = [1, 4096]
train_size = 100
val_size = 20
test_size = 20

[training]
epochs = 2

[search]
base = { choices = [16, 24] }
d_model = { choices = [16, 32] }
nhead = { choices = [2, 4] }
num_layers = { low = 1, high = 2 }
lr = { low = 1e-3, high = 1e-2, log = true }
"""


def sub(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- shipped studies -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_studies_load(name: str) -> None:
    cfg = load_study(STUDIES / f"{name}.toml")
    assert isinstance(cfg, StudyConfig)
    assert cfg.study.name == name
    assert cfg.source == str(STUDIES / f"{name}.toml")
    for d_model in cfg.search.d_model.values:
        assert cfg.search.valid_nheads(d_model)


def test_quick_study_is_a_short_real_search_with_pruning() -> None:
    cfg = load_study(STUDIES / "quick.toml")
    assert cfg.study.timeout is not None and cfg.study.timeout <= 300  # the 5-minute promise
    assert cfg.study.pruner.type != "none"
    assert cfg.training.threads == 1  # two 1-thread workers on 2 cores
    assert {"base", "d_model", "nhead", "num_layers", "lr"} <= set(cfg.search.searched())
    assert isinstance(cfg.search.lr, FloatRange) and cfg.search.lr.log
    assert isinstance(cfg.search.num_layers, IntRange)
    assert 24 in cfg.search.base.values


def test_base_sweep_is_a_grid_over_bases_only() -> None:
    cfg = load_study(STUDIES / "base_sweep.toml")
    assert cfg.study.sampler == "grid" and cfg.study.pruner.type == "none"
    assert cfg.search.searched() == {"base": Categorical((2, 3, 11, 16, 24, 32))}
    assert cfg.search.fixed() == {
        "d_model": 64,
        "nhead": 4,
        "num_layers": 2,
        "lr": 3e-3,
        "dropout": 0.0,
        "num_decoder_layers": 1,
    }
    assert cfg.training.samples_per_epoch is not None
    assert cfg.study.n_trials == len(cfg.search.base.values)


def test_tiny_filters_nheads() -> None:
    cfg = load_study(STUDIES / "tiny.toml")
    assert cfg.search.nhead.values == (2, 4, 3)
    assert cfg.search.valid_nheads(16) == [2, 4]
    assert cfg.search.valid_nheads(32) == [2, 4]
    assert cfg.search.valid_nheads(12) == [2, 4, 3]


def test_params_defaults() -> None:
    cfg = load_study(STUDIES / "tiny.toml")
    params = cfg.search.params()
    assert params["dropout"] == Fixed(0.0) and params["num_decoder_layers"] == Fixed(1)
    assert "batch_size" not in params and "dim_feedforward" not in params  # None: use the defaults
    assert set(cfg.search.searched()) == {"base", "d_model", "nhead", "num_layers", "lr"}


# --- overrides, round trip, immutability ------------------------------------------------------------


def test_overrides() -> None:
    path = STUDIES / "quick.toml"
    cfg = load_study(path, n_trials=2, timeout=5, seed=7)
    assert (cfg.study.n_trials, cfg.study.timeout, cfg.study.seed) == (2, 5.0, 7)
    assert cfg.source == str(path)
    base = load_study(path)
    again = base.with_overrides(n_trials=3)
    assert again.study.n_trials == 3 and base.study.n_trials == 24
    assert again.study.timeout == base.study.timeout
    assert base.with_overrides() == base


def test_invalid_override_is_a_config_error() -> None:
    path = STUDIES / "quick.toml"
    with pytest.raises(ConfigError) as info:
        load_study(path, n_trials=0)
    assert info.value.key == "study.n_trials"
    assert str(info.value).startswith(f"{path}: study.n_trials: ")


@pytest.mark.parametrize("name", SHIPPED)
def test_to_dict_round_trip(name: str) -> None:
    cfg = load_study(STUDIES / f"{name}.toml")
    data = cfg.to_dict()
    assert "source" not in data
    assert json.loads(json.dumps(data)) == data  # plain JSON-able
    again = parse_study(data)
    assert again == cfg
    assert hash(again) == hash(cfg)
    assert again.to_dict() == data


def test_frozen() -> None:
    cfg = load_study(STUDIES / "tiny.toml")
    with pytest.raises(ValidationError):
        cfg.study.n_trials = 5
    with pytest.raises(ValidationError):
        cfg.search = cfg.search
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.search.lr.low = 1.0
    assert cfg.study.n_trials == 4


def test_direction_derived_from_metric() -> None:
    assert parse_study(_dict()).study.direction == "maximize"
    loss = _dict(study={"name": "t", "metric": "val_loss"})
    assert parse_study(loss).study.direction == "minimize"
    explicit = _dict(study={"name": "t", "metric": "val_accuracy", "direction": "maximize"})
    assert parse_study(explicit).study.direction == "maximize"


def test_numbers_are_typed() -> None:
    data = _dict(study={"name": "t", "timeout": 300})
    data["search"]["lr"] = 1
    cfg = parse_study(data)
    assert cfg.study.timeout == 300.0 and isinstance(cfg.study.timeout, float)
    assert cfg.search.lr == Fixed(1.0) and isinstance(cfg.search.lr.value, float)


def test_config_error_attributes_and_pickle() -> None:
    err = ConfigError("f.toml", "study.n_trials", "must be\n>= 1")
    assert str(err) == "f.toml: study.n_trials: must be >= 1"
    assert (err.path, err.key, err.problem) == ("f.toml", "study.n_trials", "must be >= 1")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.key == err.key


def test_parse_study_rejects_non_tables() -> None:
    with pytest.raises(ConfigError, match="<dict>: expected a table"):
        parse_study([1, 2])  # type: ignore[arg-type]


def _dict(**sections: dict) -> dict:
    import tomllib

    data = tomllib.loads(VALID)
    data.update(sections)
    return data


# --- bad files ----------------------------------------------------------------------------------------

BAD = [
    # (id, file text, dotted key, problem substring)
    ("unknown-section", VALID + "\n[optimizer]\nlr = 1\n", "optimizer", "unknown section 'optimizer'"),
    ("unknown-key", sub("n_trials = 3", "n_trail = 3"), "study.n_trail", "did you mean 'n_trials'?"),
    (
        "nested-typo",
        sub("n_startup_trials = 1", "n_startup_trail = 1"),
        "study.pruner.n_startup_trail",
        "did you mean 'n_startup_trials'?",
    ),
    ("wrong-type", sub("n_trials = 3", 'n_trials = "ten"'), "study.n_trials", "expected an integer, got str"),
    ("bool-for-int", sub("epochs = 2", "epochs = true"), "training.epochs", "expected an integer, got bool"),
    ("float-for-int", sub("epochs = 2", "epochs = 2.0"), "training.epochs", "expected an integer"),
    ("missing-section", sub("[training]\nepochs = 2\n", ""), "training", "missing required section"),
    ("missing-key", sub("epochs = 2", ""), "training.epochs", "missing required key"),
    ("missing-range-key", sub("low = 1, high = 2", "low = 1"), "search.num_layers.high", "missing"),
    ("empty-choices", sub("[16, 24]", "[]"), "search.base.choices", "must not be empty"),
    ("low-above-high", sub("low = 1, high = 2", "low = 3, high = 2"), "search.num_layers", "must not exceed"),
    ("base-1", sub("base = { choices = [16, 24] }", "base = 1"), "search.base", "2..64"),
    ("base-65", sub("[16, 24]", "[16, 65]"), "search.base.choices", "2..64"),
    (
        "no-nhead-divides",
        sub("nhead = { choices = [2, 4] }", "nhead = { choices = [5, 7] }"),
        "search.nhead",
        "no nhead value in [5, 7] divides any d_model value in [16, 32]",
    ),
    (
        "d-model-without-nhead",
        sub("[16, 32]", "[16, 18]").replace("[2, 4]", "[4, 8]"),
        "search.d_model",
        "d_model = 18 has no dividing nhead",
    ),
    (
        "unknown-metric",
        sub('name = "t"', 'name = "t"\nmetric = "accuracy"'),
        "study.metric",
        "'val_exact_match', 'val_accuracy' or 'val_loss'",
    ),
    (
        "contradictory-direction",
        sub('name = "t"', 'name = "t"\nmetric = "val_loss"\ndirection = "maximize"'),
        "study.direction",
        "contradicts metric = 'val_loss'",
    ),
    (
        "unknown-sampler",
        sub('sampler = "tpe"', 'sampler = "cmaes"'),
        "study.sampler",
        "'cmaes' is not a valid sampler",
    ),
    (
        "unknown-pruner",
        sub('type = "median"', 'type = "patient"'),
        "study.pruner.type",
        "'patient' is not a valid pruner type",
    ),
    ("grid-with-range", sub('sampler = "tpe"', 'sampler = "grid"'), "search.num_layers", "sampler = 'grid'"),
    ("data-too-small", sub("train_size = 100", "train_size = 3000"), "data", "holds only 2048"),
    (
        "log-low-zero",
        sub("low = 1e-3, high = 1e-2", "low = 0.0, high = 1e-2"),
        "search.lr.low",
        "log = true needs low > 0",
    ),
    (
        "lr-negative",
        sub("low = 1e-3, high = 1e-2, log = true", "low = -1e-3, high = 1e-2"),
        "search.lr.low",
        "must be a number > 0",
    ),
    ("duplicate-choices", sub("[16, 24]", "[16, 24, 16]"), "search.base.choices", "duplicate choice 16"),
    (
        "range-typo",
        sub("low = 1, high = 2", "low = 1, hihg = 2"),
        "search.num_layers.hihg",
        "did you mean 'high'?",
    ),
    (
        "float-int-range",
        sub("low = 1, high = 2", "low = 1.5, high = 2"),
        "search.num_layers.low",
        "expected an integer",
    ),
    (
        "d-model-range",
        sub("d_model = { choices = [16, 32] }", "d_model = { low = 16, high = 32 }"),
        "search.d_model",
        "cannot be a range",
    ),
    (
        "lr-choices",
        sub("lr = { low = 1e-3, high = 1e-2, log = true }", "lr = { choices = [1e-3] }"),
        "search.lr",
        "cannot be searched over choices",
    ),
    (
        "list-not-choices",
        sub("base = { choices = [16, 24] }", "base = [16, 24]"),
        "search.base",
        "{ choices = [16, 24] }",
    ),
    ("dropout-1", VALID + "dropout = 1.0\n", "search.dropout", "in [0, 1)"),
    ("unknown-search-param", VALID + "heads = 4\n", "search.heads", "did you mean 'nhead'?"),
    ("range-reversed", sub("range = [1, 4096]", "range = [4096, 1]"), "data.range", "1 <= lo < hi"),
    ("range-too-big", sub("range = [1, 4096]", "range = [1, 4611686018427387905]"), "data.range", "2**62"),
    ("bad-name", sub('name = "t"', 'name = "my study"'), "study.name", "letters, digits"),
    ("timeout-zero", sub("n_trials = 3", "n_trials = 3\ntimeout = 0"), "study.timeout", "must be > 0"),
    (
        "grace-without-heartbeat",
        sub("n_trials = 3", "n_trials = 3\ngrace_period = 60"),
        "study.grace_period",
        "needs heartbeat_interval",
    ),
    ("toml-syntax", sub("n_trials = 3", "n_trials = "), "", "invalid TOML"),
]


@pytest.mark.parametrize(("text", "key", "problem"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_bad_file(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert err.path == str(path)
    assert err.key == key
    if key:
        assert message.startswith(f"{path}: {key}: ")
    assert problem in err.problem, message


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, sub("n_trials = 3", "n_trials = "))
    with pytest.raises(ConfigError, match=r"line 3"):
        load_study(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert str(info.value) == f"{path}: no such study file"
    assert info.value.key == ""


def test_cpu_hour_long_gives_each_depth_the_hour_on_one_core() -> None:
    # the grid's two trials, 3 and 4 layers, each with the whole time budget on one thread
    cfg = load_study(STUDIES / "cpu_hour_long.toml")
    assert list(cfg.search.num_layers.values) == [3, 4] and cfg.study.n_trials == 2
    for number, layers in enumerate([3, 4]):
        run = run_config_for(cfg, {**cfg.search.fixed(), "num_layers": layers}, number)
        assert (run.time_budget, run.threads, run.num_layers) == (3450, 1, layers)
        assert run.time_budget + 150 <= 3600  # start-up, data and the test evaluation fit in the hour


def test_hour_balance_is_cpu_hour_long_with_the_balance_as_its_only_difference() -> None:
    # benchmarks/hour_balance.toml measures one lever: every other setting is cpu_hour_long's
    long = load_study(STUDIES / "cpu_hour_long.toml")
    lever = load_study(STUDIES.parent / "benchmarks" / "hour_balance.toml")
    assert lever.search.searched() == {"balance": Categorical((0.27, 0.5))}
    assert lever.study.n_trials == 2 and lever.study.sampler == long.study.sampler == "grid"
    assert lever.data == long.data
    assert lever.training.model_copy(update={"balance": long.training.balance}) == long.training
    want = run_config_for(long, {**long.search.fixed(), "num_layers": 3}, 0)  # its 3-layer trial 0
    for balance in (0.27, 0.5):
        got = run_config_for(lever, {**lever.search.fixed(), "balance": balance}, 0)
        assert got == dataclasses.replace(want, balance=balance)
