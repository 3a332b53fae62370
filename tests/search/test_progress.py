"""What `launch` shows: plain lines off a terminal (one per event), a live display on one."""

from __future__ import annotations

import io
import queue
import re
import time
from typing import Any

from search.events import TrialEvent
from search.stats import wilson
from search.study.progress import QueueLog, StudyProgress, relay
from search.study.table import Figures

# ``tiny_study`` (tests/search/conftest.py): studies/tiny.toml launched once through the CLI with
# its output captured (not a terminal).
FinishedStudy = Any
END = re.compile(
    r"^trial (\d+) (COMPLETE|PRUNED|FAIL)\b.* \| (\d+) of (\d+) done: (\d+) complete, (\d+) pruned"
)


def test_launch_off_a_terminal_prints_one_line_per_event_with_counts_and_best(
    tiny_study: FinishedStudy,
) -> None:
    lines = tiny_study.proc.stdout.splitlines()
    study = tiny_study.store.study(tiny_study.name)
    trials = study.trials
    assert not any("\x1b" in line or "\r" in line for line in lines)  # no terminal control codes
    assert not any(re.search(r"epoch \d+/\d+", line) for line in lines)  # per-epoch lines: --verbose
    ends = [END.match(line) for line in lines if END.match(line)]
    assert [int(m[1]) for m in ends] == [t.number for t in trials]  # one end line per trial
    for t in trials:
        assert sum(line.startswith(f"trial {t.number} started: ") for line in lines) == 1
    states = {t.number: t.state.name for t in trials}
    complete = pruned = 0
    for m in ends:
        assert m[2] == states[int(m[1])]
        complete += m[2] == "COMPLETE"
        pruned += m[2] == "PRUNED"
        assert (int(m[3]), int(m[4]), int(m[5]), int(m[6])) == (complete + pruned, 4, complete, pruned)
    last = next(line for line in reversed(lines) if END.match(line))
    assert f"best {study.best_value:.4f} (trial {study.best_trial.number})" in last  # a token accuracy: bare
    assert re.search(r"elapsed \d+:\d\d, left ~0:00$", last), last
    held_out = wilson(study.best_trial.user_attrs["test_exact_match"], 64)
    final = f"best {study.best_value:.4f} (trial {study.best_trial.number}), held-out {held_out}"
    assert next(line for line in reversed(lines) if line.startswith("study 'tiny': ")).endswith(final)


def _progress(**kwargs: Any) -> tuple[StudyProgress, list[str]]:
    out: list[str] = []
    counts = {"complete": 1, "pruned": 0, "fail": 0, "running": 0}
    defaults: dict[str, Any] = {"name": "s", "n_trials": 4, "counts": counts, "maximize": True}
    return StudyProgress(**{**defaults, **kwargs, "out": out.append}), out


def _trial(progress: StudyProgress, number: int, state: str, value: float | None, worker: int | None) -> None:
    progress.event(TrialEvent("start", number, f"trial {number} started: lr=0.1", "lr=0.1"), worker)
    epoch = TrialEvent("epoch", number, f"trial {number} epoch 1/3", epoch=1, epochs=3, metric="m", value=0.5)
    progress.event(epoch, worker)
    progress.event(TrialEvent("end", number, f"trial {number} {state}", value=value, state=state), worker)


def test_counts_best_and_epoch_lines_follow_the_events() -> None:
    progress, out = _progress(best=(0.3, 0))
    _trial(progress, 1, "PRUNED", None, worker=1)
    _trial(progress, 2, "COMPLETE", 0.2, worker=0)  # worse than trial 0: best stays
    _trial(progress, 3, "FAIL", None, worker=0)
    assert out == [
        "[w1] trial 1 started: lr=0.1",
        out[1],
        "[w0] trial 2 started: lr=0.1",
        out[3],
        "[w0] trial 3 started: lr=0.1",
        out[5],
    ]
    assert out[1].startswith("[w1] trial 1 PRUNED | 2 of 4 done: 1 complete, 1 pruned, 0 failed, 0 running")
    assert "| best 0.3000 (trial 0) |" in out[3] and "3 of 4 done: 2 complete" in out[3]
    assert "3 of 4 done: 2 complete, 1 pruned, 1 failed, 0 running" in out[5]  # FAIL does not count

    verbose, lines = _progress(verbose=True, maximize=False, best=(0.3, 0))
    _trial(verbose, 1, "COMPLETE", 0.2, worker=None)  # minimized: 0.2 is better
    assert lines[1] == "trial 1 epoch 1/3"
    assert "best 0.2000 (trial 1)" in lines[2]


def test_time_left_comes_from_this_launch_rate_capped_by_the_timeout() -> None:
    progress, _ = _progress()
    assert progress.left_seconds() is None  # nothing finished in this launch yet
    progress.first_start = time.time() - 30
    progress.counts["complete"] = 2  # one finished in 30 s, two to go: about a minute
    assert 55 < (progress.left_seconds() or 0) <= 61
    capped, _ = _progress(deadline=time.time() + 10)
    capped.first_start = time.time() - 30
    capped.counts["complete"] = 2
    assert 0 < (capped.left_seconds() or 99) <= 10


def test_an_exact_match_objective_is_shown_with_its_interval() -> None:
    """A study whose objective is exact match on 1,000 validation inputs: the best, in the lines and
    the live display, carries its Wilson interval."""
    from rich.console import Console

    fig = Figures("val_exact_match", True, "val_exact_match", 1.0, "epochs", 1000, 2000)
    progress, out = _progress(best=(0.3, 0), objective_text=fig.objective_text)
    _trial(progress, 1, "COMPLETE", 0.617, worker=0)
    assert f"| best {wilson(0.617, 1000)} (trial 1) |" in out[-1]
    console = Console(file=io.StringIO(), force_terminal=True, width=200, record=True)
    console.print(progress.render())
    assert f"best {wilson(0.617, 1000)} (trial 1)" in console.export_text()


def test_worker_process_events_arrive_through_the_queue() -> None:
    progress, out = _progress(workers=2)
    events: queue.Queue[Any] = queue.Queue()
    with relay(events, progress):
        log = QueueLog(events, 1)
        log("data built")
        log.event(TrialEvent("end", 4, "trial 4 COMPLETE value 0.9000", value=0.9, state="COMPLETE"))
    assert out[0] == "[w1] data built"
    assert out[1].startswith("[w1] trial 4 COMPLETE value 0.9000 | 2 of 4 done")
    assert "best 0.9000 (trial 4)" in out[1]


def test_live_display_shows_counts_best_times_and_one_line_per_worker() -> None:
    from rich.console import Console

    progress, _ = _progress(workers=2, best=(0.5, 0))
    progress.event(TrialEvent("start", 7, "trial 7 started", "base=24, lr=0.001"), 1)
    epoch = TrialEvent(
        "epoch", 7, "trial 7 epoch 2/3", epoch=2, epochs=3, metric="val_exact_match", value=0.25
    )
    progress.event(epoch, 1)
    console = Console(file=io.StringIO(), force_terminal=True, width=160, record=True)
    console.print(progress.render())
    text = console.export_text()
    assert "study s" in text and "1/4 trials" in text and "elapsed 0:00" in text and "left ?" in text
    assert "1 complete, 0 pruned, 0 failed, 1 running" in text and "best 0.5000 (trial 0)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if re.match(r"\s*w\d", line)}
    assert rows["w0"].split()[1] == "idle"
    assert "trial 7" in rows["w1"] and "epoch 2/3" in rows["w1"] and "val_exact_match 0.2500" in rows["w1"]
    assert "base=24, lr=0.001" in rows["w1"]
