"""`gluebench run`: train one model per task and seed, evaluate, predict test, write the run directory.

Family-agnostic: it asks `gluebench.models.get_family` for a builder and `gluebench.training` for the
loop. Each (task, seed) is finished when its ``result.json`` exists, so ``resume`` skips finished work and
continues an unfinished task from its last epoch checkpoint.
"""

from __future__ import annotations

import logging
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebench.analysis.diagnostic import breakdown
from gluebench.config import RunConfig, TrainConfig, load_config
from gluebench.data.locate import default_glue_cache, find_data_dir, has_split, missing_for_training
from gluebench.data.read import Example, read_split
from gluebench.errors import ConfigError
from gluebench.metrics import compute_metrics, glue_score
from gluebench.models.base import ModelFamily, TaskModel, get_family
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
from gluebench.tasks import TASKS, TaskSpec, resolve_tasks
from gluebench.training import load_weights, predict, save_weights, train

log = logging.getLogger("gluebench")


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


def resolve_data_dir(config: RunConfig, tasks: list[TaskSpec]) -> Path:
    """The configured or found GLUE directory; downloads the tasks into the cache when none is found."""
    data_dir, source = find_data_dir(config.data_dir)
    if data_dir is None:
        from gluebench.data.download import download_glue

        data_dir = default_glue_cache()
        log.info("no GLUE data found; downloading %s into %s", ", ".join(t.name for t in tasks), data_dir)
        download_glue(tasks, data_dir)
    else:
        log.info("GLUE data: %s (%s)", data_dir, source)
    return data_dir


def train_config(config: RunConfig, family: ModelFamily, seed: int) -> TrainConfig:
    """The loop's options for one seed, the family's defaults filled in."""
    return config.train_config(seed).with_family_defaults(
        family.default_epochs, family.default_batch_size, family.default_lr, getattr(family, "default_warmup", 0.0))


def subsample(examples: list[Example], limit: int | None, seed: int = 0) -> list[Example]:
    """A fixed random slice of the training set (the same for every seed, so seeds vary only the model)."""
    if limit is None or limit >= len(examples):
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def _write_predictions(paths: RunPaths, task: TaskSpec, seed: int, split: str, examples: list[Example],
                       preds: list[Any]) -> None:
    fmt = (lambda v: f"{v:.3f}") if task.is_regression else str
    if examples and examples[0].label is not None:
        rows = [(e.index, fmt(p), fmt(e.label)) for e, p in zip(examples, preds, strict=True)]
        write_tsv(paths.predictions(task.name, seed, split), ["index", "prediction", "gold"], rows)
    else:
        rows = [(e.index, fmt(p)) for e, p in zip(examples, preds, strict=True)]
        write_tsv(paths.predictions(task.name, seed, split), ["index", "prediction"], rows)


def load_task_model(run_dir: Path, task: str, seed: int | None = None) -> tuple[TaskModel, TaskSpec]:
    """Rebuild a trained model from a run directory (family, metadata, safetensors weights)."""
    paths = RunPaths(Path(run_dir))
    config = load_config(paths.config)
    spec = TASKS[task]
    seed = config.seeds[0] if seed is None else seed
    meta = read_json(paths.seed_dir(task, seed) / "model_meta.json")
    family = get_family(config.model)
    model = family.restore(spec, meta, config.family_options())
    load_weights(model.module, paths.weights(task, seed))
    return model, spec


def _train_one(family: ModelFamily, config: RunConfig, paths: RunPaths, spec: TaskSpec, seed: int,
               data_dir: Path, resume: bool) -> dict[str, Any]:
    train_examples = subsample(read_split(spec, "train", data_dir), config.max_train_examples)
    dev = {split: read_split(spec, split, data_dir) for split in spec.dev_splits}
    tests = {split: read_split(spec, split, data_dir) for split in spec.test_files if has_split(spec, split, data_dir)}
    every = train_examples + [e for group in (*dev.values(), *tests.values()) for e in group]
    model = family.build(spec, every, config.family_options(), seed)
    atomic_write_json(paths.seed_dir(spec.name, seed) / "model_meta.json", model.metadata())
    tconf = train_config(config, family, seed)
    outcome = train(
        model, spec, train_examples, dev, tconf,
        checkpoint_dir=paths.checkpoint(spec.name, seed), best_weights_path=paths.weights(spec.name, seed),
        resume=resume,
        on_epoch=lambda r: log.info("%s seed %d epoch %d: loss %.4f, %s", spec.name, seed, r["epoch"],
                                    r["train_loss"], ", ".join(f"{k} {r[k]:.2f}" for k in spec.metric_keys)),
    )
    save_weights(model.module, paths.weights(spec.name, seed))
    started = time.perf_counter()
    for split, examples in dev.items():
        _write_predictions(paths, spec, seed, split, examples, predict(model, spec, examples))
    for split, examples in tests.items():
        _write_predictions(paths, spec, seed, split, examples, predict(model, spec, examples))
    result = {
        "task": spec.name, "seed": seed, "metrics": outcome.best_metrics, "best_epoch": outcome.best_epoch,
        "epochs_run": len(outcome.history), "train_examples": len(train_examples),
        "train_seconds": outcome.train_seconds, "examples_per_second": outcome.examples_per_second,
        "predict_seconds": time.perf_counter() - started, "config": tconf.__dict__,
        "coverage": model.metadata().get("coverage"),
    }
    atomic_write_json(paths.history(spec.name, seed), outcome.history)
    atomic_write_json(paths.result(spec.name, seed), result)
    shutil.rmtree(paths.checkpoint(spec.name, seed), ignore_errors=True)
    return result


