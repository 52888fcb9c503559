"""`gluebench run` and `gluebench runs`: train and evaluate a model, list past runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.cli.tasks import score_table
from gluebench.config import RunConfig, config_from_mapping, load_config
from gluebench.runs import list_runs

console = Console()


def _opt(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, show_default=False)


@app.command("run")
def run_command(
    model: Annotated[str | None, _opt("Model: glove-cbow, glove-bilstm, glove-transformer, minilm, hf:<id|path>.",
                                      "--model", "-m")] = None,
    tasks: Annotated[str | None, _opt("Comma-separated tasks, or 'all' (default).", "--tasks", "-t")] = None,
    seeds: Annotated[str | None, _opt("Comma-separated seeds, e.g. 1,2,3 (mean ± std is reported).",
                                      "--seeds")] = None,
    config_file: Annotated[Path | None, _opt("YAML file with the same fields as these options.",
                                             "--config")] = None,
    data_dir: Annotated[str | None, _opt("GLUE data directory.", "--data-dir")] = None,
    output_dir: Annotated[str | None, _opt("Run directory (default runs/<date-time>-<model>).",
                                           "--output-dir", "-o")] = None,
    epochs: Annotated[int | None, _opt("Epochs (family default).", "--epochs")] = None,
    batch_size: Annotated[int | None, _opt("Batch size (family default).", "--batch-size")] = None,
    lr: Annotated[float | None, _opt("Learning rate (family default).", "--lr")] = None,
    weight_decay: Annotated[float | None, _opt("AdamW weight decay.", "--weight-decay")] = None,
    warmup_ratio: Annotated[float | None, _opt("Share of steps for linear warmup.", "--warmup-ratio")] = None,
    grad_accum: Annotated[int | None, _opt("Gradient accumulation steps.", "--grad-accum")] = None,
    patience: Annotated[int | None, _opt("Early-stopping patience in epochs.", "--patience")] = None,
    max_length: Annotated[int | None, _opt("Max tokens per example.", "--max-length")] = None,
    hidden_size: Annotated[int | None, _opt("Encoder hidden size (static models).", "--hidden-size")] = None,
    dropout: Annotated[float | None, _opt("Dropout.", "--dropout")] = None,
    embeddings: Annotated[str | None, _opt("GloVe .txt/.zip file or adapted-vectors dir (default glove.6B.50d).",
                                           "--embeddings")] = None,
    unfreeze_embeddings: Annotated[bool | None, _opt("Fine-tune the word vectors too.",
                                                     "--unfreeze-embeddings")] = None,
    max_train_examples: Annotated[int | None, _opt("Train on a fixed random slice of this size.",
                                                   "--max-train-examples")] = None,
    mixed_precision: Annotated[str | None, _opt("no, fp16 or bf16 (GPU).", "--mixed-precision")] = None,
    multitask: Annotated[bool | None, _opt("One shared encoder, per-task heads.", "--multitask")] = None,
    temperature: Annotated[float | None, _opt("Multitask sampling temperature (1 = proportional).",
                                              "--temperature")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Train one model per task (and seed) on every task whose data is present; print dev metrics."""
    given = {key: value for key, value in locals().items()
             if key not in ("config_file", "resume", "no_progress") and value is not None}
    if no_progress:
        given["progress"] = False
    config: RunConfig = load_config(config_file, given) if config_file else config_from_mapping(given, "option")
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
