"""Published GLUE results as data, and where a run stands among them.

The rows in ``resources/leaderboard.json`` are copied from the cited papers and leaderboard snapshots
(test sets, scored by the GLUE server). A run's own numbers are dev-set numbers: every `Entry` carries its
split, so dev and test are never mixed without a label, and a partial run (fewer than nine tasks) is
compared with the published rows on the same tasks only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gluebench.errors import GluebenchError
from gluebench.metrics import glue_score, task_score
from gluebench.runs import RunPaths, list_runs, read_json
from gluebench.tasks import GLUE_TASKS, TASKS, RegistryView, diagnostic_tasks

# The published per-task numbers are rounded to 0.1 (error <= 0.05, so <= 0.05 on their mean) and the published
# score is rounded to 0.1 again (<= 0.05): a score recomputed from the rounded numbers is within 0.1 of it.
ROUNDING_SLACK = 0.1
# the leaderboard's columns: the GLUE score's tasks, then the diagnostic sets (AX)
BOARD_TASKS: RegistryView[str] = RegistryView(lambda: (*GLUE_TASKS, *(t.name for t in diagnostic_tasks())))


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a published result (test) or one of the user's runs (dev)."""

    name: str
    split: str  # "test": scored by the GLUE server; "dev": the run's own dev-set evaluation
    results: dict[str, dict[str, float]]
    group: str = "run"
    published_score: float | None = None
    sources: tuple[str, ...] = ()
    note: str | None = None
    score_discrepancy: str | None = None  # why the published score differs from its own per-task numbers
    run_id: str | None = None
    run_dir: Path | None = None

    @property
    def is_run(self) -> bool:
        return self.run_dir is not None

    @property
    def recomputed(self) -> float | None:
        """The GLUE score from this row's per-task numbers, by `gluebench.metrics.glue_score`."""
        return glue_score(self.results).value

    @property
    def tasks_done(self) -> tuple[str, ...]:
        return tuple(t for t in GLUE_TASKS if t in self.results)

    @property
    def is_partial(self) -> bool:
        return len(self.tasks_done) < len(GLUE_TASKS)

    @property
    def score(self) -> float | None:
        """The score to show: the published one for published rows, our recomputation for runs."""
        return self.published_score if self.published_score is not None else self.recomputed

    @property
    def score_label(self) -> str:
        """The score with what it is: ``80.5 test``, ``61.2 dev``, ``55.0 dev, partial 3/9``."""
        if self.score is None:
            return f"— {self.split}, 0/{len(GLUE_TASKS)} tasks"
        label = f"{self.score:.1f} {self.split}"
        if self.is_partial:
            label += f", partial {len(self.tasks_done)}/{len(GLUE_TASKS)}"
        return label

    def task_score(self, task: str) -> float | None:
        """The task's contribution to the score (mean of its metrics); AX: its R3. None when absent."""
        metrics = self.results.get(task)
        if not metrics:
            return None
        spec = TASKS[task]
        if not all(key in metrics for key in spec.metric_keys):
            return None
        return task_score(spec, metrics)

    def mean_over(self, tasks: tuple[str, ...]) -> float | None:
        """Mean task score over ``tasks`` (for comparing a partial run on the tasks it has)."""
        scores = [s for t in tasks if (s := self.task_score(t)) is not None]
        return None if not scores or len(scores) < len(tasks) else float(np.mean(scores))

    def cell(self, task: str) -> str:
        """The task's metrics as the leaderboard prints them, e.g. ``88.9/84.8`` (MRPC F1/accuracy)."""
        metrics = self.results.get(task)
        if not metrics:
            return "—"
        return "/".join(f"{float(metrics[k]):.1f}" for k in TASKS[task].metric_keys if k in metrics)

    def matches_published(self) -> bool:
        """True when the published score is what our scoring code gives for the published per-task numbers."""
        if self.published_score is None or self.recomputed is None:
            return False
        return abs(self.recomputed - self.published_score) <= ROUNDING_SLACK + 1e-9


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    url: str
    where: str


