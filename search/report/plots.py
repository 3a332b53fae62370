"""PNG plots of a study for `collatz-hpo report` (matplotlib, Agg: no display needed).

Each function takes plain data (Optuna's frozen trials, dicts) and a path, draws one figure
and returns the path. ``matplotlib.figure.Figure`` is used without pyplot: no global state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "class_curves",
    "exact_match_by_base",
    "learning_curves",
    "optimization_history",
    "param_importances",
]

_STATE_STYLE = {
    TrialState.COMPLETE: {"color": "tab:blue", "linestyle": "-"},
    TrialState.PRUNED: {"color": "tab:orange", "linestyle": "--"},
    TrialState.FAIL: {"color": "tab:red", "linestyle": ":"},
}


def _figure(width: float = 7.0, height: float = 4.2) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _integer_x(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def optimization_history(
    trials: Sequence[FrozenTrial], metric: str, maximize: bool, path: Path, title: str = ""
) -> Path:
    """Objective value per trial (COMPLETE), the best so far, and where pruned trials stopped."""
    fig, ax = _figure()
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    xs = [t.number for t in done]
    ys = [t.value for t in done]
    ax.scatter(xs, ys, color="tab:blue", label="complete", zorder=3)
    best, running = [], None
    for y in ys:
        running = y if running is None else (max(running, y) if maximize else min(running, y))
        best.append(running)
    if xs:
        ax.step(xs, best, where="post", color="tab:green", label="best so far")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="tab:orange", label="pruned (last)")
    ax.set_xlabel("trial")
    _integer_x(ax)
    ax.set_ylabel(metric)
    ax.set_title(title or "Optimization history")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def param_importances(importances: Mapping[str, float], path: Path, title: str = "") -> Path:
    """Horizontal bars, most important on top (fANOVA importances sum to 1)."""
    fig, ax = _figure(height=max(2.5, 0.5 * len(importances) + 1.2))
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    ax.barh(names, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center")
    ax.set_xlabel("importance")
    ax.set_xlim(0, max(values + [0.0]) * 1.2 or 1.0)
    ax.set_title(title or "Parameter importances")
    return _save(fig, path)


def exact_match_by_base(points: Sequence[tuple[int, float]], path: Path, title: str = "") -> Path:
    """Test exact match of every COMPLETE trial against its base, with the best per base."""
    fig, ax = _figure()
    bases = sorted({b for b, _ in points})
    position = {b: i for i, b in enumerate(bases)}
    for i, (b, v) in enumerate(points):
        jitter = ((i * 0.618) % 1 - 0.5) * 0.3
        ax.scatter(position[b] + jitter, v, color="tab:blue", alpha=0.7, zorder=3)
    best = [max(v for bb, v in points if bb == b) for b in bases]
    ax.bar(range(len(bases)), best, color="tab:green", alpha=0.25, label="best per base")
    ax.set_xticks(range(len(bases)), [str(b) for b in bases])
    ax.set_xlabel("base")
    ax.set_ylabel("test exact match")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Exact match by base")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def learning_curves(trials: Sequence[FrozenTrial], metric: str, path: Path, title: str = "") -> Path:
    """The value each trial reported per epoch (Optuna's intermediate values), by final state."""
    fig, ax = _figure()
    labelled: set[TrialState] = set()
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        style = _STATE_STYLE.get(t.state, {"color": "grey", "linestyle": "-"})
        label = t.state.name.lower() if t.state not in labelled else None
        labelled.add(t.state)
        ax.plot(steps, values, marker=".", alpha=0.8, label=label, **style)
    ax.set_xlabel("epoch")
    _integer_x(ax)
    ax.set_ylabel(metric)
    ax.set_title(title or "Learning curves of all trials")
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(loc="best")
    return _save(fig, path)


def class_curves(
    curves: Mapping[tuple[int, int], Sequence[tuple[int, float]]], path: Path, title: str = ""
) -> Path:
    """Validation exact match of each (k, k′) class over epochs: classes are learned one at a time."""
    fig, ax = _figure(8.0, 4.8)
    cmap = _colors(len(curves))
    for color, ((k, kp), points) in zip(cmap, sorted(curves.items()), strict=True):
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        share = 2.0 ** -(k + kp)
        ax.plot(steps, values, marker=".", color=color, label=f"k={k}, k′={kp} ({share:.1%})")
    ax.set_xlabel("epoch")
    _integer_x(ax)
    ax.set_ylabel("validation exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Exact match per (k, k′) class")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", title="class (share)")
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)] if n else []


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
