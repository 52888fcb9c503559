"""`gluebench tasks`, `show` and `score`: explore the benchmark and score a results file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.data.locate import find_data_dir
from gluebench.data.read import read_split
from gluebench.errors import GluebenchError
from gluebench.metrics import glue_score, task_score
from gluebench.runs import read_json
from gluebench.tasks import TASKS, get_task

console = Console()

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="GLUE data directory (default: $GLUE_DIR, cache, ../shared).")
]


def _size(task_name: str, split: str) -> str:
    spec = TASKS[task_name]
    names = [s.name for s in spec.splits if s.name == split or s.name.startswith(f"{split}_")]
    return "/".join(f"{spec.split(n).rows:,}" for n in names) or "–"


@app.command("tasks")
def tasks_command() -> None:
    """The task summary table: type, sizes, metrics, labels and domain of every GLUE task."""
    table = Table(title="GLUE tasks (sizes from the official files)")
    for column in ("task", "type", "train", "dev", "test", "metrics", "labels", "domain"):
        table.add_column(column, overflow="fold")
    for spec in TASKS.values():
        labels = "regression 0–5" if spec.is_regression else ", ".join(spec.labels or ())
        table.add_row(
            spec.name, "pair" if spec.is_pair else "single", _size(spec.name, "train"),
            _size(spec.name, "dev") if spec.predicted_by is None else f"{spec.split('full').rows:,} (labeled)",
            _size(spec.name, "test"), "/".join(spec.metrics), labels, spec.domain,
        )
    console.print(table)
    for spec in TASKS.values():
        if spec.predicted_by is not None:
            counts = "counts" if spec.in_glue_score else "does not count"
            console.print(f"{spec.name} is predicted with the {spec.predicted_by} model and {counts} "
                          "in the GLUE score.")


@app.command("show")
def show_command(
    task: Annotated[str, typer.Argument(help="Task name, e.g. CoLA, sst2, MNLI.")],
    split: Annotated[str, typer.Option("--split", help="Split to show (train, dev, test, dev_matched...).")] = "dev",
    n: Annotated[int, typer.Option("-n", help="How many examples.", min=1)] = 5,
    data_dir: DataDir = None,
) -> None:
    """Print real examples of a task with their labels."""
    spec = get_task(task)
    if split == "dev" and "dev" not in spec.dev_splits:
        split = next(iter(spec.dev_splits))
    directory, _ = find_data_dir(data_dir)
    if directory is None:
        raise GluebenchError("no GLUE data found: run `gluebench download` or pass --data-dir")
    examples = read_split(spec, split, directory)
    console.print(f"[bold]{spec.name}[/] {split}: {len(examples):,} examples — {spec.description}")
    table = Table()
    table.add_column("index")
    table.add_column("sentence 1" if spec.is_pair else "sentence", overflow="fold")
    if spec.is_pair:
        table.add_column("sentence 2", overflow="fold")
    table.add_column("label")
    for example in examples[:n]:
        texts = [example.text_a, example.text_b or ""] if spec.is_pair else [example.text_a]
        label = "–" if example.label is None else str(example.label)
        table.add_row(str(example.index), *texts, label)
    console.print(table)


def score_table(results: dict[str, dict[str, float]], title: str) -> Table:
    """Per-task metrics and the GLUE score (labeled partial when tasks are missing)."""
    score = glue_score(results)
    table = Table(title=title)
    for column in ("task", "metrics", "task score"):
        table.add_column(column)
    for name, spec in TASKS.items():
        if name not in results:
            continue
        metrics = ", ".join(f"{k} {float(results[name][k]):.1f}" for k in spec.metric_keys if k in results[name])
        counted = f"{task_score(spec, results[name]):.1f}" if spec.in_glue_score else "(not in score)"
        table.add_row(name, metrics, counted)
    table.add_section()
    table.add_row("GLUE score", score.label, "", style="bold")
    if score.missing:
        table.add_row("missing", ", ".join(score.missing), "")
    return table


@app.command("score")
def score_command(
    results: Annotated[Path, typer.Argument(help="Results JSON: {task: {metric: value}}, values x100.")],
) -> None:
    """Print the per-task table and the GLUE score of a results file (or a run's metrics.json)."""
    if results.is_dir():
        results = results / "metrics.json"
    data = read_json(results)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise GluebenchError("expected a JSON object {task: {metric: value}}", path=results)
    for name, metrics in data.items():
        spec = get_task(name)
        for key, value in metrics.items():
            if key not in spec.metric_keys:
                raise GluebenchError(f"{spec.name} has no metric {key!r} (expected {', '.join(spec.metric_keys)})",
                                     path=results)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise GluebenchError(f"{spec.name} {key} must be a number, got {value!r}", path=results)
    console.print(score_table({get_task(k).name: v for k, v in data.items()}, f"GLUE results: {results}"))