def _data() -> dict[str, Any]:
    text = resources.files("gluebench").joinpath("resources/leaderboard.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def sources() -> dict[str, Source]:
    return {key: Source(key, **value) for key, value in _data()["sources"].items()}


@cache
def published() -> tuple[Entry, ...]:
    """Every published row shipped with gluebench, in file order."""
    rows = []
    for row in _data()["rows"]:
        rows.append(Entry(
            name=row["name"], split=row["split"], results=row["results"], group=row["group"],
            published_score=row["score"], sources=tuple(row["sources"]), note=row.get("note"),
            score_discrepancy=row.get("score_discrepancy"),
        ))
    return tuple(rows)


def human_baseline() -> Entry:
    return next(e for e in published() if e.group == "human")


def entry_from_run(run_dir: Path) -> Entry:
    """A run as a leaderboard row: per-task dev means over seeds, labeled dev."""
    run_dir = Path(run_dir)
    summary_path = RunPaths(run_dir).summary
    if not summary_path.is_file():
        raise GluebenchError("not a finished gluebench run (no run.json)", path=run_dir)
    summary = read_json(summary_path)
    results = {task: dict(info["mean"]) for task, info in summary.get("tasks", {}).items() if task in TASKS}
    resolved = str(run_dir.resolve())
    run_id = next((e["id"] for e in list_runs() if e["run_dir"] == resolved), None)
    label = f"{summary.get('model', run_dir.name)} ({run_id or run_dir.name})"
    return Entry(name=label, split="dev", results=results, run_id=run_id, run_dir=run_dir)


@dataclass(frozen=True)
class TaskStanding:
    """Where one run stands on one task among the published rows (test) that report it."""

    task: str
    score: float
    rank: int  # 1 + published rows with a strictly higher task score
    of: int  # published rows with this task, plus the run
    human: float | None
    best_published: float | None

    @property
    def beats_human(self) -> bool:
        return self.human is not None and self.score > self.human


@dataclass
class Standing:
    """A run among the published rows: per task, and overall on the tasks it has."""

    entry: Entry
    tasks: dict[str, TaskStanding] = field(default_factory=dict)
    rank: int | None = None
    of: int = 0
    compared_on: tuple[str, ...] = ()  # the tasks the overall rank compares (all nine unless partial)
    human_on_same_tasks: float | None = None

    @property
    def beats_human(self) -> bool:
        value = self.entry.mean_over(self.compared_on) if self.compared_on else None
        return value is not None and self.human_on_same_tasks is not None and value > self.human_on_same_tasks


def standing(entry: Entry, rows: tuple[Entry, ...] | None = None) -> Standing:
    """Rank ``entry`` per task and overall among published rows; a partial entry only on its own tasks."""
    rows = published() if rows is None else rows
    human = human_baseline()
    result = Standing(entry)
    for task in BOARD_TASKS:
        score = entry.task_score(task)
        if score is None:
            continue
        others = [s for r in rows if (s := r.task_score(task)) is not None]
        result.tasks[task] = TaskStanding(
            task=task, score=score, rank=1 + sum(s > score for s in others), of=len(others) + 1,
            human=human.task_score(task), best_published=max(others, default=None),
        )
    compared = entry.tasks_done
    value = entry.mean_over(compared)
    if value is not None:
        others = [s for r in rows if (s := r.mean_over(compared)) is not None]
        result.rank, result.of, result.compared_on = 1 + sum(s > value for s in others), len(others) + 1, compared
        result.human_on_same_tasks = human.mean_over(compared)
    return result


def board(runs: list[Entry]) -> list[tuple[int | None, Entry]]:
    """Published rows by score with their rank; each run inserted above the first published row it beats
    on the run's own tasks, with its rank from `standing` (None for a run with no complete task)."""
    ranked: list[tuple[int | None, Entry]] = list(
        enumerate(sorted(published(), key=lambda e: -(e.score or 0.0)), start=1))
    for run in runs:
        value = run.mean_over(run.tasks_done)
        beaten = (i for i, (_, row) in enumerate(ranked)
                  if not row.is_run and value is not None and (row.mean_over(run.tasks_done) or 0.0) < value)
        ranked.insert(next(beaten, len(ranked)), (standing(run).rank, run))
    return ranked
