"""`gluebench run --multitask`: one shared encoder, a head per task, batches sampled across tasks.

As in the GLUE paper's multi-task baselines: every update trains one task's batch, the task drawn with
probability proportional to ``n_task ** (1 / temperature)`` (temperature 1: proportional to the training set
size; larger values flatten toward uniform, so small tasks are seen more often). An epoch is as many updates
as the still-training tasks have batches. After each epoch every task is evaluated on dev; a task whose main
metric has not improved for ``patience`` epochs stops being sampled, and keeps the snapshot (shared encoder
and its head) of its best epoch, so each task ends with its own best model.

The run directory is the same as a single-task run's: per task and seed, ``model_meta.json``, the best
weights, dev and test predictions, ``history.json`` and ``result.json``, so `load_task_model`, scoring and
reporting read multitask runs unchanged. Resuming keeps every seed whose tasks all finished; an unfinished
seed is trained again from its start (a multitask seed has no per-epoch checkpoint).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from gluebench.config import RunConfig, TrainConfig
from gluebench.data.locate import has_split, missing_for_training
from gluebench.data.read import Example, read_split
from gluebench.errors import ConfigError
from gluebench.models.base import Feature, ModelFamily, TaskModel
from gluebench.runner import RunSummary, _aggregate, _write_predictions, subsample, train_config
from gluebench.runs import RunPaths, atomic_write_json, read_json
from gluebench.tasks import TaskSpec
from gluebench.training import LengthGroupedSampler, evaluate, label_targets, predict, save_weights

log = logging.getLogger("gluebench")


@dataclass
class _TaskState:
    """One task inside a multitask run: its data, features and early-stopping bookkeeping."""

    spec: TaskSpec
    model: TaskModel
    position: int  # the task's place in the run, part of its batch-order seed
    patience: int
    train: list[Example]
    dev: dict[str, list[Example]]
    tests: dict[str, list[Example]]
    features: list[Feature] = field(default_factory=list)
    targets: torch.Tensor | None = None
    dev_features: dict[str, tuple[list[Feature], list[Example]]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    seen: int = 0
    epoch_loss: float = 0.0  # summed over this epoch's examples of the task
    epoch_seen: int = 0
    batches: deque[list[int]] = field(default_factory=deque)
    cycles: int = 0

    @property
    def active(self) -> bool:
        return self.bad_epochs < self.patience


def sampling_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """Task probabilities proportional to ``size ** (1 / temperature)``."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


def run_multitask(family: ModelFamily, config: RunConfig, paths: RunPaths, tasks: list[TaskSpec], data_dir: Path,
                  summary: RunSummary, resume: bool) -> None:
    """Train all ``tasks`` together per seed and fill ``summary`` as `gluebench.runner.run` does for single tasks."""
    if not hasattr(family, "build_multitask"):
        raise ConfigError(f"--multitask needs a model with a shared encoder (glove-cbow, glove-bilstm, "
                          f"glove-transformer); {config.model} has none")
    ready: list[TaskSpec] = []
    for spec in tasks:
        missing = missing_for_training(spec, data_dir)
        if missing:
            summary.skipped[spec.name] = f"missing {', '.join(missing)} in {data_dir}"
            log.info("skip %s: %s", spec.name, summary.skipped[spec.name])
        else:
            ready.append(spec)
    if not ready:
        return
    results: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in ready}
    for seed in config.seeds:
        done = [paths.result(spec.name, seed) for spec in ready]
        if resume and all(path.is_file() for path in done):
            log.info("multitask seed %d: already done, kept", seed)
            seed_results = {spec.name: read_json(path) for spec, path in zip(ready, done, strict=True)}
        else:
            seed_results = _train_seed(family, config, paths, ready, seed, data_dir)
        for name, result in seed_results.items():
            results[name].append(result)
    for spec in ready:
        summary.tasks[spec.name] = _aggregate(results[spec.name])


def _train_seed(family: ModelFamily, config: RunConfig, paths: RunPaths, specs: list[TaskSpec], seed: int,
                data_dir: Path) -> dict[str, dict[str, Any]]:
    tconf = train_config(config, family, seed)
    states = _load_tasks(family, config, paths, specs, seed, data_dir, tconf.patience)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    modules = nn.ModuleDict({name: state.model.module for name, state in states.items()}).to(accelerator.device)
    for state in states.values():
        state.features = state.model.encode(state.train)
        state.targets = torch.tensor(label_targets(state.spec, state.train),
                                     dtype=torch.float32 if state.spec.is_regression else torch.long)
        state.dev_features = {split: (state.model.encode(examples), examples) for split, examples in state.dev.items()}

    params = [p for p in modules.parameters() if p.requires_grad]  # shared parameters appear once
    optimizer = torch.optim.AdamW(params, lr=tconf.lr, weight_decay=tconf.weight_decay)
    steps_per_epoch = sum(math.ceil(len(s.features) / tconf.batch_size) for s in states.values())
    total_steps = max(1, steps_per_epoch * tconf.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tconf.warmup_ratio * total_steps), total_steps)

    names = list(states)
    for epoch in range(1, tconf.epochs + 1):
        active = [name for name in names if states[name].active]
        if not active:
            break
        _train_epoch(states, active, modules, params, optimizer, scheduler, tconf, config, epoch, accelerator.device)
        for name in active:
            _evaluate_epoch(states[name], modules[name], accelerator, tconf, epoch, seed)
    return {name: _finish_task(states[name], modules[name], paths, seed, tconf, names) for name in names}


