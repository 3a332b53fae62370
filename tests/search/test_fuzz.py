"""Fuzzed inputs: study files built from the real schema's keys with wrong types and values, and
`predict` inputs, never end in a traceback: a one-line error with exit code 2, or a study that
opens (the real CLI, in this process, on a real embedded store) and a prediction table.

A fixed number of examples, derandomized, so the suite's time stays put; run with
``--hypothesis-seed`` / more examples locally to search further.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from cli_helpers import run_main
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from search.spec.space import suggest
from search.spec.study_file import PARAMETERS, StudyConfig, load_study
from search.study.samplers import make_sampler
from search.trial.config import run_config_for

STUDY_EXAMPLES = 40
PREDICT_EXAMPLES = 40

BASE: dict[str, Any] = {
    "study": {"name": "fz", "metric": "val_accuracy", "n_trials": 2, "pruner": {"type": "none"}},
    "data": {"range": [1, 4096], "train_size": 100, "val_size": 20, "test_size": 20},
    "training": {"epochs": 1, "batch_size": 32, "threads": 1},
    "search": {"base": {"choices": [16, 24]}, "d_model": 16, "nhead": 2, "num_layers": 1, "lr": 1e-3},
}


def _schema_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the study-file schema (sections recursed; ``[search]`` from PARAMETERS)."""
    paths = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        path = (*prefix, name)
        paths.append(path)
        ann = field.annotation
        inner = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)), None)
        if inner is not None and issubclass(inner, BaseModel) and name != "search":
            paths += _schema_paths(inner, path)
    paths += [("search", p) for p in PARAMETERS if ("search", p) not in paths]
    paths += [("search", p, k) for p in ("lr", "num_layers") for k in ("low", "high", "step", "log")]
    paths += [("search", "d_model", "choices"), ("search", "nhead", "choices")]
    return paths


PATHS = _schema_paths(StudyConfig)

# Values of every TOML type, the troublesome ones first: huge, tiny, negative, non-finite,
# names the file system or MLflow cannot take (long, dots, slashes), dates, nested tables.
scalars = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 2**31, 2**63 - 1, -(2**63), 10**12, 2**62]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0.0, -0.0, 1e-320, 0.5, 1.5, 1e300, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", ".", "..", "a/b", "-x", " ", "x" * 300, "é", "tpe", "none", "val_loss", "samples"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    st.booleans(),
    st.dates(),
    st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["choices", "low", "high", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)
edits = st.lists(
    st.tuples(st.sampled_from(PATHS), st.one_of(values, st.just(None))),  # None: delete the key
    min_size=1,
    max_size=3,
)


def _apply(edits: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    tree = json.loads(json.dumps(BASE))
    for path, value in edits:
        node = tree
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value is None:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return tree


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):  # a TOML basic string: JSON's escapes are TOML's (DEL must be escaped)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def to_toml(tree: dict[str, Any], prefix: str = "") -> str:
    """A TOML document of ``tree``: scalars first, then one [table] per nested dict."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in tree.items() if not isinstance(v, dict)]
    for k, v in tree.items():
        if isinstance(v, dict):
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            lines += ["", f"[{name}]", to_toml(v, name)]
    return "\n".join(lines)


def _outcome(code: int, err: str) -> None:
    """Exit 0 (the study opened) or a single ``collatz-hpo: error:`` line with exit 2."""
    assert "Traceback" not in err, err
    if code != 0:
        assert code == 2, err
        assert err.startswith("collatz-hpo: error: ") and len(err.strip().splitlines()) == 1, err


@settings(
    max_examples=STUDY_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=edits)
# gaps the fuzzer found, each once a traceback after mlruns/optuna.db was written (or worse):
@example(edits=[(("study", "name"), "x" * 300)])  # lock file name over 255 bytes
@example(edits=[(("study", "name"), "..")])  # artifacts written into mlruns/ itself
@example(edits=[(("study", "heartbeat_interval"), 2**63 - 1)])  # OverflowError in the beat thread
def test_fuzzed_study_files_open_or_fail_in_one_line(
    edits: list[tuple[tuple[str, ...], Any]], store_root: Path, capsys: Any
) -> None:
    """launch with a timeout that has already passed: everything a study does before its first
    trial (storage, lock files, MLflow experiment and parent run, grid, warm start) but no training.
    One embedded store for all examples (a fresh MLflow database costs seconds); each example's
    study gets a name of its own unless the example set one."""
    tree = _apply(edits)
    if isinstance(tree.get("study"), dict) and tree["study"].get("name") == "fz":
        tree["study"]["name"] = f"fz{next(_NUMBERS)}"
    (store_root / "study.toml").write_text(to_toml(tree), encoding="utf-8")
    code, _, err = run_main(["launch", "study.toml", "--timeout", "1e-9"], store_root, capsys)
    _outcome(code, err)
    if code == 0:  # a valid study: its trials must get as far as training
        _first_trials_can_start(load_study(store_root / "study.toml"))


def _first_trials_can_start(cfg: StudyConfig) -> None:
    """Sample two trials as a worker would (in memory) and check the RunConfig each would train."""
    study = optuna.create_study(direction=cfg.study.direction, sampler=make_sampler(cfg, 0))
    for number in range(2):
        trial = study.ask()
        run_config_for(cfg, suggest(trial, cfg.search), number).validate()
        study.tell(trial, 0.5)


_NUMBERS = itertools.count()


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


inputs = st.one_of(
    st.sampled_from(["27", "+27", "-27", "0", "28", "2_7", " 27 ", "0x1b", "1e3", "٢٧", "²", "9" * 5000]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=12).filter(lambda t: t.strip() and not t.strip().startswith("-")),
)


@settings(
    max_examples=PREDICT_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.lists(inputs, min_size=1, max_size=3))
@example(values=["9" * 5000])  # past Python's int-from-text limit: was a ValueError traceback
def test_fuzzed_predict_inputs_answer_or_fail_in_one_line(
    values: list[str], exported_tiny: Any, capsys: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    code, out, err = run_main(["predict", str(exported_tiny.export_dir), *values], Path.cwd(), capsys)
    assert "Traceback" not in err, err
    if code == 0:
        assert f"/{len(values)} right" in out
    else:
        assert code == 2, err
        assert err.startswith("collatz-hpo: error: predict: ") and len(err.strip().splitlines()) == 1, err
