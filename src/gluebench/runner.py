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
from pathlib import Path
from typing import Any

from gluebench.artifacts import (
    RunSummary,
    aggregate,
    finish_run,
    log_to_file,
    predict_dependents,
    predict_splits,
    prepare_run_dir,
    read_task,
    resolve_data_dir,
    runnable_tasks,
    task_result,
    write_task_outputs,
)
from gluebench.config import RunConfig, TrainConfig
from gluebench.models import ModelFamily, get_family
from gluebench.multitask import check_multitask, train_seed
from gluebench.runs import (
    RunPaths,
    atomic_write_json,
    read_json,
)
from gluebench.tasks import TASKS, TaskSpec, resolve_tasks
from gluebench.training import is_main_process, train, wait_for_everyone

log = logging.getLogger("gluebench")


def train_config(config: RunConfig, family: ModelFamily, seed: int) -> TrainConfig:
    """The loop's options for one seed, the family's defaults filled in."""
    return config.train_config(seed).with_family_defaults(family.training_defaults(config))


EpochReport = Callable[[str, int, dict[str, Any]], None]  # (task, seed, the epoch's record) after each dev evaluation


def _train_one(family: ModelFamily, config: RunConfig, paths: RunPaths, spec: TaskSpec, seed: int,
               data_dir: Path, resume: bool, on_epoch: EpochReport | None) -> dict[str, Any]:
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
        on_epoch=lambda r: _epoch_done(spec, seed, r, on_epoch),
    )
    if outcome.resumed_from:
        log.info("%s seed %d: resumed from epoch %d, step %d", spec.name, seed, outcome.resumed_from["epoch"],
                 outcome.resumed_from["global_step"])
    started = time.perf_counter()
    predict_splits(paths, model, spec, seed, examples, write=main, batch_size=tconf.eval_batch_size)
    result = task_result(spec, seed, outcome, examples, tconf, model, time.perf_counter() - started)
    if main:
        write_task_outputs(paths, spec, seed, outcome, result)
        shutil.rmtree(paths.checkpoint(spec.name, seed), ignore_errors=True)
    return result


def _epoch_done(spec: TaskSpec, seed: int, record: dict[str, Any], on_epoch: EpochReport | None) -> None:
    log.info("%s seed %d epoch %d: loss %.4f, %s", spec.name, seed, record["epoch"], record["train_loss"],
             ", ".join(f"{k} {record[k]:.2f}" for k in spec.metric_keys))
    if on_epoch is not None:
        on_epoch(spec.name, seed, record)


def run(config: RunConfig, *, resume: bool = False, report: Callable[[str], None] | None = None,
        on_epoch: EpochReport | None = None) -> RunSummary:
    """Train and evaluate ``config.model`` on every requested task (``all``: every task whose data is present).

    ``on_epoch(task, seed, record)`` is called on the main process after each epoch's dev evaluation (a sweep
    reports to its pruner there); an exception it raises ends the run where it stands, resumable.
    """
    config.validate()
    if not resume:
        family = get_family(config.model)  # an unknown model is an error before anything is written
        if config.multitask:
            check_multitask(family)
    config, paths = prepare_run_dir(config, resume)
    family = get_family(config.model)  # on resume: the saved run's model, not the option's default
    handler = log_to_file(paths.log)
    say = report if report is not None and is_main_process() else log.info
    try:
        tasks = resolve_tasks(config.tasks)
        data_dir = resolve_data_dir(config, tasks)
        ready, skipped = runnable_tasks(config, tasks, data_dir, say)
        summary = RunSummary(paths.root, config.model, list(config.seeds), skipped=skipped)
        results: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in ready}
        for seed in config.seeds:
            _train_seed(family, config, paths, ready, seed, data_dir, resume, say, results, on_epoch)
        for name, task_results in results.items():
            summary.tasks[name] = aggregate(task_results)
        for source in ready:
            predicted = [r for seed in config.seeds for r in predict_dependents(paths, source, seed, data_dir)]
            for name in {r["task"] for r in predicted}:
                summary.tasks[name] = aggregate([r for r in predicted if r["task"] == name])
        for target in tasks_predicted_elsewhere(ready):
            summary.skipped[target.name] = (f"predicted with the {target.predicted_by} model, which this run "
                                            "did not train")
        if is_main_process():
            finish_run(summary, config, paths)
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
                results: dict[str, list[dict[str, Any]]], on_epoch: EpochReport | None) -> None:
    """One seed: finished (task, seed) pairs are read back, never retrained; the rest are trained."""
    done = {spec.name: paths.result(spec.name, seed) for spec in ready}
    if config.multitask:
        if all(path.is_file() for path in done.values()):
            say(f"multitask seed {seed}: already done, kept")
            seed_results = {name: read_json(path) for name, path in done.items()}
        else:
            say(f"multitask seed {seed}: training {config.model} on {', '.join(done)}")
            seed_results = train_seed(family, config, train_config(config, family, seed), paths, ready, seed,
                                      data_dir, resume, on_epoch)
        for name, result in seed_results.items():
            results[name].append(result)
        return
    for spec in ready:
        if done[spec.name].is_file():
            results[spec.name].append(read_json(done[spec.name]))
            say(f"{spec.name} seed {seed}: already done, kept")
            continue
        say(f"{spec.name} seed {seed}: training {config.model}")
        results[spec.name].append(_train_one(family, config, paths, spec, seed, data_dir, resume, on_epoch))
