"""`gluebench run` and `gluebench runs`: train and evaluate a model, list past runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.cli.options import given, with_options
from gluebench.cli.tasks import score_table
from gluebench.config import COMMAND_LINE, EVALUATE_ONLY, OPTION_NAMES, RunConfig, config_from_mapping, load_config
from gluebench.runs import list_runs

console = Console()


@app.command("run")
@with_options(name for name in OPTION_NAMES if name not in EVALUATE_ONLY)
def run_command(
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="YAML file with the same keys as the options below; options given here win.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir.")] = False,
    **options: Any,
) -> None:
    """Train one model per task (and seed) on every task whose data is present; print dev metrics."""
    overrides = given(options)
    config: RunConfig = (load_config(config_file, overrides) if config_file
                         else config_from_mapping(overrides, COMMAND_LINE))
    from gluebench.runner import run  # imported here: torch is slow to import for every command

    try:
        summary = run(config, resume=resume, report=console.print)
    except KeyboardInterrupt:
        where = config.output_dir or "<run dir>"
        console.print(f"[red]interrupted.[/] Finished epochs are checkpointed; continue with:\n"
                      f"  gluebench run --resume --output-dir {where}")
        raise typer.Exit(130) from None
    console.print(score_table(summary.metrics, f"{summary.model} — dev results ({summary.run_dir})"))
    for task, info in summary.tasks.items():
        if len(info["seeds"]) > 1:
            spread = ", ".join(f"{k} {info['mean'][k]:.1f} ± {info['std'][k]:.1f}" for k in info["mean"])
            console.print(f"  {task} over seeds {info['seeds']}: {spread}")
    for task, why in summary.skipped.items():
        console.print(f"  [yellow]skipped {task}[/]: {why}")
    console.print(f"run id {summary.run_id}: {summary.run_dir}")


@app.command("runs")
def runs_command() -> None:
    """List past runs: id, model, tasks, seeds, score and date."""
    table = Table(title="gluebench runs")
    for column in ("id", "model", "tasks", "seeds", "score", "date", "directory"):
        table.add_column(column, overflow="fold")
    for entry in list_runs():
        table.add_row(entry["id"], entry["model"], ",".join(entry["tasks"]),
                      ",".join(map(str, entry["seeds"])), entry.get("score_label", ""), entry["date"],
                      entry["run_dir"])
    console.print(table)
