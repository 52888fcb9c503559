"""`gluebench sweep`: a hyperparameter grid per task, best setting on dev, every trial recorded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.cli.options import given, with_options
from gluebench.config import COMMAND_LINE, EVALUATE_ONLY, OPTION_NAMES, RunConfig, config_from_mapping, load_config
from gluebench.errors import ConfigError
from gluebench.tasks import TASKS

if TYPE_CHECKING:
    from gluebench.sweep import SweepResult

console = Console()


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
# --output-dir is the sweep's own directory
@with_options(name for name in OPTION_NAMES if name != "output_dir" and name not in EVALUATE_ONLY)
def sweep_command(
    grid: Annotated[str | None, typer.Option(
        "--grid", help="Grid as KEY=V1,V2;KEY=... (default: the BERT paper's lr x batch x epochs).")] = None,
    grid_file: Annotated[Path | None, typer.Option(
        "--grid-file", help="YAML file mapping run options to lists of values.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="YAML with the fixed run options (as for gluebench run); options given here win.")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Sweep directory (default runs/<date-time>-sweep-<model>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --output-dir.")] = False,
    **options: Any,
) -> None:
    """Train one run per grid point and report the best setting per task on dev.

    The run options below are the fixed base of every trial; the grid varies the sweepable ones.
    """
    if grid and grid_file:
        raise ConfigError("--grid and --grid-file: give one of them")
    overrides = given(options)
    base: RunConfig = (load_config(config_file, overrides) if config_file
                       else config_from_mapping(overrides, COMMAND_LINE))
    from gluebench.sweep import BERT_GRID, load_grid, parse_grid, sweep  # imported here: torch is slow to import

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
