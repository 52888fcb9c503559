"""One training loop for every model family, on Hugging Face accelerate.

accelerate gives device placement, mixed precision and data-parallel training (``accelerate launch``)
for free; this module adds what GLUE fine-tuning needs around it: batches grouped by length (dynamic
padding wastes little), warmup + linear decay, gradient accumulation, early stopping on the task's main
metric, and a checkpoint after every epoch that ``resume`` continues from to the same result. Resuming is
exact because every epoch reseeds its shuffling and dropout from ``(seed, epoch)``, so an epoch run after a
restart is the same epoch an uninterrupted run would have run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from gluebench.data.read import Example, Label
from gluebench.metrics import compute_metrics
from gluebench.models.base import Batch, Feature, TaskModel
from gluebench.runs import atomic_write_bytes, atomic_write_json
from gluebench.tasks import TaskSpec


@dataclass
class TrainConfig:
    """Optimisation settings of one task's training."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    grad_accum: int = 1
    patience: int = 2  # epochs without improvement of the main metric before stopping
    max_grad_norm: float = 1.0
    seed: int = 1
    eval_batch_size: int = 128
    mixed_precision: str = "no"  # "no", "fp16", "bf16"
    progress: bool = True


@dataclass
class TrainOutcome:
    """What training produced: per-epoch history, the best epoch's dev metrics and throughput."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, float]
    train_seconds: float
    train_examples: int
    examples_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.examples_per_second = self.train_examples / self.train_seconds if self.train_seconds else 0.0


class LengthGroupedSampler(Sampler[list[int]]):
    """Batches of similar length: sort within shuffled chunks of 50 batches, then shuffle the batches.

    Cuts padding to a few percent while keeping batches random; the order depends only on ``seed``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            return [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(n)
        chunk = self.batch_size * 50
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches.extend(part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size))
        rng.shuffle(batches)  # type: ignore[arg-type]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def label_targets(task: TaskSpec, examples: Sequence[Example]) -> list[float] | list[int]:
    if task.is_regression:
        return [float(e.label) for e in examples]  # type: ignore[arg-type]
    return [task.label_index(str(e.label)) for e in examples]


def _collate_fn(model: TaskModel, regression: bool) -> Callable[[list[tuple[Feature, Any]]], Batch]:
    def collate(items: list[tuple[Feature, Any]]) -> Batch:
        batch = model.collate([feature for feature, _ in items])
        labels = [label for _, label in items]
        if labels[0] is not None:
            batch["labels"] = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)
        return batch

    return collate


def make_loader(
    model: TaskModel,
    task: TaskSpec,
    features: Sequence[Feature],
    labels: Sequence[Any] | None,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
) -> DataLoader:
    items = list(zip(features, labels if labels is not None else [None] * len(features), strict=True))
    sampler = LengthGroupedSampler([model.length(f) for f in features], batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(items, batch_sampler=sampler, collate_fn=_collate_fn(model, task.is_regression))  # type: ignore[arg-type]


def _loss(task: TaskSpec, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return nn.functional.mse_loss(output.view(-1).float(), labels)
    return nn.functional.cross_entropy(output.float(), labels)


def outputs_to_labels(task: TaskSpec, outputs: torch.Tensor) -> list[Label]:
    """Model outputs to predictions: label strings, or scores clipped to the task's range."""
    if task.is_regression:
        low, high = task.label_range or (-math.inf, math.inf)
        return [float(v) for v in outputs.view(-1).float().clamp(low, high).tolist()]
    assert task.labels is not None
    return [task.labels[i] for i in outputs.argmax(dim=-1).tolist()]


def predict_outputs(
    model: TaskModel, task: TaskSpec, features: Sequence[Feature], accelerator: Accelerator, batch_size: int = 128
) -> torch.Tensor:
    """Raw outputs (logits or scores) in the order of ``features``."""
    sampler = LengthGroupedSampler([model.length(f) for f in features], batch_size, shuffle=False)
    order = [i for batch in sampler.batches() for i in batch]
    loader = make_loader(model, task, features, None, batch_size, shuffle=False)
    loader = accelerator.prepare_data_loader(loader)
    module = model.module
    module.eval()
    chunks = []
    with torch.no_grad():
        for batch in loader:
            out = module(**batch)
            chunks.append(accelerator.gather_for_metrics(out).float().cpu())
    outputs = torch.cat(chunks)
    restored = torch.empty_like(outputs)
    restored[torch.tensor(order)] = outputs
    return restored


def predict(
    model: TaskModel, task: TaskSpec, examples: Sequence[Example], accelerator: Accelerator | None = None,
    batch_size: int = 128,
) -> list[Label]:
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    features = model.encode(examples)
    return outputs_to_labels(task, predict_outputs(model, task, features, accelerator, batch_size))


def evaluate(
    model: TaskModel,
    task: TaskSpec,
    dev: dict[str, tuple[list[Feature], list[Example]]],
    accelerator: Accelerator,
    batch_size: int,
) -> tuple[dict[str, float], dict[str, list[Label]]]:
    """Official metrics on every dev split (MNLI: matched and mismatched) and the predictions behind them."""
    metrics: dict[str, float] = {}
    predictions: dict[str, list[Label]] = {}
    for split, (features, examples) in dev.items():
        preds = outputs_to_labels(task, predict_outputs(model, task, features, accelerator, batch_size))
        predictions[split] = preds
        metrics.update(compute_metrics(task, preds, [e.label for e in examples], task.dev_splits[split]))
    return metrics, predictions


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _save_checkpoint(
    directory: Path, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]
) -> None:
    """Resumable state, weights as safetensors and optimiser state as plain tensors (loaded weights_only)."""
    import io

    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(directory / "model.safetensors", _safetensors_bytes(weights))
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    atomic_write_bytes(directory / "optimizer.pt", buffer.getvalue())
    atomic_write_json(directory / "state.json", state)  # written last: its presence marks a complete checkpoint


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def save_weights(module: nn.Module, path: Path) -> None:
    """Weights only, in the safetensors format (no pickle), written atomically."""
    weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, _safetensors_bytes(weights))


