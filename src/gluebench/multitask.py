"""`gluebench run --multitask`: one shared encoder, a head per task, trained by the one training loop.

As in the GLUE paper's multi-task baselines, every update trains a batch of one task drawn with probability
proportional to ``n_task ** (1 / temperature)`` (`gluebench.training.TaskSampler`); after each epoch every
task is evaluated on dev, and a task whose main metric has not improved for ``patience`` epochs stops being
sampled and keeps the snapshot (shared encoder and its head) of its best epoch, so each task ends with its
own best model.

The run directory is the same as a single-task run's: per task and seed, ``model_meta.json``, the best
weights, dev and test predictions, ``history.json`` and ``result.json``, so loading, scoring and reporting
read multitask runs unchanged. The seed's checkpoint (``multitask/seed-S/checkpoint``) makes a killed run
resume where it stopped, to the same result.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gluebench.artifacts import TaskExamples, predict_splits, read_task, task_result, write_task_outputs
from gluebench.config import RunConfig, TrainConfig
from gluebench.errors import ConfigError
from gluebench.models import Capability, ModelFamily
from gluebench.runs import RunPaths, atomic_write_json
from gluebench.tasks import TaskSpec
from gluebench.training import TaskData, is_main_process, load_weights_bytes, train_tasks

log = logging.getLogger("gluebench")


def check_multitask(family: ModelFamily) -> None:
    if Capability.MULTITASK not in family.capabilities:
        raise ConfigError(f"--multitask needs a model with a shared encoder; {family.name} has none "
                          "(glove-cbow, glove-bilstm and glove-transformer have one)")


def train_seed(family: ModelFamily, config: RunConfig, tconf: TrainConfig, paths: RunPaths, specs: list[TaskSpec],
               seed: int, data_dir: Path, resume: bool,
               on_epoch: Callable[[str, int, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train every task of ``specs`` together for one seed and write each task's outputs; their results.

    ``on_epoch(task, seed, record)`` is called after each task's dev evaluation (main process only).
    """
    check_multitask(family)
    main = is_main_process()
    examples: dict[str, TaskExamples] = {spec.name: read_task(spec, data_dir, config.max_train_examples)
                                         for spec in specs}
    models = family.build_multitask(specs, {name: e.every() for name, e in examples.items()},
                                    config.family_options(), seed)
    tasks = []
    for spec in specs:
        if main:
            atomic_write_json(paths.seed_dir(spec.name, seed) / "model_meta.json", models[spec.name].metadata())
        tasks.append(TaskData(spec, models[spec.name], examples[spec.name].train, examples[spec.name].dev,
                              paths.weights(spec.name, seed) if main else None))
    checkpoint = paths.multitask_checkpoint(seed)
    def epoch_done(name: str, record: dict[str, Any]) -> None:
        log.info("multitask %s seed %d epoch %d: %s", name, seed, record["epoch"], _shown(specs, name, record))
        if on_epoch is not None:
            on_epoch(name, seed, record)

    outcomes = train_tasks(tasks, tconf, checkpoint_dir=checkpoint, resume=resume, on_epoch=epoch_done)
    together = [spec.name for spec in specs]
    results = {}
    for spec in specs:
        model = models[spec.name]
        best = outcomes[spec.name].best_weights
        if best is not None:
            load_weights_bytes(model.module, best)  # the task's best snapshot, shared encoder included
        started = time.perf_counter()
        predict_splits(paths, model, spec, seed, examples[spec.name], write=main,
                       batch_size=tconf.eval_batch_size)
        result = task_result(spec, seed, outcomes[spec.name], examples[spec.name], tconf, model,
                             time.perf_counter() - started, multitask=together)
        if main:
            write_task_outputs(paths, spec, seed, outcomes[spec.name], result)
        results[spec.name] = result
    if main:
        shutil.rmtree(checkpoint.parent, ignore_errors=True)
    return results


def _shown(specs: list[TaskSpec], name: str, record: dict[str, Any]) -> str:
    spec = next(s for s in specs if s.name == name)
    return ", ".join(f"{k} {record[k]:.2f}" for k in spec.metric_keys)