def _load_tasks(family: ModelFamily, config: RunConfig, paths: RunPaths, specs: list[TaskSpec], seed: int,
                data_dir: Path, patience: int) -> dict[str, _TaskState]:
    data: dict[str, tuple[list[Example], dict[str, list[Example]], dict[str, list[Example]]]] = {}
    for spec in specs:
        train = subsample(read_split(spec, "train", data_dir), config.max_train_examples)
        dev = {split: read_split(spec, split, data_dir) for split in spec.dev_splits}
        tests = {split: read_split(spec, split, data_dir) for split in spec.test_files
                 if has_split(spec, split, data_dir)}
        data[spec.name] = (train, dev, tests)
    every = {name: train + [e for group in (*dev.values(), *tests.values()) for e in group]
             for name, (train, dev, tests) in data.items()}
    models = family.build_multitask(specs, every, config.family_options(), seed)  # type: ignore[attr-defined]
    states = {}
    for position, spec in enumerate(specs):
        atomic_write_json(paths.seed_dir(spec.name, seed) / "model_meta.json", models[spec.name].metadata())
        train, dev, tests = data[spec.name]
        states[spec.name] = _TaskState(spec, models[spec.name], position, patience, train, dev, tests)
    return states


def _next_batch(state: _TaskState, tconf: TrainConfig, epoch: int) -> list[int]:
    """The task's next length-grouped batch; a task drawn more often than it has batches starts a new pass."""
    if not state.batches:
        lengths = [state.model.length(f) for f in state.features]
        seed = np.random.SeedSequence([tconf.seed, epoch, state.position, state.cycles]).generate_state(1)[0]
        sampler = LengthGroupedSampler(lengths, tconf.batch_size, shuffle=True, seed=int(seed))
        state.batches = deque(sampler.batches())
        state.cycles += 1
    return state.batches.popleft()


def _train_epoch(states: dict[str, _TaskState], active: list[str], modules: nn.ModuleDict, params: list[nn.Parameter],
                 optimizer: torch.optim.Optimizer, scheduler: Any, tconf: TrainConfig, config: RunConfig,
                 epoch: int, device: torch.device) -> None:
    rng = np.random.default_rng([tconf.seed, epoch])
    torch.manual_seed(tconf.seed * 1000 + epoch)
    probabilities = sampling_probabilities([len(states[n].features) for n in active], tconf.temperature)
    steps = sum(math.ceil(len(states[n].features) / tconf.batch_size) for n in active)
    modules.train()
    for name in active:
        states[name].batches.clear()
        states[name].cycles = 0
        states[name].epoch_loss, states[name].epoch_seen = 0.0, 0
    order = rng.choice(len(active), size=steps, p=probabilities)
    bar = tqdm(order, desc=f"multitask epoch {epoch}/{tconf.epochs}", leave=False, disable=not tconf.progress)
    for choice in bar:
        name = active[choice]
        state = states[name]
        started = time.perf_counter()
        indices = _next_batch(state, tconf, epoch)
        batch = {k: v.to(device) for k, v in state.model.collate([state.features[i] for i in indices]).items()}
        assert state.targets is not None
        labels = state.targets[indices].to(device)
        output = modules[name](**batch)
        if state.spec.is_regression:
            loss = nn.functional.mse_loss(output.reshape(-1).float(), labels)
        else:
            loss = nn.functional.cross_entropy(output.float(), labels)
        loss.backward()
        if tconf.max_grad_norm:
            nn.utils.clip_grad_norm_(params, tconf.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.seconds += time.perf_counter() - started
        state.seen += len(indices)
        state.epoch_loss += loss.item() * len(indices)
        state.epoch_seen += len(indices)


def _evaluate_epoch(state: _TaskState, module: nn.Module, accelerator: Accelerator, tconf: TrainConfig, epoch: int,
                    seed: int) -> None:
    metrics, _ = evaluate(state.model, state.spec, state.dev_features, accelerator, tconf.eval_batch_size)
    state.history.append({"epoch": epoch, "train_loss": state.epoch_loss / max(state.epoch_seen, 1),
                          "seconds": state.seconds, "examples_seen": state.seen, **metrics})
    main = metrics[state.spec.main_metric]
    if main > state.best_metric:
        state.best_metric, state.best_epoch, state.bad_epochs = main, epoch, 0
        state.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    else:
        state.bad_epochs += 1
    log.info("multitask %s seed %d epoch %d: %s%s", state.spec.name, seed, epoch,
             ", ".join(f"{k} {metrics[k]:.2f}" for k in state.spec.metric_keys),
             "" if state.active else " (stopped)")


def _finish_task(state: _TaskState, module: nn.Module, paths: RunPaths, seed: int, tconf: TrainConfig,
                 together: list[str]) -> dict[str, Any]:
    """Load the task's best snapshot (shared encoder included), then write what a single-task run writes."""
    spec = state.spec
    if state.best_state is not None:
        module.load_state_dict(state.best_state)
    save_weights(module, paths.weights(spec.name, seed))
    started = time.perf_counter()
    for split, examples in (*state.dev.items(), *state.tests.items()):
        _write_predictions(paths, spec, seed, split, examples, predict(state.model, spec, examples))
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
    result = {
        "task": spec.name, "seed": seed, "metrics": {k: best[k] for k in spec.metric_keys if k in best},
        "best_epoch": state.best_epoch, "epochs_run": len(state.history), "train_examples": len(state.train),
        "train_seconds": state.seconds, "examples_per_second": state.seen / state.seconds if state.seconds else 0.0,
        "predict_seconds": time.perf_counter() - started, "config": tconf.__dict__,
        "coverage": state.model.metadata().get("coverage"), "multitask": together,
    }
    atomic_write_json(paths.history(spec.name, seed), state.history)
    atomic_write_json(paths.result(spec.name, seed), result)
    return result
