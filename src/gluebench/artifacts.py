"""What a run reads and leaves behind, shared by every workflow (run, multitask, sweep, analysis, reports).

Workflows meet here instead of importing each other: the examples a run trains on (a fixed slice of the
official files), whether a named task can run at all, a task's prediction and result files, reloading a
saved task model, and the mean ± std over seeds that ``run.json`` holds. The file layout itself is
`gluebench.runs.RunPaths`.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import stat
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebench.config import RunConfig, load_config
from gluebench.data.download import download_glue
from gluebench.data.locate import default_glue_cache, find_data_dir, has_split, split_path
from gluebench.data.read import Example, Label, read_split
from gluebench.errors import ConfigError, DataMissingError
from gluebench.metrics import breakdown, compute_metrics, glue_score
from gluebench.models import TaskModel, get_family
from gluebench.runs import (
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    default_run_dir,
    now_iso,
    read_json,
    register_run,
    write_tsv,
)
from gluebench.tasks import TASKS, TaskSpec, predicted_tasks
from gluebench.training import (
    TrainConfig,
    TrainOutcome,
    is_main_process,
    load_weights,
    predict,
    process_state,
    share_from_main,
    wait_for_everyone,
)

log = logging.getLogger("gluebench")
TIMING_KEYS = ("train_seconds", "examples_per_second", "predict_seconds")
EXPORT_MANIFEST = "gluebench.json"  # what `gluebench export` writes beside the exported models


# ---- inputs -----------------------------------------------------------------------------------------


def subsample(examples: list[Example], limit: int | None, seed: int = 0) -> list[Example]:
    """A fixed random slice of the training set (the same for every seed, so seeds vary only the model)."""
    if limit is None or limit >= len(examples):
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


@dataclass
class TaskExamples:
    """A task's examples for one run: the (sliced) training set, every dev split and every test split found."""

    train: list[Example]
    dev: dict[str, list[Example]]
    tests: dict[str, list[Example]]

    def every(self) -> list[Example]:
        """All texts the run will see (vocabularies are built from them)."""
        return self.train + [e for group in (*self.dev.values(), *self.tests.values()) for e in group]


def read_task(spec: TaskSpec, data_dir: Path, max_train_examples: int | None, *, train: bool = True) -> TaskExamples:
    """The run's examples of a task; ``train`` False: dev and test only (evaluation)."""
    return TaskExamples(
        subsample(read_split(spec, "train", data_dir), max_train_examples) if train else [],
        {split: read_split(spec, split, data_dir) for split in spec.dev_splits},
        {split: read_split(spec, split, data_dir) for split in spec.test_files if has_split(spec, split, data_dir)},
    )


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a data file (None: it can)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "is a dangling link" if os.path.islink(path) else "is missing"
    except OSError as exc:
        return "is a link that loops" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


def training_problems(spec: TaskSpec, data_dir: Path, *, train: bool = True) -> list[tuple[Path, str]]:
    """The files a task needs to be trained (``train``) and evaluated that cannot be read, with why."""
    needed = ["train", *spec.dev_splits] if spec.has_train and train else list(spec.dev_splits)
    problems = [(split_path(spec, split, data_dir), _file_problem(split_path(spec, split, data_dir)))
                for split in needed]
    return [(path, why) for path, why in problems if why is not None]


def resolve_data_dir(config: RunConfig, tasks: list[TaskSpec]) -> Path:
    """The configured or found GLUE directory; downloads the tasks into the cache when none is found."""
    data_dir, source = find_data_dir(config.data_dir)
    if data_dir is None:
        data_dir = default_glue_cache()
        log.info("no GLUE data found; downloading %s into %s", ", ".join(t.name for t in tasks), data_dir)
        if is_main_process():
            download_glue(tasks, data_dir)
        wait_for_everyone()
    else:
        log.info("GLUE data: %s (%s)", data_dir, source)
    return data_dir


