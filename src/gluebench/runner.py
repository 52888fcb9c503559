"""`gluebench run`: train one model per task and seed (or one multitask model per seed), evaluate, predict
test, write the run directory.

Family-agnostic: it asks `gluebench.models.get_family` for a builder, `gluebench.training` for the loop and
`gluebench.artifacts` for everything a run reads and writes. Each (task, seed) is finished when its
``result.json`` exists, so ``resume`` skips finished work and continues an unfinished task from its last
checkpoint. Under ``accelerate launch`` every process trains and predicts its share, and only the main
process writes: one run directory, one index entry, every file written once.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebench.analysis.diagnostic import breakdown
from gluebench.artifacts import (
    aggregate,
    load_task_model,
    predict_splits,
    read_task,
    task_result,
    training_problems,
    write_predictions,
    write_task_outputs,
)
from gluebench.config import RunConfig, TrainConfig, load_config
from gluebench.data.download import download_glue
from gluebench.data.locate import default_glue_cache, find_data_dir, has_split
from gluebench.data.read import read_split
from gluebench.errors import ConfigError, DataMissingError
from gluebench.metrics import compute_metrics, glue_score
from gluebench.models import ModelFamily, get_family
from gluebench.multitask import check_multitask, train_seed
from gluebench.runs import (
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    default_run_dir,
    now_iso,
    read_json,
    register_run,
)
from gluebench.tasks import TASKS, TaskSpec, predicted_tasks, resolve_tasks
from gluebench.training import is_main_process, predict, process_state, share_from_main, train, wait_for_everyone

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
        data_dir = default_glue_cache()
        log.info("no GLUE data found; downloading %s into %s", ", ".join(t.name for t in tasks), data_dir)
        if is_main_process():
            download_glue(tasks, data_dir)
        wait_for_everyone()
    else:
        log.info("GLUE data: %s (%s)", data_dir, source)
    return data_dir


def train_config(config: RunConfig, family: ModelFamily, seed: int) -> TrainConfig:
    """The loop's options for one seed, the family's defaults filled in."""
    return config.train_config(seed).with_family_defaults(
        family.default_epochs, family.default_batch_size, family.default_lr, family.default_warmup)


def runnable_tasks(config: RunConfig, tasks: list[TaskSpec], data_dir: Path,
                   say: Callable[[str], None]) -> tuple[list[TaskSpec], dict[str, str]]:
    """The tasks to train and the skipped ones with why.

    A task the user named that cannot run is an error before any training starts; only ``all`` skips the
    tasks whose files are not there, and says how to get them.
    """
    named = config.tasks != ["all"]
    ready: list[TaskSpec] = []
    skipped: dict[str, str] = {}
    for spec in tasks:
        problems = training_problems(spec, data_dir)
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


def _train_one(family: ModelFamily, config: RunConfig, paths: RunPaths, spec: TaskSpec, seed: int,
               data_dir: Path, resume: bool) -> dict[str, Any]:
    main = is_main_process()
    examples = read_task(spec, data_dir, config.max_train_examples)
    model = family.build(spec, examples.every(), config.family_options(), seed)
    if main:
        atomic_write_json(paths.seed_dir(spec.name, seed) / "model_meta.json", model.metadata())
    tconf = train_config(config, family, seed)
    outcome = train(
        model, spec, examples.train, examples.dev, tconf,
        checkpoint_dir=paths.checkpoint(spec.name, seed), best_weights_path=paths.weights(spec.name, seed),
        resume=resume,
        on_epoch=lambda r: log.info("%s seed %d epoch %d: loss %.4f, %s", spec.name, seed, r["epoch"],
                                    r["train_loss"], ", ".join(f"{k} {r[k]:.2f}" for k in spec.metric_keys)),
    )
    if outcome.resumed_from:
        log.info("%s seed %d: resumed from epoch %d, step %d", spec.name, seed, outcome.resumed_from["epoch"],
                 outcome.resumed_from["global_step"])
    started = time.perf_counter()
    predict_splits(paths, model, spec, seed, examples, write=main)
    result = task_result(spec, seed, outcome, examples, tconf, model, time.perf_counter() - started)
    if main:
        write_task_outputs(paths, spec, seed, outcome, result)
        shutil.rmtree(paths.checkpoint(spec.name, seed), ignore_errors=True)
    return result


def _predict_predicted(paths: RunPaths, source: TaskSpec, seed: int, data_dir: Path) -> list[dict[str, Any]]:
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


def _setup_logging(log_path: Path) -> logging.Handler | None:
    if not is_main_process():
        return None
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


def run(config: RunConfig, *, resume: bool = False,
        report: Callable[[str], None] | None = None) -> RunSummary:
    """Train and evaluate ``config.model`` on every requested task (``all``: every task whose data is present)."""
    config.validate()
    if not resume:
        family = get_family(config.model)  # an unknown model is an error before anything is written
        if config.multitask:
            check_multitask(family)
    config, paths = prepare_run_dir(config, resume)
    family = get_family(config.model)  # on resume: the saved run's model, not the option's default
    handler = _setup_logging(paths.log)
    say = report if report is not None and is_main_process() else log.info
    try:
        tasks = resolve_tasks(config.tasks)
        data_dir = resolve_data_dir(config, tasks)
        ready, skipped = runnable_tasks(config, tasks, data_dir, say)
        summary = RunSummary(paths.root, config.model, list(config.seeds), skipped=skipped)
        results: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in ready}
        for seed in config.seeds:
            _train_seed(family, config, paths, ready, seed, data_dir, resume, say, results)
        for name, task_results in results.items():
            summary.tasks[name] = aggregate(task_results)
        for source in ready:
            predicted = [r for seed in config.seeds for r in _predict_predicted(paths, source, seed, data_dir)]
            for name in {r["task"] for r in predicted}:
                summary.tasks[name] = aggregate([r for r in predicted if r["task"] == name])
        for target in tasks_predicted_elsewhere(ready):
            summary.skipped[target.name] = (f"predicted with the {target.predicted_by} model, which this run "
                                            "did not train")
        if is_main_process():
            _finish(summary, config, paths)
        wait_for_everyone()
        return summary
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def tasks_predicted_elsewhere(trained: list[TaskSpec]) -> list[TaskSpec]:
    """Tasks predicted by another task's model (AX by MNLI's) whose source this run did not train."""
    names = {t.name for t in trained}
    return [t for t in TASKS.values() if t.predicted_by is not None and t.predicted_by not in names]


def _train_seed(family: ModelFamily, config: RunConfig, paths: RunPaths, ready: list[TaskSpec], seed: int,
                data_dir: Path, resume: bool, say: Callable[[str], None],
                results: dict[str, list[dict[str, Any]]]) -> None:
    """One seed: finished (task, seed) pairs are read back, never retrained; the rest are trained."""
    done = {spec.name: paths.result(spec.name, seed) for spec in ready}
    if config.multitask:
        if all(path.is_file() for path in done.values()):
            say(f"multitask seed {seed}: already done, kept")
            seed_results = {name: read_json(path) for name, path in done.items()}
        else:
            say(f"multitask seed {seed}: training {config.model} on {', '.join(done)}")
            seed_results = train_seed(family, config, train_config(config, family, seed), paths, ready, seed,
                                      data_dir, resume)
        for name, result in seed_results.items():
            results[name].append(result)
        return
    for spec in ready:
        if done[spec.name].is_file():
            results[spec.name].append(read_json(done[spec.name]))
            say(f"{spec.name} seed {seed}: already done, kept")
            continue
        say(f"{spec.name} seed {seed}: training {config.model}")
        results[spec.name].append(_train_one(family, config, paths, spec, seed, data_dir, resume))


def _finish(summary: RunSummary, config: RunConfig, paths: RunPaths) -> None:
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
