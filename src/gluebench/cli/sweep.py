"""`gluebench sweep`: a hyperparameter grid per task, best setting on dev, every trial recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.config import RunConfig, config_from_mapping, load_config
from gluebench.errors import ConfigError
from gluebench.sweep import BERT_GRID, SweepResult, load_grid, parse_grid, sweep
from gluebench.tasks import TASKS

console = Console()


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


def _table(result: SweepResult) -> Table:
    tasks = sorted({task for trial in result.trials for task in trial.metrics})
    table = Table(title=f"sweep: {len(result.trials)} trials ({result.root})")
    table.add_column("trial", overflow="fold")
    for task in tasks:
        table.add_column(f"{task}\n{TASKS[task].main_metric}", justify="right")
    for trial in result.trials:
        cells = []
        for task in tasks:
            value = trial.metrics.get(task, {}).get(TASKS[task].main_metric)
            best = result.best.get(task, {}).get("trial") == trial.name
            cells.append("–" if value is None else f"[bold green]{value:.2f}[/]" if best else f"{value:.2f}")
        table.add_row(trial.name, *cells)
    return table


@app.command("sweep")
def sweep_command(
    model: Annotated[str | None, _opt("Model: minilm, hf:<id|path>, glove-cbow, ...", "--model", "-m")] = None,
    tasks: Annotated[str | None, _opt("Comma-separated tasks, or 'all' (default).", "--tasks", "-t")] = None,
    seeds: Annotated[str | None, _opt("Seeds per trial, e.g. 1,2,3 (trials compare means).", "--seeds")] = None,
    grid: Annotated[str | None, _opt("Grid as KEY=V1,V2;KEY=... (default: the BERT paper's lr x batch x "
                                     "epochs).", "--grid")] = None,
    grid_file: Annotated[Path | None, _opt("YAML file mapping run options to lists of values.",
                                           "--grid-file")] = None,
    config_file: Annotated[Path | None, _opt("YAML with the fixed run options (as for gluebench run).",
                                             "--config")] = None,
    data_dir: Annotated[str | None, _opt("GLUE data directory.", "--data-dir")] = None,
    output_dir: Annotated[Path | None, _opt("Sweep directory (default runs/<date-time>-sweep-<model>).",
                                            "--output-dir", "-o")] = None,
    max_train_examples: Annotated[int | None, _opt("Train every trial on a fixed random slice of this size.",
                                                   "--max-train-examples")] = None,
    max_length: Annotated[int | None, _opt("Max tokens per example.", "--max-length")] = None,
    mixed_precision: Annotated[str | None, _opt("no, fp16 or bf16 (GPU).", "--mixed-precision")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --output-dir.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Train one run per grid point and report the best setting per task on dev."""
    if grid and grid_file:
        raise ConfigError("--grid and --grid-file: give one of them")
    given = {key: value for key, value in {
        "model": model, "tasks": tasks, "seeds": seeds, "data_dir": data_dir, "max_train_examples": max_train_examples,
        "max_length": max_length, "mixed_precision": mixed_precision}.items() if value is not None}
    if no_progress:
        given["progress"] = False
    base: RunConfig = load_config(config_file, given) if config_file else config_from_mapping(given, "option")
    chosen = parse_grid(grid) if grid else load_grid(grid_file) if grid_file else BERT_GRID
    try:
        result = sweep(base, chosen, output_dir=output_dir, resume=resume, report=console.print)
    except KeyboardInterrupt:
        where = output_dir or "<sweep dir>"
        console.print(f"[red]interrupted.[/] Finished trials are kept; continue with:\n"
                      f"  gluebench sweep --resume --output-dir {where}")
        raise typer.Exit(130) from None
    console.print(_table(result))
    for task, info in result.best.items():
        settings = ", ".join(f"{k}={v}" for k, v in info["params"].items())
        console.print(f"  best {task}: {info['metric']} {info['value']:.2f} with {settings}")
    console.print(f"sweep recorded in {result.root / 'sweep.json'} and {result.root / 'sweep.md'}")
