"""`gluebench submit`, `validate-submission`, `leaderboard` and `report`: what to do after a run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.leaderboard import BOARD_TASKS, board, entry_from_run, human_baseline, sources, standing
from gluebench.reporting import write_report
from gluebench.runs import resolve_run
from gluebench.submission import SERVER_FILE_NAMES, validate_submission, write_submission
from gluebench.tasks import GLUE_TASKS, TASKS

console = Console()

RunRef = Annotated[str, typer.Argument(help="Run directory or run id (see `gluebench runs`).", show_default=False)]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="GLUE data directory (default: the run's, $GLUE_DIR, cache, ../shared)."),
]


@app.command("submit")
def submit_command(
    run: RunRef,
    output: Annotated[Path, typer.Option("--output", "-o", help="Zip file to write.")] = Path("glue_submission.zip"),
    fill: Annotated[str | None, typer.Option(
        "--fill", help="Fill tasks without a model: 'majority' (train-set majority class; regression: mean score).",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Use this seed's predictions for every task (default: each task's best dev seed).",
        show_default=False)] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the eleven GLUE server files (CoLA.tsv ... AX.tsv) from a run's test predictions, as one zip."""
    result = write_submission(resolve_run(run), output, fill=fill, seed=seed, data_dir=data_dir)
    table = Table(title=f"GLUE submission: {result.path}")
    table.add_column("file")
    table.add_column("predictions from", overflow="fold")
    for name in SERVER_FILE_NAMES:
        style = "yellow" if name in result.filled else ""
        table.add_row(name, result.sources[name], style=style)
    console.print(table)
    if result.filled:
        console.print(f"[yellow]filled without a model ({len(result.filled)} files):[/] "
                      f"{', '.join(result.filled)} — constant predictions, scored by the server as such.")
    problems = validate_submission(result.path, data_dir).problems
    if problems:  # cannot happen unless the run's files are inconsistent; never hand out a bad zip silently
        for problem in problems[:20]:
            console.print(f"[red]{problem}[/]")
        raise typer.Exit(1)
    console.print(f"wrote {result.path} ({result.path.stat().st_size:,} bytes); it passes validate-submission.")


@app.command("validate-submission")
def validate_submission_command(
    submission: Annotated[Path, typer.Argument(help="Submission zip or directory with the eleven TSV files.")],
    data_dir: DataDir = None,
    max_per_file: Annotated[int, typer.Option(
        "--max-per-file", help="Problems listed per file (0: all of them).", min=0)] = 20,
) -> None:
    """Check a GLUE submission (from any tool): files, headers, labels, row counts, index. Exit 1 if invalid."""
    result = validate_submission(submission, data_dir)
    by_file: dict[str, list[str]] = defaultdict(list)
    for problem in result.problems:
        by_file[problem.file].append(str(problem))
    for name, lines in by_file.items():
        shown = lines if max_per_file == 0 else lines[:max_per_file]
        for line in shown:
            console.print(line, markup=False, highlight=False)
        if len(shown) < len(lines):
            console.print(f"{name}: ... {len(lines) - len(shown)} more problems (--max-per-file 0 lists all)")
    unchecked = [name for name, checked in result.index_checked.items() if not checked]
    if unchecked:
        console.print(f"[dim]index not compared with the official test file (not found): {', '.join(unchecked)}[/]")
    if result.ok:
        console.print(f"[green]valid[/]: {submission} has the eleven files the GLUE server expects.")
        return
    console.print(f"[red]invalid[/]: {len(result.problems)} problem(s) in {len(by_file)} file(s).")
    raise typer.Exit(1)


@app.command("leaderboard")
def leaderboard_command(
    runs: Annotated[list[str] | None, typer.Argument(help="Run directories or run ids to place on the board.",
                                                     show_default=False)] = None,
) -> None:
    """Published GLUE results (test) with your runs (dev) ranked among them, per task and overall."""
    entries = [entry_from_run(resolve_run(ref)) for ref in runs or []]
    human = human_baseline()
    table = Table(title="GLUE leaderboard — published rows are test-set results; your runs are dev-set results")
    for column in ("rank", "model", "split", "score", *BOARD_TASKS):
        table.add_column(column, overflow="fold")
    for rank, entry in board(entries):
        cells = []
        for task in BOARD_TASKS:
            text = entry.cell(task)
            score, human_score = entry.task_score(task), human.task_score(task)
            if entry is not human and score is not None and human_score is not None and score > human_score:
                text = f"[bold green]{text} ★[/]"
            cells.append(text)
        style = "bold red" if entry is human else "bold cyan" if entry.is_run else ""
        rank_text = "–" if rank is None else str(rank)
        if entry.is_run and entry.is_partial:
            rank_text += f" (on {len(entry.tasks_done)}/{len(GLUE_TASKS)})"
        table.add_row(rank_text, entry.name, entry.split, entry.score_label, *cells, style=style)
    console.print(table)
    cells_key = ", ".join(f"{spec.name} {'/'.join(spec.metric_keys)}" for spec in TASKS.values()
                          if len(spec.metric_keys) > 1 or not spec.in_glue_score)
    console.print(f"★ = above the human baseline. Cells with two numbers: {cells_key}. Dev and test numbers are "
                  "not the same sets: a dev rank is an estimate, only a server submission gives a test score.")
    for entry in entries:
        where = standing(entry)
        detail = Table(title=f"{entry.name}: per-task standing among published test rows (run numbers are dev)")
        for column in ("task", "task score (dev)", "rank", "best published", "human (test)", ""):
            detail.add_column(column)
        for task, place in where.tasks.items():
            detail.add_row(task, f"{place.score:.1f}", f"{place.rank}/{place.of}",
                           "–" if place.best_published is None else f"{place.best_published:.1f}",
                           "–" if place.human is None else f"{place.human:.1f}",
                           "[bold green]above human ★[/]" if place.beats_human else "")
        if where.rank is not None:
            on = ("all nine tasks" if not entry.is_partial
                  else f"the run's {len(where.compared_on)}/{len(GLUE_TASKS)} tasks ({', '.join(where.compared_on)})")
            detail.add_section()
            detail.add_row("overall", entry.score_label, f"{where.rank}/{where.of}", "",
                           "–" if where.human_on_same_tasks is None else f"{where.human_on_same_tasks:.1f}",
                           "[bold green]above human ★[/]" if where.beats_human else "")
            detail.caption = f"overall rank compares the mean over {on}"
        console.print(detail)
    cited = sorted({key for _, entry in board([]) for key in entry.sources})
    console.print("Sources: " + "; ".join(f"[{key}] {sources()[key].citation}" for key in cited), style="dim",
                  markup=False)


@app.command("report")
def report_command(
    runs: Annotated[list[str], typer.Argument(help="Run directories or run ids.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
) -> None:
    """One self-contained HTML page: results ± std, plots vs the human baseline, curves, confusion, config."""
    report = write_report([resolve_run(ref) for ref in runs], output)
    console.print(f"wrote {report.html} and {len(report.figures)} PNG(s) in {report.figures[0].parent}"
                  if report.figures else f"wrote {report.html}")
