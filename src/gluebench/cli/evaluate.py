"""`gluebench evaluate`, `gluebench export` and `gluebench predict`: models gluebench did not train, models
handed back to Hugging Face, and trained models on new text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gluebench.cli.app import app
from gluebench.cli.options import given, with_options
from gluebench.cli.tasks import score_table
from gluebench.config import COMMAND_LINE, RunConfig, config_from_mapping, load_config
from gluebench.errors import GluebenchError
from gluebench.runs import resolve_run

console = Console()

EVALUATE_OPTIONS = ("model", "tasks", "data_dir", "output_dir", "label_map", "max_length", "eval_batch_size",
                    "mixed_precision")


@app.command("evaluate")
@with_options(EVALUATE_OPTIONS, helps={
    "model": "hf:<fine-tuned checkpoint id or path>, or a directory `gluebench export` wrote.",
    "tasks": "The task(s) the checkpoint was fine-tuned for (a run directory: default all of its tasks).",
    "output_dir": "Run directory to write (default runs/<date-time>-<model>)."})
def evaluate_command(
    run_dir: Annotated[str | None, typer.Argument(
        help="Re-evaluate the saved models of this run directory (or run id) instead of --model.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="YAML with the same keys as the options (label_map: a list of TASK:ID=LABEL).")] = None,
    **options: Any,
) -> None:
    """Evaluate a model without training: dev metrics and test predictions in an ordinary run directory."""
    overrides = given(options)
    if run_dir is not None and "model" in overrides:
        raise GluebenchError("give a run directory or --model, not both")
    if run_dir is None and "model" not in overrides and not config_file:
        raise GluebenchError("evaluate needs --model hf:<checkpoint> (or an export directory) or a run directory")
    config: RunConfig = (load_config(config_file, overrides) if config_file
                         else config_from_mapping(overrides, COMMAND_LINE))
    from gluebench.evaluation import evaluate  # imported here: torch is slow to import for every command

    summary = evaluate(config, run_dir=resolve_run(run_dir) if run_dir else None, report=console.print)
    console.print(score_table(summary.metrics, f"{summary.model} — dev results ({summary.run_dir})"))
    for task, why in summary.skipped.items():
        console.print(f"  [yellow]skipped {task}[/]: {why}")
    console.print(f"run id {summary.run_id}: {summary.run_dir}")


@app.command("export")
def export_command(
    run_dir: Annotated[str, typer.Argument(help="Run directory or run id (see `gluebench runs`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write (must be new or empty).")],
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Comma-separated tasks (default: all the "
                                              "run trained).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Export this seed (default: each task's best dev "
                                             "seed).", show_default=False)] = None,
) -> None:
    """Write each task's model in its ecosystem's format (Hugging Face for Transformers) with a model card."""
    from gluebench.exporting import export_run

    manifest = export_run(resolve_run(run_dir), output, tasks.split(",") if tasks else None, seed)
    for task, entry in manifest["tasks"].items():
        console.print(f"{task} (seed {entry['seed']}): {output / task}")
    console.print(f"manifest: {output / 'gluebench.json'}")


@app.command("predict")
def predict_command(
    run_dir: Annotated[str, typer.Argument(help="Run directory or run id (see `gluebench runs`).")],
    task: Annotated[str, typer.Option("--task", help="The task whose model predicts.")],
    input_file: Annotated[Path, typer.Option("--input", "-i", help="TSV, CSV or JSON Lines with the task's text "
                                             "columns (sentence, or sentence1/sentence2, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="TSV to write: index, label, probabilities "
                                         "(or score).")],
    seed: Annotated[int | None, typer.Option("--seed", help="Use this seed's model (default: the best dev "
                                             "seed).", show_default=False)] = None,
) -> None:
    """Predict new text with a trained task model."""
    from gluebench.predict import predict_file

    count = predict_file(resolve_run(run_dir), task, input_file, output, seed)
    console.print(f"{count} rows predicted: {output}")
