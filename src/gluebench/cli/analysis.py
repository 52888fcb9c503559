"""`gluebench diagnose`, `gluebench analyze representations` and `gluebench embeddings adapt`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.cli.options import given, with_options
from gluebench.errors import GluebenchError
from gluebench.runs import resolve_run
from gluebench.tasks import diagnostic_tasks

console = Console()

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="GLUE data directory (default: $GLUE_DIR, cache, ../shared).")
]


def _data_dir(explicit: Path | None) -> Path:
    from gluebench.data.locate import find_data_dir

    directory, _ = find_data_dir(explicit)
    if directory is None:
        raise GluebenchError("no GLUE data found: run `gluebench download` or pass --data-dir")
    return directory


def _nli_sources() -> str:
    """The diagnostic sets' NLI sources in preference order, from the registry."""
    sources: list[str] = []
    for task in diagnostic_tasks():
        stand_ins = task.diagnostic.stand_ins if task.diagnostic is not None else ()
        sources += [name for name in (task.predicted_by, *stand_ins) if name]
    return ", ".join(dict.fromkeys(sources))


_SOURCES = _nli_sources()


@app.command("diagnose")
@with_options(("seeds",), helps={"seeds": "Seeds to use (default: all of the run's)."})
def diagnose_command(
    run_dir: Annotated[str, typer.Argument(help="Run directory or run id (see `gluebench runs`).")],
    source: Annotated[str | None, typer.Option(
        "--source", help=f"NLI model to predict with: {_SOURCES} (default: the first of them the run has).")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", "-o", help="Where diagnostic.json/.png go (default RUN_DIR/analysis).")] = None,
    fine: Annotated[bool, typer.Option("--fine/--no-fine", help="Show the per-tag rows too.")] = True,
    data_dir: DataDir = None,
    **options: Any,
) -> None:
    """R3 on the labeled AX diagnostic, overall and per linguistic category and tag, with counts."""
    from gluebench.analysis.diagnostic import diagnose, write_report

    report = diagnose(resolve_run(run_dir), _data_dir(data_dir), options["seeds"], source)
    json_path, png_path = write_report(report, output_dir)
    if report.stand_in:
        console.print(f"[yellow]No {report.task.predicted_by} model in this run: {report.source} stands in.[/] "
                      "It predicts only "
                      "entailment / not_entailment, so gold labels are collapsed the same way and the numbers "
                      "are binary Matthews correlations, not comparable with a three-way R3.")
    multi = len(report.seeds) > 1
    table = Table(title=f"{report.task.name} diagnostic — {report.metric_label}, predicted by {report.source}"
                        f"{' (mean ± std over seeds ' + ','.join(map(str, report.seeds)) + ')' if multi else ''}")
    table.add_column("category")
    table.add_column("n", justify="right")
    table.add_column(report.metric_label if not multi else "mean ± std", justify="right")
    previous = "all"
    for row in report.mean():
        if row["group"] == "fine" and not fine:
            continue
        if row["group"] == "coarse" or (row["group"] == "domain" and previous != "domain"):
            table.add_section()  # one block per coarse category with its tags, then the domains
        previous = row["group"]
        labels = {"all": "[bold]All[/]", "coarse": "[bold]{}[/]", "fine": "  {}", "domain": "Domain: {}"}
        name = labels[row["group"]].format(row["name"].split(" / ")[-1])
        value = f"{row['r3']:.1f}" + (f" ± {row['r3_std']:.1f}" if multi else "")
        table.add_row(name, str(row["count"]), value)
    console.print(table)
    console.print(f"wrote {json_path} and {png_path}")


analyze_app = typer.Typer(help="Analyses across the task models of runs.", no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


def _train_for_analysis(model: str, options: dict[str, Any], unfreeze: bool, data_dir: Path | None,
                        root: Path) -> Path:
    """Train (or, when already there, reuse) a run to analyse, under ``root``."""
    from gluebench.config import COMMAND_LINE, config_from_mapping
    from gluebench.runner import run

    run_dir = root / f"{model.replace(':', '_').replace('/', '_')}-{'unfrozen' if unfreeze else 'default'}"
    values = {**options, "model": model, "output_dir": str(run_dir), "unfreeze_embeddings": unfreeze,
              **({"data_dir": str(data_dir)} if data_dir else {})}
    config = config_from_mapping(values, COMMAND_LINE)
    run(config, resume=(run_dir / "config.yaml").is_file(), report=console.print)
    return run_dir


def _train_study(options: dict[str, Any], data_dir: Path | None, root: Path) -> list[Path]:
    """Train (or reuse, continuing any unfinished one) the study's four runs under ``root``."""
    from gluebench.analysis.study import CONDITIONS, recipe
    from gluebench.runner import run

    shared = {key: options[key] for key in ("tasks", "seeds", "max_train_examples") if options[key] is not None}
    if data_dir:
        shared["data_dir"] = str(data_dir)
    directories = []
    for condition in CONDITIONS:
        run_dir = root / condition
        console.print(f"[bold]{condition}[/]: {run_dir}")
        run(recipe(condition, shared, run_dir), resume=(run_dir / "config.yaml").is_file(), report=console.print)
        directories.append(run_dir)
    return directories


@analyze_app.command("representations")
@with_options(("tasks", "epochs", "max_train_examples", "seeds"), helps={
    "tasks": "Comma-separated tasks (default: all the run trained; with --train or --study: at least two).",
    "epochs": "With --train: epochs (the family's default).",
    "max_train_examples": "With --train or --study: train on a fixed random slice of this size.",
    "seeds": "With --study: the seeds each condition trains (default 1)."})
def representations_command(
    run_dirs: Annotated[list[str] | None, typer.Argument(help="Run directories or ids to compare.")] = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the JSON, PNGs and report go.")] = Path(
        "analysis/representations"),
    seed: Annotated[int | None, typer.Option("--seed", help="Which seed's models (default: each run's first).")] = None,
    probe_size: Annotated[int, typer.Option("--probe-size", help="Probe sentences from the dev sets.", min=10)] = 256,
    train: Annotated[str | None, typer.Option("--train", help="Train MODEL on --tasks first (into "
                                              "OUTPUT_DIR/runs) and analyse it.")] = None,
    unfreeze_embeddings: Annotated[bool, typer.Option("--unfreeze-embeddings", help="With --train: also train a run "
                                                      "with trainable word vectors, to compare.")] = False,
    study: Annotated[bool, typer.Option("--study", help="The 2 x 2 of static vs contextual x frozen vs trained "
                                        "(glove-bilstm frozen / --unfreeze-embeddings, minilm --freeze-encoder / "
                                        "fine-tuned) with token-level contextuality. Without RUN_DIRS: train the "
                                        "four on --tasks into OUTPUT_DIR/runs first.")] = False,
    token_probe_size: Annotated[int, typer.Option("--token-probe-size", min=10, help="With --study: dev sentences "
                                                  "for the token-level measures (every model reads them).")] = 512,
    min_contexts: Annotated[int, typer.Option("--min-contexts", min=2, help="With --study: measure the words "
                                              "found in at least this many token-probe sentences.")] = 5,
    data_dir: DataDir = None,
    **options: Any,
) -> None:
    """Task x task linear CKA per layer: where do models trained on different tasks diverge?"""
    from gluebench.analysis.representations import analyze, write_outputs

    directories = [resolve_run(ref) for ref in run_dirs or []]
    tasks: list[str] | None = options["tasks"]
    if study:
        from gluebench.analysis import study as two_by_two

        if train or options["epochs"] is not None:
            raise GluebenchError("--study trains each condition with its own recipe; drop --train and --epochs")
        if not directories:
            if not tasks:
                raise GluebenchError("--study needs --tasks (at least two tasks to compare) or the four RUN_DIRS")
            directories = _train_study(options, data_dir, output_dir / "runs")
        result = two_by_two.analyze_study(directories, _data_dir(data_dir), seed=seed, tasks=tasks,
                                          probe_size=probe_size, token_probe_size=token_probe_size,
                                          min_contexts=min_contexts)
        written = two_by_two.write_outputs(result, output_dir)
        for line in result["study"]["summary"]:
            console.print(f"- {line}")
        console.print(f"wrote {written['markdown']}, {written['study']} and the PNGs beside them")
        return
    if train:
        if not tasks:
            raise GluebenchError("--train needs --tasks (at least two tasks to compare)")
        for unfreeze in (False, True) if unfreeze_embeddings else (False,):
            directories.append(_train_for_analysis(train, {**given(options), "seeds": [seed or 1]}, unfreeze,
                                                   data_dir, output_dir / "runs"))
    if not directories:
        raise GluebenchError("give RUN_DIR(s) to analyse, or --train MODEL --tasks ...")
    result = analyze(directories, _data_dir(data_dir), seed=seed, tasks=tasks, probe_size=probe_size)
    written = write_outputs(result, output_dir)
    for line in result["summary"]:
        console.print(f"- {line}")
    console.print(f"wrote {written['markdown']}, {written['json']} and the PNGs beside them")


embeddings_app = typer.Typer(help="Word-vector tools for the static-embedding models.", no_args_is_help=True)
app.add_typer(embeddings_app, name="embeddings")


@embeddings_app.command("adapt")
def adapt_command(
    corpus: Annotated[list[Path], typer.Option("--corpus", help="UTF-8 text file(s), one sentence per line; "
                                                "repeat the option or list several after it.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Vectors directory to write "
                                             "(then: gluebench run --embeddings DIR).")],
    base: Annotated[str, typer.Option("--base", help="Base vectors: glove-6b-50d (packaged), a GloVe .txt[.gz] "
                                      "or a vectors directory.")] = "glove-6b-50d",
    mu: Annotated[float, typer.Option("--mu", help="Pull toward the base vectors (0 = plain GloVe warm start).",
                                      min=0.0)] = 0.1,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the non-zero co-occurrences.", min=1)] = 50,
    window: Annotated[int, typer.Option("--window", help="Co-occurrence window (each side), weighted 1/distance.",
                                        min=1)] = 10,
    min_count: Annotated[int, typer.Option("--min-count", help="Ignore corpus words rarer than this.", min=1)] = 1,
    lr: Annotated[float, typer.Option("--lr", help="AdaGrad learning rate.", min=0.0)] = 0.05,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Co-occurrences per AdaGrad step.", min=1)] = 16384,
    seed: Annotated[int, typer.Option("--seed", help="Initialisation and shuffling seed.")] = 1,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Continue GloVe training on a corpus from base vectors, kept near them (Mittens)."""
    import torch

    from gluebench.analysis.adapt import MittensConfig, adapt

    config = MittensConfig(mu=mu, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           device="cuda" if torch.cuda.is_available() else "cpu")
    summary = adapt(corpus, output_dir, base, window=window, min_count=min_count, config=config,
                    progress=not no_progress)
    first, last = summary.history[0], summary.history[-1]
    change = summary.relative_change
    console.print(f"corpus: {summary.sentences:,} lines, {summary.tokens:,} tokens, {summary.corpus_vocab:,} words "
                  f"({summary.with_base_vector:,} with a base vector, {summary.new_words:,} new), "
                  f"{summary.nonzeros:,} non-zero co-occurrences (window {summary.window})")
    console.print(f"GloVe loss {first['glove_loss']:.1f} (start) -> {last['glove_loss']:.1f} (epoch "
                  f"{last['epoch']}) in {summary.seconds_training:.1f}s; words moved by ||v'-v||/||v||: median "
                  f"{change['median']:.3f}, mean {change['mean']:.3f}, max {change['max']:.3f}")
    console.print(f"wrote {summary.output_words:,} vectors to {output_dir} (use: gluebench run --embeddings "
                  f"{output_dir})")
