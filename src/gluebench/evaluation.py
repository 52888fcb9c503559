"""`gluebench evaluate`: put a model gluebench did not train (or a finished run's models) through GLUE.

Three kinds of model, one output: an ordinary run directory (dev metrics, dev and test predictions,
``run.json``, an index entry), so ``score``, ``submit``, ``leaderboard``, ``report`` and ``diagnose`` read it
as they read a trained run.

- ``--model hf:<id or path>``: a checkpoint already fine-tuned for the task, with its own head; its
  ``id2label`` is matched to the task's labels by name (``--label-map`` where it cannot be);
- ``--model DIR``: a directory `gluebench export` wrote (any family);
- ``RUN_DIR``: the saved models of a finished run, e.g. on data the run did not see;
- from Python, any callable from texts (or text pairs) to logits or scores (`callable_predictor`).

Prediction is inference only: length-sorted batches, the cached tokenization, bf16 with
``--mixed-precision bf16``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gluebench.artifacts import (
    EXPORT_MANIFEST,
    RunSummary,
    TaskExamples,
    aggregate,
    finish_run,
    load_task_model,
    log_to_file,
    predict_dependents,
    prepare_run_dir,
    read_task,
    resolve_data_dir,
    runnable_tasks,
    write_predictions,
)
from gluebench.config import RunConfig, load_config
from gluebench.data.read import Example, Label
from gluebench.errors import ConfigError, GluebenchError
from gluebench.metrics import compute_metrics
from gluebench.models import Capability, TaskModel, get_family
from gluebench.runs import RunPaths, atomic_write_bytes, atomic_write_json, read_json
from gluebench.tasks import TaskSpec, get_task, resolve_tasks
from gluebench.training import make_accelerator, outputs_to_labels, predict_outputs, resolve_mixed_precision

log = logging.getLogger("gluebench")

# (texts, or (text_a, text_b) pairs) -> logits [N, C] or scores [N]
TextPredictor = Callable[[list[str] | list[tuple[str, str]]], Any]


def parse_label_map(entries: Sequence[str], task: TaskSpec) -> dict[int, str] | None:
    """``[TASK:]ID=LABEL`` entries that apply to ``task`` as {output: label}; None when none do."""
    mapping: dict[int, str] = {}
    for entry in entries:
        scope, _, pair = entry.rpartition(":") if ":" in entry.split("=", 1)[0] else ("", "", entry)
        if scope and get_task(scope).name != task.name:
            continue
        output, sep, label = pair.partition("=")
        if not sep or not output.strip().isdigit() or not label.strip():
            raise ConfigError(f"option 'label_map': {entry!r} is not [TASK:]ID=LABEL (e.g. 0=entailment)")
        mapping[int(output)] = label.strip()
    return mapping or None


@dataclass
class Evaluated:
    """One task's model to evaluate and where it came from (written to ``model_meta.json`` when reloadable)."""

    spec: TaskSpec
    seed: int
    outputs: Callable[[list[Example]], torch.Tensor]  # raw logits/scores in the order of the examples
    metadata: dict[str, Any] | None = None


def _model_outputs(model: TaskModel, spec: TaskSpec, config: RunConfig) -> Callable[[list[Example]], torch.Tensor]:
    accelerator = make_accelerator(resolve_mixed_precision(config.mixed_precision, [model]))
    model.module.to(accelerator.device)

    def outputs(examples: list[Example]) -> torch.Tensor:
        return predict_outputs(model, spec, model.encode(examples), accelerator, config.eval_batch_size)

    return outputs


def callable_predictor(predictor: TextPredictor, spec: TaskSpec,
                       batch_size: int = 128) -> Callable[[list[Example]], torch.Tensor]:
    """Outputs of a user's own model: a callable from a batch of texts (or pairs) to logits or scores."""
    def outputs(examples: list[Example]) -> torch.Tensor:
        pieces = []
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            texts = ([(e.text_a, e.text_b or "") for e in batch] if spec.is_pair else [e.text_a for e in batch])
            result = torch.as_tensor(np.asarray(predictor(texts), dtype=np.float32))
            expected = (len(batch),) if spec.is_regression else (len(batch), spec.num_labels)
            if spec.is_regression and result.shape == (len(batch), 1):
                result = result[:, 0]
            if tuple(result.shape) != expected:
                raise GluebenchError(f"{spec.name}: the model returned shape {tuple(result.shape)} for "
                                     f"{len(batch)} examples; expected {expected}")
            pieces.append(result)
        return torch.cat(pieces) if pieces else torch.empty(0)

    return outputs


def _checkpoint_models(config: RunConfig, specs: list[TaskSpec]) -> list[Evaluated]:
    """``--model hf:...`` (fine-tuned elsewhere) or ``--model DIR`` (a gluebench export), one per task."""
    source = Path(config.model)
    if (source / EXPORT_MANIFEST).is_file():
        exported_as = manifest(source)
        family = get_family(exported_as["family"])
        exported = {name: get_task(name) for name in exported_as["tasks"]}
        evaluated = []
        for spec in specs:
            if spec.name not in exported:
                raise ConfigError(f"--model {source}: exported for {', '.join(exported)}, not {spec.name}")
            model = family.load_exported(spec, source / spec.name, config.family_options())
            evaluated.append(Evaluated(spec, 1, _model_outputs(model, spec, config), None))
        return evaluated
    family = get_family(config.model)
    if Capability.FINETUNED not in family.capabilities:
        raise ConfigError(f"--model {config.model}: evaluate takes hf:<fine-tuned checkpoint>, a directory "
                          "`gluebench export` wrote, or a run directory")
    evaluated = []
    for spec in specs:
        model = family.load_finetuned(spec, config.family_options(), parse_label_map(config.label_map, spec))
        evaluated.append(Evaluated(spec, 1, _model_outputs(model, spec, config), model.metadata()))
    return evaluated