def _predict_ax(paths: RunPaths, config: RunConfig, seed: int, data_dir: Path) -> dict[str, Any] | None:
    """AX is predicted with the MNLI model: test predictions for the server, R3 on the labeled file.

    R3 is also kept per coarse category (the GLUE paper's Table 5 rows), so every run that trains MNLI says
    where its model fails without a separate ``gluebench diagnose``.
    """
    ax = TASKS["AX"]
    source = ax.predicted_by
    if source is None or not paths.weights(source, seed).is_file():
        return None
    model, _ = load_task_model(paths.root, source, seed)
    metrics: dict[str, float] = {}
    categories: dict[str, float] = {}
    for split in ("full", "test"):
        if not has_split(ax, split, data_dir):
            continue
        examples = read_split(ax, split, data_dir)
        preds = predict(model, TASKS[source], examples)
        _write_predictions(paths, ax, seed, split, examples, preds)
        if split == "full":
            metrics = compute_metrics(ax, preds, [e.label for e in examples])
            categories = {s.name: s.r3 for s in breakdown(examples, [str(p) for p in preds]) if s.group == "coarse"}
    result = {"task": "AX", "seed": seed, "metrics": metrics, "categories": categories, "predicted_by": source}
    atomic_write_json(paths.result("AX", seed), result)
    return result


def _aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = results[0]["metrics"].keys()
    mean = {k: statistics.fmean(r["metrics"][k] for r in results) for k in keys}
    std = {k: statistics.stdev([r["metrics"][k] for r in results]) if len(results) > 1 else 0.0 for k in keys}
    timing = {k: statistics.fmean(r.get(k, 0.0) for r in results)
              for k in ("train_seconds", "examples_per_second", "predict_seconds")}
    return {"mean": mean, "std": std, "per_seed": [r["metrics"] for r in results],
            "seeds": [r["seed"] for r in results], **timing,
            **{k: results[0][k] for k in ("predicted_by", "coverage", "train_examples") if k in results[0]},
            **({"categories": {c: statistics.fmean(r["categories"][c] for r in results)
                               for c in results[0]["categories"]}} if results[0].get("categories") else {})}


def _setup_logging(log_path: Path) -> logging.Handler:
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


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
    root = Path(config.output_dir) if config.output_dir else default_run_dir(config.model)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"--output-dir {root} is not empty; pass --resume to continue that run or pick another")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output-dir {root}: cannot create it ({exc.strerror})") from exc
    config.output_dir = str(root)
    paths = RunPaths(root)
    atomic_write_text(paths.config, config.to_yaml())
    return config, paths


def run(config: RunConfig, *, resume: bool = False,
        report: Callable[[str], None] | None = None) -> RunSummary:
    """Train and evaluate ``config.model`` on every requested task whose data is present."""
    config.validate()
    if not resume:
        get_family(config.model)  # an unknown model is an error before anything is written
    config, paths = prepare_run_dir(config, resume)
    family = get_family(config.model)  # on resume: the saved run's model, not the option's default
    handler = _setup_logging(paths.log)
    say = report or log.info
    try:
        tasks = resolve_tasks(config.tasks)
        data_dir = resolve_data_dir(config, tasks)
        summary = RunSummary(paths.root, config.model, list(config.seeds))
        if config.multitask:
            from gluebench.multitask import run_multitask

            run_multitask(family, config, paths, tasks, data_dir, summary, resume)
        for spec in tasks if not config.multitask else []:
            missing = missing_for_training(spec, data_dir)
            if missing:
                summary.skipped[spec.name] = f"missing {', '.join(missing)} in {data_dir}"
                say(f"skip {spec.name}: {summary.skipped[spec.name]}")
                continue
            results = []
            for seed in config.seeds:
                done = paths.result(spec.name, seed)
                if done.is_file():
                    results.append(read_json(done))
                    say(f"{spec.name} seed {seed}: already done, kept")
                    continue
                say(f"{spec.name} seed {seed}: training {config.model}")
                results.append(_train_one(family, config, paths, spec, seed, data_dir, resume))
            summary.tasks[spec.name] = _aggregate(results)
        ax_results = [r for seed in config.seeds if (r := _predict_ax(paths, config, seed, data_dir))]
        if ax_results:
            summary.tasks["AX"] = _aggregate(ax_results)
        elif "MNLI" not in summary.tasks:
            summary.skipped["AX"] = "predicted with the MNLI model, which this run did not train"
        _finish(summary, config, paths)
        return summary
    finally:
        log.removeHandler(handler)
        handler.close()


def _finish(summary: RunSummary, config: RunConfig, paths: RunPaths) -> None:
    score = glue_score({t: m for t, m in summary.metrics.items() if TASKS[t].in_glue_score})
    atomic_write_json(paths.metrics, summary.metrics)
    record = {
        "model": summary.model, "seeds": summary.seeds, "finished": now_iso(), "config": config.__dict__,
        "glue_score": score.value, "glue_score_label": score.label, "missing_tasks": list(score.missing),
        "tasks": summary.tasks, "skipped": summary.skipped,
    }
    atomic_write_json(paths.summary, record)
    summary.run_id = register_run({
        "run_dir": str(paths.root), "model": summary.model, "tasks": sorted(summary.tasks),
        "seeds": summary.seeds, "score": score.value, "score_label": score.label, "date": record["finished"],
    })