def runnable_tasks(config: RunConfig, tasks: list[TaskSpec], data_dir: Path, say: Callable[[str], None],
                   *, train: bool = True) -> tuple[list[TaskSpec], dict[str, str]]:
    """The tasks to train (or only evaluate: ``train`` False) and the skipped ones with why.

    A task the user named that cannot run is an error before any training starts; only ``all`` skips the
    tasks whose files are not there, and says how to get them.
    """
    named = config.tasks != ["all"]
    ready: list[TaskSpec] = []
    skipped: dict[str, str] = {}
    for spec in tasks:
        problems = training_problems(spec, data_dir, train=train)
        if not problems:
            ready.append(spec)
            continue
        path, why = problems[0]
        if named:
            raise DataMissingError(f"{spec.name} cannot run: this file {why} (get it with "
                                   f"`gluebench download --tasks {spec.name}`)", path=path)
        skipped[spec.name] = f"{path} {why}; get it with `gluebench download --tasks {spec.name}`"
    if skipped:
        say(f"skip {', '.join(skipped)}: no data in {data_dir} (get it with "
            f"`gluebench download --tasks {','.join(skipped)}`)")
    if not ready:
        raise DataMissingError(f"no task of {', '.join(t.name for t in tasks)} has its files in {data_dir} "
                               f"(get them with `gluebench download`)")
    return ready, skipped


# ---- outputs ----------------------------------------------------------------------------------------


def write_predictions(paths: RunPaths, task: TaskSpec, seed: int, split: str, examples: Sequence[Example],
                      preds: Sequence[Label]) -> None:
    """``SPLIT_predictions.tsv``: index, prediction (and gold where the split is labeled)."""
    def fmt(value: Label | None) -> str:
        return f"{value:.3f}" if task.is_regression and isinstance(value, float) else str(value)

    if examples and examples[0].label is not None:
        labeled = [(e.index, fmt(p), fmt(e.label)) for e, p in zip(examples, preds, strict=True)]
        write_tsv(paths.predictions(task.name, seed, split), ["index", "prediction", "gold"], labeled)
    else:
        unlabeled = [(e.index, fmt(p)) for e, p in zip(examples, preds, strict=True)]
        write_tsv(paths.predictions(task.name, seed, split), ["index", "prediction"], unlabeled)


def predict_splits(paths: RunPaths, model: TaskModel, spec: TaskSpec, seed: int, examples: TaskExamples,
                   *, write: bool, batch_size: int) -> None:
    """Predict every dev and test split with ``model`` (all processes take part); ``write`` on the main one."""
    for split, group in (*examples.dev.items(), *examples.tests.items()):
        preds = predict(model, spec, group, batch_size=batch_size)
        if write:
            write_predictions(paths, spec, seed, split, group, preds)


def task_result(spec: TaskSpec, seed: int, outcome: TrainOutcome, examples: TaskExamples, config: TrainConfig,
                model: TaskModel, predict_seconds: float, **extra: Any) -> dict[str, Any]:
    """The ``result.json`` of one (task, seed)."""
    return {
        "task": spec.name, "seed": seed, "metrics": outcome.best_metrics, "best_epoch": outcome.best_epoch,
        "epochs_run": len(outcome.history), "train_examples": len(examples.train),
        "train_seconds": outcome.train_seconds, "examples_per_second": outcome.examples_per_second,
        "predict_seconds": predict_seconds,
        "config": {**config.__dict__, "mixed_precision": outcome.mixed_precision},  # auto: what it resolved to
        "coverage": model.metadata().get("coverage"), "resumed_from": outcome.resumed_from, **extra,
    }


def write_task_outputs(paths: RunPaths, spec: TaskSpec, seed: int, outcome: TrainOutcome,
                       result: dict[str, Any]) -> None:
    atomic_write_json(paths.history(spec.name, seed), outcome.history)
    atomic_write_json(paths.result(spec.name, seed), result)


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, std and per-seed metrics (and timing) of one task over its seeds, as ``run.json`` holds them."""
    keys = results[0]["metrics"].keys()
    mean = {k: statistics.fmean(r["metrics"][k] for r in results) for k in keys}
    std = {k: statistics.stdev([r["metrics"][k] for r in results]) if len(results) > 1 else 0.0 for k in keys}
    timing = {k: statistics.fmean(r.get(k, 0.0) for r in results) for k in TIMING_KEYS}
    categories = results[0].get("categories")
    return {"mean": mean, "std": std, "per_seed": [r["metrics"] for r in results],
            "seeds": [r["seed"] for r in results], **timing,
            **{k: results[0][k] for k in ("predicted_by", "coverage", "train_examples") if k in results[0]},
            **({"categories": {c: statistics.fmean(r["categories"][c] for r in results) for c in categories}}
               if categories else {})}


# ---- a run directory ---------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run produced, as written to ``run.json``."""

    run_dir: Path
    model: str
    seeds: list[int]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> mean/std/per_seed/timing
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why
    run_id: str | None = None

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {task: info["mean"] for task, info in self.tasks.items()}