def _run_models(run_dir: Path, specs: list[TaskSpec], config: RunConfig) -> list[Evaluated]:
    """Every saved (task, seed) model of a finished run, for the tasks asked for."""
    paths = RunPaths(run_dir)
    saved = load_config(paths.config)
    evaluated = []
    for spec in specs:
        for seed in saved.seeds:
            if not paths.weights(spec.name, seed).is_file():
                continue
            model, _ = load_task_model(run_dir, spec.name, seed)
            meta = read_json(paths.seed_dir(spec.name, seed) / "model_meta.json")
            evaluated.append(Evaluated(spec, seed, _model_outputs(model, spec, config), meta))
    if not evaluated:
        raise GluebenchError(f"no saved model of {', '.join(s.name for s in specs)} in this run", path=run_dir)
    return evaluated


def evaluate(config: RunConfig, *, run_dir: Path | None = None, predictor: TextPredictor | None = None,
             report: Callable[[str], None] | None = None) -> RunSummary:
    """Evaluate on dev and predict test without training; write an ordinary run directory.

    ``run_dir``: re-evaluate that run's saved models; ``predictor``: a user's own callable; otherwise
    ``config.model`` (hf:<checkpoint> or an export directory).
    """
    config.validate()
    say = report or log.info
    if run_dir is not None:
        saved = load_config(RunPaths(run_dir).config)
        config.model, config.seeds = saved.model, saved.seeds
        if config.tasks == ["all"]:
            config.tasks = list(read_json(RunPaths(run_dir).summary)["tasks"])
    elif predictor is None and config.tasks == ["all"]:
        raise ConfigError("--tasks: name the task(s) this checkpoint was fine-tuned for")
    tasks = [t for t in resolve_tasks(config.tasks) if t.predicted_by is None]
    data_dir = resolve_data_dir(config, tasks)
    specs, skipped = runnable_tasks(config, tasks, data_dir, say, train=False)
    if predictor is not None:
        config.model = "python:" + getattr(predictor, "__name__", type(predictor).__name__)
        models = [Evaluated(spec, 1, callable_predictor(predictor, spec, config.eval_batch_size)) for spec in specs]
    elif run_dir is not None:
        models = _run_models(run_dir, specs, config)
    else:
        models = _checkpoint_models(config, specs)
    config.seeds = sorted({m.seed for m in models})
    config, paths = prepare_run_dir(config, resume=False)
    handler = log_to_file(paths.log)
    try:
        results: dict[str, list[dict[str, Any]]] = {}
        for item in models:
            say(f"{item.spec.name} seed {item.seed}: evaluating {config.model}")
            results.setdefault(item.spec.name, []).append(_evaluate_one(item, paths, data_dir, run_dir))
        summary = RunSummary(paths.root, config.model, config.seeds, skipped=skipped)
        for name, task_results in results.items():
            summary.tasks[name] = aggregate(task_results)
        for spec in specs:
            if (paths.seed_dir(spec.name, config.seeds[0]) / "model_meta.json").is_file():
                predicted = [r for seed in config.seeds for r in predict_dependents(paths, spec, seed, data_dir)]
                for name in {r["task"] for r in predicted}:
                    summary.tasks[name] = aggregate([r for r in predicted if r["task"] == name])
        finish_run(summary, config, paths)
        return summary
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def _evaluate_one(item: Evaluated, paths: RunPaths, data_dir: Path, run_dir: Path | None) -> dict[str, Any]:
    spec, seed = item.spec, item.seed
    examples: TaskExamples = read_task(spec, data_dir, None, train=False)
    if item.metadata is not None:  # so load_task_model (diagnose, analysis, AX) finds the model again
        atomic_write_json(paths.seed_dir(spec.name, seed) / "model_meta.json", item.metadata)
        if run_dir is not None and item.metadata.get("weights") != "source":
            weights = RunPaths(run_dir).weights(spec.name, seed).read_bytes()
            atomic_write_bytes(paths.weights(spec.name, seed), weights)
    metrics: dict[str, float] = {}
    started, count = time.perf_counter(), 0
    for split, group in (*examples.dev.items(), *examples.tests.items()):
        predictions: list[Label] = outputs_to_labels(spec, item.outputs(group))
        count += len(group)
        write_predictions(paths, spec, seed, split, group, predictions)
        if split in examples.dev:
            metrics.update(compute_metrics(spec, predictions, [e.label for e in group], spec.dev_splits[split]))
    seconds = time.perf_counter() - started
    result = {"task": spec.name, "seed": seed, "metrics": metrics, "predict_seconds": seconds,
              "examples_per_second": count / seconds if seconds else 0.0, "evaluated": True}
    atomic_write_json(paths.result(spec.name, seed), result)
    return result


def manifest(directory: Path) -> dict[str, Any]:
    """An export directory's manifest (family, tasks, metrics, settings)."""
    try:
        data = json.loads((directory / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GluebenchError(f"not a gluebench export ({exc})", path=directory) from exc
    return dict(data)
