"""PNG plots of a study for `collatz-hpo report` (matplotlib, Agg: no display needed).

Each function takes plain data (Optuna's frozen trials, dicts) and a path, draws one figure
and returns the path. ``matplotlib.figure.Figure`` is used without pyplot: no global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from search.stats import Interval
from search.study.table import Figures

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


def optimization_history(trials: Sequence[FrozenTrial], fig: Figures, path: Path, title: str = "") -> Path:
    """The objective of every COMPLETE trial (with its 95 % interval for an exact match) and the
    best so far. Pruned trials are drawn only where the pruner saw the objective itself (at the value
    they were stopped with); otherwise a note says how many are left out and why."""
    figure, ax = _figure()
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    xs, ys = [t.number for t in done], [float(t.value) for t in done]
    intervals = [fig.value_interval(t) for t in done]
    yerr = _yerr(ys, intervals)
    ax.errorbar(
        xs, ys, yerr=yerr, fmt="o", color="tab:blue", ecolor="tab:blue", capsize=3, label="complete", zorder=3
    )
    best, running = [], None
    for y in ys:
        running = y if running is None else (max(running, y) if fig.maximize else min(running, y))
        best.append(running)
    if xs:
        ax.step(xs, best, where="post", color="tab:green", label="best so far")
    pruned = [(t.number, at) for t in trials if (at := fig.pruned_at(t)) is not None]
    if pruned and fig.signal == fig.metric:
        ax.scatter(
            [n for n, _ in pruned],
            [v for _, (_, v) in pruned],
            marker="x",
            color="tab:orange",
            label="pruned (value when stopped)",
        )
    elif pruned:
        ax.text(
            0.01,
            0.01,
            f"{len(pruned)} pruned trial(s) not shown: the pruner saw {fig.signal}, not {fig.metric}",
            transform=ax.transAxes,
            fontsize="small",
            color="tab:orange",
        )
    ax.set_xlabel("trial")
    _integer_x(ax)
    ax.set_ylabel(fig.metric + (" (bars: 95 % interval)" if yerr is not None else ""))
    ax.set_title(title or "Optimization history")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(figure, path)


def _yerr(ys: Sequence[float], intervals: Sequence[Interval | None]) -> list[list[float]] | None:
    """matplotlib's asymmetric error bars from intervals (None when there are none)."""
    if not intervals or any(i is None for i in intervals):
        return None
    return [
        [y - i.low for y, i in zip(ys, intervals, strict=True) if i is not None],
        [i.high - y for y, i in zip(ys, intervals, strict=True) if i is not None],
    ]


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


def exact_match_by_base(
    points: Sequence[tuple[int, float, Interval | None]], path: Path, title: str = ""
) -> Path:
    """Held-out exact match of every COMPLETE trial (with its 95 % interval bar where the test size
    is known) against its base, with the best per base."""
    fig, ax = _figure()
    bases = sorted({b for b, _, _ in points})
    position = {b: i for i, b in enumerate(bases)}
    for i, (b, v, interval) in enumerate(points):
        jitter = ((i * 0.618) % 1 - 0.5) * 0.3
        err = [[v - interval.low], [interval.high - v]] if interval is not None else None
        ax.errorbar(
            position[b] + jitter, v, yerr=err, fmt="o", color="tab:blue", alpha=0.7, capsize=2, zorder=3
        )
    best = [max(v for bb, v, _ in points if bb == b) for b in bases]
    ax.bar(range(len(bases)), best, color="tab:green", alpha=0.25, label="best per base")
    ax.set_xticks(range(len(bases)), [str(b) for b in bases])
    ax.set_xlabel("base")
    bars = any(interval is not None for _, _, interval in points)
    ax.set_ylabel("held-out exact match" + (" (bars: 95 % interval)" if bars else ""))
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Exact match by base")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def learning_curves(trials: Sequence[FrozenTrial], fig: Figures, path: Path, title: str = "") -> Path:
    """What the pruner saw of each trial (Optuna's intermediate values), un-negated: the signal
    itself, per epoch or per training samples (the study's pruner unit), by final state."""
    figure, ax = _figure()
    labelled: set[TrialState] = set()
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        values = [fig.sign * t.intermediate_values[s] for s in steps]
        style = _STATE_STYLE.get(t.state, {"color": "grey", "linestyle": "-"})
        label = t.state.name.lower() if t.state not in labelled else None
        labelled.add(t.state)
        ax.plot(steps, values, marker=".", alpha=0.8, label=label, **style)
    if fig.unit == "samples":
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter())
        ax.set_xlabel("training samples seen")
    else:
        ax.set_xlabel("epoch")
        _integer_x(ax)
    ax.set_ylabel(fig.signal)
    ax.set_title(title or f"{fig.signal} per {fig.unit.rstrip('s')}")
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(loc="best")
    return _save(figure, path)


def class_curves(
    curves: Mapping[tuple[int, int], Sequence[tuple[int, float]]],
    path: Path,
    title: str = "",
    held_out: Mapping[tuple[int, int], str] | None = None,
) -> Path:
    """Validation exact match of each (k, k′) class over epochs: classes are learned one at a time
    (the report passes the classes the held-out set shows failing, ``held_out``: their figure there)."""
    fig, ax = _figure(8.5, 4.8)
    cmap = _colors(len(curves))
    for color, ((k, kp), points) in zip(cmap, sorted(curves.items()), strict=True):
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        there = (held_out or {}).get((k, kp))
        label = f"k={k}, k′={kp} ({2.0 ** -(k + kp):.1%})" + (f"; held-out {there}" if there else "")
        ax.plot(steps, values, marker=".", color=color, label=label)
    ax.set_xlabel("epoch")
    _integer_x(ax)
    ax.set_ylabel("validation exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "Exact match per (k, k′) class", fontsize="medium")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", title="class (share)")
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)] if n else []