def prepare_run_dir(config: RunConfig, resume: bool) -> tuple[RunConfig, RunPaths]:
    """Create or reopen the run directory; on resume the saved config wins, so the run stays the same."""
    if resume:
        if not config.output_dir:
            raise ConfigError("--resume needs --output-dir (the run directory to continue)")
        paths = RunPaths(Path(config.output_dir))
        if not paths.config.is_file():
            raise ConfigError(f"--resume: {paths.root} holds no run to resume (no config.yaml)")
        saved = load_config(paths.config, {"progress": config.progress})
        return saved, paths
    # every process of an `accelerate launch` group uses the directory the main process named
    root = Path(share_from_main(config.output_dir or str(default_run_dir(config.model))))
    if is_main_process():
        if root.exists() and any(root.iterdir()):
            raise ConfigError(f"--output-dir {root} is not empty; pass --resume to continue that run or pick another")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--output-dir {root}: cannot create it ({exc.strerror})") from exc
    config.output_dir = str(root)
    paths = RunPaths(root)
    if is_main_process():
        atomic_write_text(paths.config, config.to_yaml())
    wait_for_everyone()
    return config, paths


def log_to_file(log_path: Path) -> logging.Handler | None:
    """The run's log file (main process only); remove the handler when the run ends."""
    if not is_main_process():
        return None
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def predict_dependents(paths: RunPaths, source: TaskSpec, seed: int, data_dir: Path) -> list[dict[str, Any]]:
    """Tasks predicted with ``source``'s model (AX with MNLI's): test predictions, metrics on labeled files.

    Metrics are also kept per coarse category (the GLUE paper's Table 5 rows), so every run that trains
    MNLI says where its model fails without a separate ``gluebench diagnose``.
    """
    results = []
    for target in predicted_tasks(source.name):
        model, _ = load_task_model(paths.root, source.name, seed)
        metrics: dict[str, float] = {}
        categories: dict[str, float] = {}
        for split in (*target.dev_splits, *target.test_files):
            if not has_split(target, split, data_dir):
                continue
            examples = read_split(target, split, data_dir)
            preds = [str(p) for p in predict(model, source, examples)]
            if is_main_process():
                write_predictions(paths, target, seed, split, examples, preds)
            if split in target.dev_splits:
                metrics.update(compute_metrics(target, preds, [e.label for e in examples]))
                if target.diagnostic is not None:
                    categories = {s.name: s.r3 for s in breakdown(examples, preds, task=target)
                                  if s.group == "coarse"}
        result = {"task": target.name, "seed": seed, "metrics": metrics, "categories": categories,
                  "predicted_by": source.name}
        if is_main_process():
            atomic_write_json(paths.result(target.name, seed), result)
        results.append(result)
    return results


def finish_run(summary: RunSummary, config: RunConfig, paths: RunPaths) -> None:
    """``metrics.json``, ``run.json`` and the run's entry in the index."""
    score = glue_score({t: m for t, m in summary.metrics.items() if TASKS[t].in_glue_score})
    atomic_write_json(paths.metrics, summary.metrics)
    record = {
        "model": summary.model, "seeds": summary.seeds, "finished": now_iso(), "config": config.__dict__,
        "glue_score": score.value, "glue_score_label": score.label, "missing_tasks": list(score.missing),
        "tasks": summary.tasks, "skipped": summary.skipped, "processes": process_state().num_processes,
    }
    atomic_write_json(paths.summary, record)
    summary.run_id = register_run({
        "run_dir": str(paths.root), "model": summary.model, "tasks": sorted(summary.tasks),
        "seeds": summary.seeds, "score": score.value, "score_label": score.label, "date": record["finished"],
    })


# ---- reading a run back -----------------------------------------------------------------------------


def best_seed(info: dict[str, Any], main_metric: str) -> int:
    """The seed whose dev value of the main metric is highest (the first on ties)."""
    values = [metrics.get(main_metric, float("-inf")) for metrics in info["per_seed"]]
    return int(info["seeds"][values.index(max(values))])


def load_task_model(run_dir: Path, task: str, seed: int | None = None) -> tuple[TaskModel, TaskSpec]:
    """Rebuild a trained model from a run directory (family, metadata, safetensors weights)."""
    paths = RunPaths(Path(run_dir))
    config = load_config(paths.config)
    spec = TASKS[task]
    seed = config.seeds[0] if seed is None else seed
    meta = read_json(paths.seed_dir(task, seed) / "model_meta.json")
    model = get_family(config.model).restore(spec, meta, config.family_options())
    if meta.get("weights") != "source":  # an evaluated checkpoint brings its own weights
        load_weights(model.module, paths.weights(task, seed))
    return model, spec