def load_weights(module: nn.Module, path: Path) -> None:
    module.load_state_dict(load_file(str(path)))


def train(
    model: TaskModel,
    task: TaskSpec,
    train_examples: Sequence[Example],
    dev_examples: dict[str, list[Example]],
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    best_weights_path: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``train_examples``, early-stopping on the task's main dev metric.

    With ``checkpoint_dir`` the full state is saved after every epoch; with ``resume`` a complete checkpoint
    found there is loaded and training continues after its epoch. The best epoch's weights end up in the
    module (and in ``best_weights_path``).
    """
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
    )
    _seed_everything(config.seed)
    train_features = model.encode(train_examples)
    targets = label_targets(task, train_examples)
    dev = {split: (model.encode(examples), examples) for split, examples in dev_examples.items()}

    steps_per_epoch = math.ceil(len(train_features) / config.batch_size / config.grad_accum)
    total_steps = max(1, steps_per_epoch * config.epochs)
    params = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    module, optimizer, scheduler = accelerator.prepare(model.module, optimizer, scheduler)

    history: list[dict[str, Any]] = []
    best_metric, best_epoch, bad_epochs, start_epoch, train_seconds = -math.inf, 0, 0, 1, 0.0
    best_state: dict[str, torch.Tensor] | None = None
    state_file = checkpoint_dir / "state.json" if checkpoint_dir else None
    if resume and state_file is not None and state_file.is_file():
        state = json.loads(state_file.read_text())
        accelerator.unwrap_model(module).load_state_dict(load_file(str(checkpoint_dir / "model.safetensors")))
        saved = torch.load(checkpoint_dir / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history, best_metric, best_epoch = state["history"], state["best_metric"], state["best_epoch"]
        bad_epochs, start_epoch, train_seconds = state["bad_epochs"], state["epoch"] + 1, state["train_seconds"]
        if best_weights_path is not None and best_weights_path.is_file():
            best_state = load_file(str(best_weights_path))

    main = task.main_metric
    for epoch in range(start_epoch, config.epochs + 1):
        if bad_epochs >= config.patience:
            break
        _seed_everything(config.seed * 1000 + epoch)
        loader = accelerator.prepare_data_loader(
            make_loader(model, task, train_features, targets, config.batch_size, shuffle=True,
                        seed=config.seed * 1000 + epoch)
        )
        module.train()
        started, total_loss, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(loader, desc=f"{task.name} epoch {epoch}/{config.epochs}", leave=False,
                   disable=not (config.progress and accelerator.is_local_main_process))
        for batch in bar:
            labels = batch.pop("labels")
            with accelerator.accumulate(module):
                loss = _loss(task, module(**batch), labels)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            total_loss += loss.item() * len(labels)
            seen += len(labels)
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        metrics, _ = evaluate(model, task, dev, accelerator, config.eval_batch_size)
        record = {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "seconds": epoch_seconds,
                  "examples_per_second": seen * accelerator.num_processes / epoch_seconds, **metrics}
        history.append(record)
        if metrics[main] > best_metric:
            best_metric, best_epoch, bad_epochs = metrics[main], epoch, 0
            unwrapped = accelerator.unwrap_model(module)
            best_state = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
            if best_weights_path is not None and accelerator.is_main_process:
                save_weights(unwrapped, best_weights_path)
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint_dir is not None and accelerator.is_main_process:
            _save_checkpoint(checkpoint_dir, accelerator.unwrap_model(module), optimizer, scheduler, {
                "epoch": epoch, "history": history, "best_metric": best_metric, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "train_seconds": train_seconds, "config": asdict(config),
            })
        accelerator.wait_for_everyone()

    if best_state is not None:
        accelerator.unwrap_model(module).load_state_dict(best_state)
    best = next((h for h in history if h["epoch"] == best_epoch), history[-1] if history else {})
    best_metrics = {k: best[k] for k in task.metric_keys if k in best}
    seen_total = len(train_features) * sum(1 for _ in history)
    return TrainOutcome(history, best_epoch, best_metrics, train_seconds, seen_total)

