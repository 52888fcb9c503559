"""The Python API: the library behind the CLI, returning typed results and printing nothing.

Every function takes the options `gluebench run` takes, by the same names (`gluebench.config`), so the
command line, YAML files and Python say the same thing the same way::

    import gluebench

    summary = gluebench.run(model="glove-cbow", tasks=["RTE"], epochs=2)
    print(gluebench.score(summary).label)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gluebench.artifacts import RunSummary
from gluebench.config import config_from_mapping
from gluebench.data.locate import find_data_dir
from gluebench.data.read import Example
from gluebench.data.read import read_split as read_task_split
from gluebench.errors import DataMissingError
from gluebench.evaluation import TextPredictor
from gluebench.evaluation import evaluate as evaluate_workflow
from gluebench.exporting import export_run
from gluebench.metrics import GlueScore, glue_score
from gluebench.reporting import Report, write_report
from gluebench.runner import run as run_workflow
from gluebench.runs import RunPaths, read_json
from gluebench.submission import Submission, Validation, validate_submission, write_submission
from gluebench.tasks import TASKS, get_task


def _config(options: dict[str, Any], where: str) -> Any:
    values = {key: value for key, value in options.items() if value is not None}
    return config_from_mapping({k: str(v) if isinstance(v, Path) else v for k, v in values.items()}, where)


def run(model: str = "glove-bilstm", tasks: str | Iterable[str] = "all", **options: Any) -> RunSummary:
    """Train and evaluate ``model`` on ``tasks`` (`gluebench run`); ``options`` as its flags, e.g. epochs=3."""
    return run_workflow(_config({"model": model, "tasks": tasks if isinstance(tasks, str) else list(tasks),
                                 "progress": False, **options}, "run()"))


def evaluate(model: str | TextPredictor | None = None, tasks: str | Iterable[str] = "all", *,
             run_dir: str | Path | None = None, **options: Any) -> RunSummary:
    """Dev metrics and test predictions without training (`gluebench evaluate`), in a run directory.

    ``model``: ``"hf:<fine-tuned checkpoint>"``, an export directory, or your own callable from a list of
    texts (or of ``(text_a, text_b)`` pairs) to logits ``[N, C]`` (in the order of the task's labels,
    `gluebench.TASKS[task].labels`) or scores ``[N]``; or ``run_dir`` to re-evaluate a run's saved models.
    """
    names = tasks if isinstance(tasks, str) else list(tasks)
    if callable(model):
        config = _config({"tasks": names, "progress": False, **options}, "evaluate()")
        return evaluate_workflow(config, predictor=model)
    config = _config({"model": model, "tasks": names, "progress": False, **options}, "evaluate()")
    return evaluate_workflow(config, run_dir=Path(run_dir) if run_dir is not None else None)


def read_split(task: str, split: str = "dev", data_dir: str | Path | None = None) -> list[Example]:
    """One split of a task as typed examples (index, texts, label), from the official TSVs or the Hub's parquet."""
    directory, _ = find_data_dir(data_dir)
    if directory is None:
        raise DataMissingError("no GLUE data found: run `gluebench download` or pass data_dir")
    return read_task_split(get_task(task), split, directory)


def score(results: RunSummary | str | Path | dict[str, dict[str, float]]) -> GlueScore:
    """The official GLUE score of a run (summary or directory) or of ``{task: {metric: value}}``."""
    if isinstance(results, RunSummary):
        metrics = results.metrics
    elif isinstance(results, dict):
        metrics = results
    else:
        metrics = read_json(RunPaths(Path(results)).metrics)
    return glue_score({get_task(t).name: m for t, m in metrics.items() if get_task(t).in_glue_score})


def submit(run_dir: str | Path | RunSummary, output: str | Path = "glue_submission.zip", *,
           fill: str | None = None) -> tuple[Submission, Validation]:
    """The zip the GLUE server takes (``fill="majority"`` for tasks the run lacks), and its validation."""
    root = run_dir.run_dir if isinstance(run_dir, RunSummary) else Path(run_dir)
    written = write_submission(root, Path(output), fill=fill)
    return written, validate_submission(written.path)


def report(run_dirs: str | Path | RunSummary | Iterable[str | Path | RunSummary],
           output: str | Path = "report.html") -> Report:
    """The HTML report of one or more runs."""
    items = [run_dirs] if isinstance(run_dirs, str | Path | RunSummary) else list(run_dirs)
    return write_report([r.run_dir if isinstance(r, RunSummary) else Path(r) for r in items], Path(output))


def export(run_dir: str | Path | RunSummary, output: str | Path, tasks: Iterable[str] | None = None) -> Path:
    """Each task's model in its ecosystem's format (`gluebench export`); the export directory."""
    root = run_dir.run_dir if isinstance(run_dir, RunSummary) else Path(run_dir)
    export_run(root, Path(output), list(tasks) if tasks is not None else None)
    return Path(output)


__all__ = ["TASKS", "evaluate", "export", "read_split", "report", "run", "score", "submit"]
