"""From the replay's incumbent curves to the figures and tables of docs/strategies.md.

Every replay's curve is a step function: the held-out test exact match of the incumbent (the
completed trial best by validation) at each simulated second, 0 before the first trial completes.
Regret is the table's best (the best mean test exact match of a configuration) minus that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import wilcoxon  # noqa: E402
from strategies.grid import AXES  # noqa: E402
from strategies.replay import DEFAULT, STRATEGIES, RunTable  # noqa: E402

from search.spec.study_file import StudyConfig  # noqa: E402

TARGETS = (0.95, 0.99)  # of the table's best test exact match
RANDOM = STRATEGIES[0].name


def step_values(curve: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """The incumbent's test exact match at each of ``times`` (0 before the first completed trial)."""
    if curve.empty:
        return np.zeros(len(times))
    at = np.searchsorted(curve["time"].to_numpy(), times, side="right") - 1
    values = curve["test"].to_numpy()[np.clip(at, 0, None)]
    return np.where(at >= 0, values, 0.0)


def curves_on(replays: pd.DataFrame, times: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """(strategy, workers) → array seeds x times of incumbent test exact match, seeds in order."""
    out: dict[tuple[str, int], np.ndarray] = {}
    for (strategy, workers), group in replays.groupby(["strategy", "workers"], sort=False):
        rows = [
            step_values(g[g["trial"] >= 0].sort_values("time"), times)
            for _, g in group.groupby("seed", sort=True)
        ]
        out[(strategy, int(workers))] = np.vstack(rows)
    return out


def hit_times(curve: pd.DataFrame, target: float) -> float:
    """The first simulated second the incumbent reaches ``target`` (inf: never within the horizon)."""
    hit = curve[(curve["trial"] >= 0) & (curve["test"] >= target - 1e-12)]
    return float(hit["time"].min()) if len(hit) else math.inf


def fmt_time(seconds: float) -> str:
    return "never" if not math.isfinite(seconds) else f"{seconds:.0f} s"


def time_to_target(replays: pd.DataFrame, target: float) -> dict[tuple[str, int], tuple[float, int, int]]:
    """(strategy, workers) → (median over seeds of the time to reach ``target``, inf if half or more
    never do; how many seeds reached it; how many seeds)."""
    out = {}
    for (strategy, workers), group in replays.groupby(["strategy", "workers"], sort=False):
        hits = [hit_times(g, target) for _, g in group.groupby("seed", sort=True)]
        out[(strategy, int(workers))] = (float(np.median(hits)), sum(map(math.isfinite, hits)), len(hits))
    return out


def regrets(replays: pd.DataFrame, best: float, budget: float) -> dict[tuple[str, int], np.ndarray]:
    """(strategy, workers) → regret of each seed at ``budget`` simulated seconds, seeds in order."""
    return {key: best - values[:, 0] for key, values in curves_on(replays, np.array([budget])).items()}


def paired_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (1.0 when they never differ)."""
    if np.allclose(x, y):
        return 1.0
    return float(wilcoxon(x, y).pvalue)


def headline(replays: pd.DataFrame, best: float, budgets: Sequence[float]) -> str:
    """The markdown tables: per worker count, each strategy's times to target and regrets."""
    lines = []
    strategies = [s.name for s in STRATEGIES if s.name in set(replays["strategy"])]
    reach = {t: time_to_target(replays, t * best) for t in TARGETS}
    regret = {b: regrets(replays, best, b) for b in budgets}
    seeds = replays["seed"].nunique()
    for workers in sorted(replays["workers"].unique()):
        head = ["strategy", *(f"time to {t:.0%} (× random, seeds that reach it)" for t in TARGETS)]
        head += [f"regret at {b:.0f} s (p)" for b in budgets]
        lines += [f"**{workers} worker{'s' if workers > 1 else ''}** ({seeds} seeds each)", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name in strategies:
            key = (name, int(workers))
            cells = [f"**{name}**" if name == DEFAULT.name else name]
            for t in TARGETS:
                (mine, hit, seeds_n), rand = reach[t][key], reach[t][(RANDOM, int(workers))][0]
                ratio = f"{mine / rand:.2f}×, " if math.isfinite(mine) and math.isfinite(rand) else ""
                cells.append(f"{fmt_time(mine)} ({ratio}{hit}/{seeds_n})")
            for b in budgets:
                ours = regret[b][(DEFAULT.name, int(workers))]
                mine_r = regret[b][key]
                p = "" if name == DEFAULT.name else f" (p={paired_p(mine_r, ours):.2g})"
                cells.append(f"{round(float(np.median(mine_r)), 3) + 0.0:.3f}{p}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(
    replays: pd.DataFrame,
    best: float,
    horizon: float,
    path: Path,
    real: dict[str, pd.DataFrame] | None = None,
    workers_list: Sequence[int] | None = None,
) -> None:
    """Median and inter-quartile band of the incumbent's test exact match against simulated time, one
    panel per worker count; ``real`` adds the curves of real studies (validation) to the N=2 panel."""
    times = np.linspace(0, horizon, 361)
    curves = curves_on(replays, times)
    workers_list = workers_list or sorted(int(w) for w in replays["workers"].unique())
    fig, axes = plt.subplots(1, len(workers_list), figsize=(5.2 * len(workers_list), 4.4), sharey=True)
    axes = np.atleast_1d(axes)
    colors = plt.get_cmap("tab10").colors
    for ax, workers in zip(axes, workers_list, strict=True):
        for i, s in enumerate(STRATEGIES):
            values = curves.get((s.name, workers))
            if values is None:
                continue
            lo, mid, hi = np.percentile(values, [25, 50, 75], axis=0)
            width = 2.6 if s == DEFAULT else 1.3
            ax.plot(times, mid, color=colors[i], lw=width, label=s.name)
            ax.fill_between(times, lo, hi, color=colors[i], alpha=0.12 if s != DEFAULT else 0.25, lw=0)
        if real and workers == 2:
            for j, (label, curve) in enumerate(real.items()):
                ax.step(
                    curve["time"],
                    curve["test"],
                    where="post",
                    color="k",
                    ls=("--", ":", "-.")[j % 3],
                    lw=1.8,
                    label=label,
                )
        ax.axhline(best, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{workers} worker{'s' if workers > 1 else ''}")
        ax.set_xlabel("simulated seconds (CPU seconds of one core per worker)")
        ax.set_xlim(0, horizon)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out exact match of the incumbent (by validation)")
    axes[0].set_ylim(best * 0.7, min(1.0, best * 1.04))  # the race is near the top; 0 hides it
    axes[-1].legend(loc="lower right", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def clock_ratio(trials: pd.DataFrame, table: RunTable, cfg: StudyConfig) -> float:
    """How much longer the real study's finished trials took (wall seconds, start to end) than the
    table says the same configurations cost for the same epochs (its clock, e.g. CPU seconds of a
    dedicated core): the factor between the real study's time axis and the replay's."""
    real = cost = 0.0
    for t in trials[trials["end"].notna()].itertuples():
        _, run = table.lookup(cfg, {name: getattr(t, name) for name in AXES}, random.Random(0))
        epochs = int(t.epochs)
        real += t.end - t.start
        cost += run.setup + sum(run.costs[:epochs]) + (run.tail if t.state == "COMPLETE" else 0.0)
    return real / cost if cost else math.nan


def plot_validation(
    replays: pd.DataFrame, best: float, real: pd.DataFrame, path: Path, workers: int = 2, ratio: float = 1.0
) -> None:
    """The default strategy's replay band (2 workers) and the real study's incumbent curve, on one plot;
    with ``ratio`` (:func:`clock_ratio`) != 1, the real curve again with its time divided by it.

    One real study is one draw: it should lie inside the 5-95 % band nearly always, inside the
    inter-quartile band about half of the time.
    """
    horizon = max(300.0, float(real["time"].max()) * 1.1 if len(real) else 0.0)
    times = np.linspace(0, horizon, 301)
    values = curves_on(replays[replays["strategy"] == DEFAULT.name], times)[(DEFAULT.name, workers)]
    p5, lo, mid, hi, p95 = np.percentile(values, [5, 25, 50, 75, 95], axis=0)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.fill_between(times, p5, p95, color="C0", alpha=0.12, lw=0, label="replay 5-95 %")
    ax.fill_between(times, lo, hi, color="C0", alpha=0.3, lw=0, label="replay inter-quartile")
    ax.plot(times, mid, color="C0", lw=2, label=f"replay median ({values.shape[0]} seeds)")
    t = np.r_[0.0, real["time"].to_numpy(), horizon]
    v = np.r_[0.0, real["test"].to_numpy(), real["test"].to_numpy()[-1] if len(real) else 0.0]
    ax.step(t, v, where="post", color="k", lw=2, label="real study (wall seconds)")
    if math.isfinite(ratio) and abs(ratio - 1.0) > 0.01:
        label = f"real study, wall ÷ {ratio:.2f} (the table's clock)"
        ax.step(t / ratio, v, where="post", color="k", lw=1.4, ls="--", label=label)
    ax.axhline(best, color="grey", lw=0.8, ls=":")
    ax.set(xlim=(0, horizon), ylim=(0, min(1.0, best * 1.08)), xlabel="seconds since the first trial started")
    ax.set_ylabel("held-out exact match of the incumbent")
    ax.set_title(f"{DEFAULT.name}, {workers} workers: replay vs real study")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def trial_counts(summary: pd.DataFrame) -> str:
    """A markdown table: trials per replay (mean), the share pruned, distinct configurations tried."""
    lines = [
        "| strategy | workers | trials | pruned | distinct configurations | replay CPU s |",
        "|---|---|---|---|---|---|",
    ]
    order = {s.name: i for i, s in enumerate(STRATEGIES)}
    rows = summary.groupby(["strategy", "workers"]).mean(numeric_only=True).reset_index()
    rows = rows.sort_values(
        ["workers", "strategy"], key=lambda c: c.map(order) if c.name == "strategy" else c
    )
    for r in rows.itertuples():
        lines.append(
            f"| {r.strategy} | {r.workers} | {r.trials:.0f} | {r.pruned / max(r.trials, 1):.0%} | "
            f"{r.distinct_configs:.0f} | {r.replay_cpu_seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"
