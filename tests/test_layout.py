"""The house rules a newcomer can rely on, checked on the source (``ast``), not by convention.

1. Imports run one way along the data flow: a module of ``search/`` imports its own package,
   the leaves, and packages of lower rank only (lazy imports inside functions included);
   ``core/`` imports nothing of search, optuna or mlflow; loading an exported model
   (``search/models/loading.py``) needs neither mlflow nor optuna.
2. Sizes a reader can hold: no module over 400 lines, no function over 50 lines (``def`` line to
   last line, methods and nested functions included) in ``core/`` and ``search/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

#: The rank of each part of ``search/`` (a package, or a top-level module). A part may import
#: parts of lower rank; leaves (rank 0) may be imported by any part, each other included.
RANKS: dict[str, int] = {
    # leaves: small modules with no platform dependencies, used everywhere
    "search.keys": 0,  # Optuna user-attr names and their readers: the vocabulary of a trial's record
    "search.errors": 0,  # CollatzHpoError and its exit codes: every layer raises them, the CLI maps them
    "search.locations": 0,  # URIs and paths, password masking: needed by errors and every layer
    "search.retry": 0,  # back-off for flaky servers: used by tracking and study storage alike
    "search.signals": 0,  # SIGTERM/SIGINT handling: a worker and the CLI install the same one
    "search.events": 0,  # the one Log type and TrialEvent: shared by trial and study (no trial -> study)
    "search.stats": 0,  # Wilson intervals and seed spreads: every layer that shows an accuracy uses them
    # the data flow, from what is asked to what is shown
    "search.spec": 1,  # what a run and a study are asked to do: validated before anything runs
    "search.tracking": 2,  # MLflow: records runs of a spec; knows nothing of Optuna trials or studies
    "search.trial": 3,  # one trial: spec -> training run, tracked; knows nothing of the study around it
    "search.study": 4,  # a study: storage, workers and launches running many trials
    "search.models": 5,  # exported models: made from a finished study's trials
    "search.report": 5,  # the study report: reads a finished study
    "search.servers": 5,  # mlflow / optuna-dashboard servers and links to a study's pages
    "search.cli": 6,  # parses flags, calls the API above, prints: nothing imports it
}
#: Modules that belong to another part than their path says.
ALIASES = {
    # the pre-move name of search.models.pyfunc, kept so old exports unpickle: part of models
    "search.pyfunc": "search.models",
}
#: Top-level packages that ``core/`` (pure torch/numpy) must never import.
CORE_FORBIDDEN = ("search", "optuna", "mlflow")
#: Top-level packages that loading an exported model must never import (it runs in serving).
LOADING_FORBIDDEN = ("mlflow", "optuna")
LOADING = "search/models/loading.py"


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, lazy and relative ones included.

    ``name`` is the module's dotted name (default: from its path under the repository).
    ``from pkg import name`` yields ``pkg.name`` when ``pkg`` is a top-level package or ``.``/``..``,
    so that ``from search import spec`` and ``from .. import retry`` name the part they import.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.module and "." in module:
                yield node.lineno, module
            else:
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"


def _part(module: str) -> str:
    """The part of ``search`` that ``module`` belongs to (``search.spec.space`` → ``search.spec``)."""
    part = ".".join(module.split(".")[:2])
    return ALIASES.get(part, part)


def _top(module: str) -> str:
    return module.split(".")[0]


def test_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "space.py"
    source.write_text(
        "import search.errors\n"
        "from search import keys\n"
        "from . import runconfig\n"
        "from .. import retry\n"
        "from ..tracking.runs import Tracker\n"
        "def f():\n"
        "    from search.study import launch\n"
        "    class C:\n"
        "        def g(self):\n"
        "            import optuna\n",
        encoding="utf-8",
    )
    assert sorted(_imports(source, "search.spec.space")) == [
        (1, "search.errors"),
        (2, "search.keys"),
        (3, "search.spec.runconfig"),
        (4, "search.retry"),
        (5, "search.tracking.runs"),
        (7, "search.study"),
        (10, "optuna"),
    ]
    assert _part("search.pyfunc") == "search.models"
    assert _part("search.study.launch") == "search.study"


def test_search_imports_run_down_the_ranks() -> None:
    problems: list[str] = []
    for path in _sources("search"):
        where = _rel(path)
        own = _part(_module_name(path))
        if own == "search":  # search/__init__.py: importing it must not load the platform
            problems += [
                f"{where}:{line} imports {m}: the package's __init__ imports nothing of search"
                for line, m in _imports(path)
                if _top(m) == "search"
            ]
            continue
        if own not in RANKS:
            problems.append(f"{where}: part {own} has no rank; add it to RANKS in tests/test_layout.py")
            continue
        for line, module in _imports(path):
            if _top(module) != "search":
                continue
            target = _part(module)
            if target == own:
                continue
            if target not in RANKS:
                problems.append(f"{where}:{line} imports {module}: part {target} has no rank in RANKS")
            elif RANKS[target] == 0:
                continue
            elif RANKS[target] > RANKS[own]:
                problems.append(
                    f"{where}:{line} imports {module}: {target} (rank {RANKS[target]}) is above "
                    f"{own} (rank {RANKS[own]})"
                )
            elif RANKS[target] == RANKS[own]:
                problems.append(
                    f"{where}:{line} imports {module}: {target} and {own} share rank {RANKS[own]} "
                    "and must not import each other"
                )
    assert not problems, "imports against the ranks:\n" + "\n".join(problems)


def test_core_imports_no_platform() -> None:
    problems = [
        f"{_rel(path)}:{line} imports {module}: core is pure torch/numpy"
        for path in _sources("core")
        for line, module in _imports(path)
        if _top(module) in CORE_FORBIDDEN
    ]
    assert not problems, "\n".join(problems)


def test_model_loading_needs_no_tracking_or_optuna() -> None:
    path = ROOT / LOADING
    problems = [
        f"{LOADING}:{line} imports {module}: loading an export must not need it"
        for line, module in _imports(path)
        if _top(module) in LOADING_FORBIDDEN
    ]
    assert not problems, "\n".join(problems)


def test_no_module_too_long() -> None:
    problems = []
    for path in _sources("core", "search"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{_rel(path)}: {lines} lines")
    assert not problems, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(problems)


def test_no_function_too_long() -> None:
    problems = []
    for path in _sources("core", "search"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    problems.append(f"{_rel(path)}:{node.lineno} {node.name} {lines} lines")
    assert not problems, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(problems)
