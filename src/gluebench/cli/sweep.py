"""`gluebench sweep`: an Optuna study per task (grid, random or TPE; pruning), workers here and elsewhere
(`gluebench sweep worker`), the best setting per task on dev, then its final seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import yaml
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.cli.options import given, with_options
from gluebench.config import (
    COMMAND_LINE,
    EVALUATE_ONLY,
    OPTION_NAMES,
    RunConfig,
    config_from_mapping,
    load_config,
    parse_option,
)
from gluebench.errors import ConfigError
from gluebench.tasks import TASKS

if TYPE_CHECKING:
    from gluebench.sweep import SweepResult

console = Console()
sweep_app = typer.Typer(no_args_is_help=False)
app.add_typer(sweep_app, name="sweep")


def _table(result: SweepResult) -> Table:
    table = Table(title=f"sweep {result.settings['study']!r}: {len(result.trials)} trials ({result.root})")
    for column, justify in (("trial", "left"), ("state", "left"), ("dev (main metric)", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    winners = {info["trial"] for info in result.best.values()}
    for trial in result.trials:
        value = "–" if trial.value is None else f"{trial.value:.2f}"
        table.add_row(trial.name, trial.state.lower(), f"[bold green]{value}[/]" if trial.name in winners else value)
    return table


def _show(result: SweepResult) -> None:
    console.print(_table(result))
    for task, info in result.best.items():
        settings = ", ".join(f"{k}={v}" for k, v in info["params"].items())
        console.print(f"  best {task}: {info['metric']} {info['value']:.2f} with {settings}")
    for label, final in result.final.items():
        for task, info in final["tasks"].items():
            main = TASKS[task].main_metric if task in TASKS else None
            if main in info["mean"]:
                console.print(f"  final {task} (seeds {', '.join(map(str, final['seeds']))}): {main} "
                              f"{info['mean'][main]:.2f} ± {info['std'][main]:.2f} in {final['run_dir']}"
                              + ("" if label == task else f" ({label})"))
    console.print(f"sweep recorded in {result.root / 'sweep.json'} and {result.root / 'sweep.md'}")


def _base_and_space(config_file: Path | None, overrides: dict[str, Any]) -> tuple[RunConfig, Any]:
    """The fixed run options, and the ``space:`` mapping a run YAML may carry beside them."""
    if config_file is None:
        return config_from_mapping(overrides, COMMAND_LINE), None
    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None  # load_config says what is wrong with the file
    if isinstance(data, dict) and "space" in data:
        space = data.pop("space")
        return config_from_mapping({**data, **overrides}, str(config_file)), space
    return load_config(config_file, overrides), None


def _seeds(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        return list(parse_option("seeds", text))
    except ConfigError as exc:
        raise ConfigError(f"--final-seeds must be seeds such as 1,2,3, got {text!r}") from exc


@sweep_app.callback(invoke_without_command=True)
# --output-dir is the sweep's own directory
@with_options(name for name in OPTION_NAMES if name != "output_dir" and name not in EVALUATE_ONLY)
def sweep_command(
    ctx: typer.Context,
    grid: Annotated[str | None, typer.Option(
        "--grid", help="Grid as KEY=V1,V2;KEY=... (default: the BERT paper's lr x batch x epochs).")] = None,
    space_file: Annotated[Path | None, typer.Option(
        "--space", help="YAML space: KEY: [V1, V2] or KEY: {low: L, high: H, log: true, step: S}.")] = None,
    grid_file: Annotated[Path | None, typer.Option("--grid-file", help="The same as --space.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="YAML with the fixed run options (as for gluebench run) and optionally a space: mapping; "
        "options given here win.")] = None,
    sampler: Annotated[Literal["grid", "random", "tpe"], typer.Option(
        "--sampler", help="grid: every point once; random or tpe: --trials draws.")] = "grid",
    trials: Annotated[int | None, typer.Option(
        "--trials", help="Trials per task (default: the whole grid, or 20).", min=1)] = None,
    pruner: Annotated[Literal["none", "median", "halving"], typer.Option(
        "--pruner", help="Stop trials early on the first seed's dev metric after each epoch.")] = "none",
    startup_trials: Annotated[int, typer.Option(
        "--startup-trials", help="Trials that finish before TPE and the median pruner decide.", min=0)] = 5,
    sampler_seed: Annotated[int | None, typer.Option(
        "--sampler-seed", help="Seed the random or TPE sampler (the same draws again with --workers 1; other "
        "workers offset it).", min=0)] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna RDB URL (postgresql://user@host/db) or journal file (default: "
        "<sweep dir>/study.journal).")] = None,
    study: Annotated[str, typer.Option("--study", help="Name of the sweep in the storage (one study per task: "
                                       "NAME.TASK).")] = "gluebench",
    workers: Annotated[int, typer.Option(
        "--workers", help="Worker processes on this machine (0: wait for `gluebench sweep worker`s).", min=0)] = 1,
    final_seeds: Annotated[str | None, typer.Option(
        "--final-seeds", help="Rerun each task's winner with these seeds, e.g. 1,2,3 (mean ± std).")] = None,
    heartbeat: Annotated[int, typer.Option(
        "--heartbeat", help="Seconds between a trial's heartbeats; a trial silent for 4 of them is retried.",
        min=1)] = 30,
    launch: Annotated[str | None, typer.Option(
        "--launch", help="Train each trial as a subprocess CMD -m gluebench run, e.g. \"accelerate launch "
        "--multi_gpu --num_processes 2\" (data-parallel trials; workers elsewhere use it too).")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Sweep directory (default runs/<date-time>-sweep-<model>); the same command "
        "again continues it.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --output-dir as it was "
                                         "started.")] = False,
    **options: Any,
) -> None:
    """Search each task's best run options on dev with Optuna, then rerun the winner with --final-seeds.

    The run options below are the fixed base of every trial; the space varies the sweepable ones.
    """
    if ctx.invoked_subcommand is not None:
        return
    if sum(x is not None for x in (grid, space_file, grid_file)) > 1:
        raise ConfigError("--grid, --space and --grid-file: give one of them")
    base, config_space = _base_and_space(config_file, given(options))
    seeds = _seeds(final_seeds)
    from gluebench.sweep import SweepSettings, check_space, load_space, parse_grid, sweep  # torch is slow to import

    space_path = space_file or grid_file
    chosen = (parse_grid(grid) if grid else load_space(space_path) if space_path
              else check_space(config_space, f"{config_file}: space") if config_space is not None else None)
    settings = SweepSettings(sampler=sampler, trials=trials, pruner=pruner, startup_trials=startup_trials,
                             storage=storage, study=study, workers=workers, final_seeds=seeds, heartbeat=heartbeat,
                             launch=launch, sampler_seed=sampler_seed)
    try:
        result = sweep(base, chosen, settings=settings, output_dir=output_dir, resume=resume, report=console.print)
    except KeyboardInterrupt:
        where = output_dir or "<sweep dir>"
        console.print(f"[red]interrupted.[/] Finished trials are kept and the running one is queued again; "
                      f"continue with:\n  gluebench sweep --resume --output-dir {where}")
        raise typer.Exit(130) from None
    _show(result)


@sweep_app.command("worker")
def worker_command(
    storage: Annotated[str, typer.Option(
        "--storage", help="The sweep's storage: its RDB URL or journal file.", show_default=False)],
    study: Annotated[str, typer.Option("--study", help="The sweep's name in the storage.")] = "gluebench",
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Where this worker's trial directories go (default: the sweep's directory "
        "as its creator recorded it).")] = None,
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", help="GLUE data directory on this machine (default: the sweep's).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Show progress bars.")] = None,
    launch: Annotated[str | None, typer.Option(
        "--launch", help="This machine's launch command for each trial (default: the sweep's --launch).")] = None,
    worker_number: Annotated[int | None, typer.Option("--worker-number", hidden=True)] = None,
) -> None:
    """Join a sweep from any machine: run its waiting trials until none is left (Ctrl-C queues the trial again)."""
    from gluebench.sweep import work  # torch is slow to import

    _show(work(storage, study, output_dir=output_dir, data_dir=data_dir, progress=progress, launch=launch,
               worker=worker_number, report=console.print))
