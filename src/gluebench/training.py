"""One training loop for every model family, on Hugging Face accelerate.

accelerate gives device placement, mixed precision, trackers and data-parallel training (``accelerate
launch``); this module adds what GLUE fine-tuning needs around it: batches grouped by length (dynamic
padding wastes little), warmup + linear decay, gradient accumulation, early stopping on the task's main
metric, and checkpoints (every epoch, optionally every N optimiser steps) that ``resume`` continues from
to the same result.

Why resuming is exact: the batch order of an epoch depends only on ``(seed, epoch)``, and the random
generators (dropout) are reseeded at every epoch start and at every step checkpoint, so the work done after
a restart is the work an uninterrupted run would have done, and the checkpoint holds everything else
(weights, optimiser, schedule, best weights so far, history).

Why data-parallel runs match single-process ones: every process walks the same global batches (of
``batch_size`` examples) and takes a contiguous share of each; each share's summed loss is divided by the
global batch size and multiplied by the number of processes, so after DDP averages the gradients every
optimiser step sees the gradient of the global batch's mean loss, as one process would. Only the dropout
masks differ.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, gather_object
from safetensors.torch import load_file, save
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from gluebench.config import TRACKERS, TrainConfig
from gluebench.data.read import Example, Label
from gluebench.errors import ConfigError, GluebenchError
from gluebench.metrics import compute_metrics
from gluebench.models.base import Batch, Feature, TaskModel
from gluebench.runs import atomic_write_bytes, atomic_write_json
from gluebench.tasks import TaskSpec

T = TypeVar("T")


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
    """A plain single-process loader over length-grouped batches (for families that loop themselves)."""
    items = list(zip(features, labels if labels is not None else [None] * len(features), strict=True))
    sampler = LengthGroupedSampler([model.length(f) for f in features], batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(items, batch_sampler=sampler, collate_fn=_collate_fn(model, task.is_regression))  # type: ignore[arg-type]


def _loss_sum(task: TaskSpec, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed (not mean) loss, so shares of a batch on several processes add up to the batch's loss."""
    if task.is_regression:
        return nn.functional.mse_loss(output.reshape(-1).float(), labels, reduction="sum")
    return nn.functional.cross_entropy(output.float(), labels, reduction="sum")


def outputs_to_labels(task: TaskSpec, outputs: torch.Tensor) -> list[Label]:
    """Model outputs to predictions: label strings, or scores clipped to the task's range."""
    if task.is_regression:
        low, high = task.label_range or (-math.inf, math.inf)
        return [float(v) for v in outputs.reshape(-1).float().clamp(low, high).tolist()]
    assert task.labels is not None
    return [task.labels[i] for i in outputs.argmax(dim=-1).tolist()]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _share(indices: list[int], accelerator: Accelerator) -> list[int]:
    """This process's contiguous share of a global batch."""
    n, rank = accelerator.num_processes, accelerator.process_index
    size, extra = divmod(len(indices), n)
    start = rank * size + min(rank, extra)
    return indices[start : start + size + (1 if rank < extra else 0)]


def predict_outputs(
    model: TaskModel, task: TaskSpec, features: Sequence[Feature], accelerator: Accelerator, batch_size: int = 128
) -> torch.Tensor:
    """Raw outputs (logits or scores) in the order of ``features``; every process gets all of them.

    Batches (longest first) are dealt round-robin to the processes and the outputs gathered back, so a
    data-parallel run predicts each example exactly once.
    """
    sampler = LengthGroupedSampler([model.length(f) for f in features], batch_size, shuffle=False)
    batches = sampler.batches()[accelerator.process_index :: accelerator.num_processes]
    module = model.module
    was_training = module.training
    module.eval()
    pieces: list[tuple[list[int], torch.Tensor]] = []
    with torch.inference_mode():
        for indices in batches:
            batch = _to_device(model.collate([features[i] for i in indices]), accelerator.device)
            pieces.append((indices, module(**batch).float().cpu()))
    module.train(was_training)
    if accelerator.num_processes > 1:
        pieces = gather_object(pieces)
    if not pieces:
        return torch.empty(0)
    first = pieces[0][1]
    restored = torch.empty((len(features), *first.shape[1:]), dtype=first.dtype)
    for indices, outputs in pieces:
        restored[torch.tensor(indices)] = outputs
    return restored


def make_accelerator(mixed_precision: str | None = None, trackers: Sequence[str] = (),
                     tracker_dir: str | None = None) -> Accelerator:
    """An accelerator for this machine (GPU when there is one) or for the ``accelerate launch`` setup.

    ``mixed_precision`` None keeps whatever the process already uses. accelerate fixes the precision once
    per process; a single process that trains again with another precision (a sweep, the Python API) gets
    the shared state reset, which is safe because nothing else holds it between trainings.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if (mixed_precision is not None and state and state.get("_mixed_precision") != mixed_precision
            and state.get("num_processes", 1) == 1):
        AcceleratorState._reset_state()
    for name in trackers:
        if name not in TRACKERS:
            raise ConfigError(f"unknown tracker {name!r} (choose from: {', '.join(TRACKERS)})")
        if not _tracker_available(name):
            raise ConfigError(f"tracker {name!r} is not installed (pip install {name})")
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        log_with=list(trackers) or None,
        project_dir=tracker_dir,
    )


def _tracker_available(name: str) -> bool:
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    return {"tensorboard": is_tensorboard_available, "mlflow": is_mlflow_available,
            "wandb": is_wandb_available}[name]()


def predict(
    model: TaskModel, task: TaskSpec, examples: Sequence[Example], accelerator: Accelerator | None = None,
    batch_size: int = 128,
) -> list[Label]:
    accelerator = accelerator or make_accelerator()
    model.module.to(accelerator.device)
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


def _seed_everything(*parts: int) -> None:
    """Seed torch (CPU and GPU) and numpy from a tuple of ints, the same way on every process."""
    seed = int.from_bytes(np.random.SeedSequence([abs(p) for p in parts]).generate_state(1).tobytes(), "little")
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _weights_bytes(module: nn.Module) -> bytes:
    return save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})


def save_weights(module: nn.Module, path: Path) -> None:
    """Weights only, in the safetensors format (no pickle), written atomically."""
    atomic_write_bytes(path, _weights_bytes(module))


def load_weights(module: nn.Module, path: Path) -> None:
    """Load safetensors weights (never unpickles); a bad file is a one-line error naming it."""
    try:
        weights = load_file(str(path))
    except FileNotFoundError as exc:
        raise GluebenchError("weights file not found", path=path) from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise GluebenchError(f"not a valid safetensors weights file ({exc})", path=path) from exc
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GluebenchError(f"weights do not fit this model ({first})", path=path) from exc


# ---- checkpoints ------------------------------------------------------------------------------------
#
# checkpoint_dir/state.json                          where training stands; names the directory below
# checkpoint_dir/step-000000042/model.safetensors    weights at that point
#                              /best.safetensors     best weights so far (absent before the first epoch ends)
#                              /optimizer.pt         optimiser, schedule and loss-scaler tensors (weights_only)
# A checkpoint directory is written under a temporary name and renamed into place; state.json is replaced
# atomically afterwards and only then are older directories removed, so a kill at any moment leaves
# state.json naming a complete checkpoint (or no state.json at all).

_STEP_GLOB = "step-*"


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete checkpoint ``checkpoint_dir/state.json`` names, if there is one."""
    state_file = checkpoint_dir / "state.json"
    if not state_file.is_file():
        return None
    try:
        name = json.loads(state_file.read_text(encoding="utf-8"))["dir"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise GluebenchError("checkpoint state is damaged; remove the checkpoint directory to restart this task",
                             path=state_file) from exc
    directory = checkpoint_dir / name
    if Path(name).name != name or not (directory / "model.safetensors").is_file():
        raise GluebenchError(f"checkpoint state names {name!r}, which is not a complete checkpoint", path=state_file)
    return directory


def _link_or_write(path: Path, data: bytes, same_content: Sequence[Path | None]) -> None:
    """Hard-link a file known to hold ``data`` (no second copy on disk), else write ``data``."""
    for source in same_content:
        if source is not None and source.is_file():
            try:
                os.link(source, path)
                return
            except OSError:
                continue
    atomic_write_bytes(path, data)


def _write_checkpoint(checkpoint_dir: Path, weights: bytes, best: bytes | None, best_on_disk: Path | None,
                      training_state: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write a complete checkpoint directory and point state.json at it; returns the directory.

    ``best`` is stored as a hard link when it is the same object as ``weights`` (this epoch is the best) or
    when ``best_on_disk`` already holds it (no new best since the last checkpoint).
    """
    target = checkpoint_dir / f"step-{state['global_step']:09d}"
    tmp = checkpoint_dir / f".{target.name}-{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    atomic_write_bytes(tmp / "model.safetensors", weights)
    if best is not None:
        _link_or_write(tmp / "best.safetensors", best, [tmp / "model.safetensors" if best is weights else None,
                                                        best_on_disk])
    buffer = io.BytesIO()
    torch.save(training_state, buffer)
    atomic_write_bytes(tmp / "optimizer.pt", buffer.getvalue())
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    atomic_write_json(checkpoint_dir / "state.json", {**state, "dir": target.name})
    for old in checkpoint_dir.iterdir():
        if old != target and old.is_dir() and (old.match(_STEP_GLOB) or old.name.endswith(".partial")):
            shutil.rmtree(old, ignore_errors=True)
    return target


_RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_accum", "seed",
                "max_grad_norm", "mixed_precision")


def _check_resumable(state: dict[str, Any], config: TrainConfig, checkpoint: Path) -> None:
    saved = state.get("config", {})
    for key in _RESUME_KEYS:
        if key in saved and saved[key] != getattr(config, key):
            raise ConfigError(f"cannot resume: the checkpoint was trained with {key}={saved[key]!r}, "
                              f"this run asks for {getattr(config, key)!r}", path=checkpoint.parent / "state.json")


# ---- the loop ---------------------------------------------------------------------------------------


def _epoch_batches(lengths: Sequence[int], config: TrainConfig, epoch: int, processes: int) -> list[list[int]]:
    """The global batches of one epoch; a final batch too small to give every process an example is dropped."""
    batches = LengthGroupedSampler(lengths, config.batch_size, shuffle=True, seed=config.seed * 1000 + epoch).batches()
    return [b for b in batches if len(b) >= processes]


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights (1-D tensors), as BERT does."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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

    With ``checkpoint_dir`` the full state is saved after every epoch (and every ``checkpoint_steps``
    optimiser steps); with ``resume`` the newest complete checkpoint there is loaded and training continues
    where it stopped, reaching the same result as an uninterrupted run. The best epoch's weights end up in
    the module (and in ``best_weights_path``). Under ``accelerate launch`` only the main process writes.
    """
    accelerator = make_accelerator(config.mixed_precision, config.trackers, config.tracker_dir)
    processes = accelerator.num_processes
    if config.batch_size < processes:
        raise ConfigError(f"batch size {config.batch_size} is smaller than the {processes} processes")
    _seed_everything(config.seed)
    train_features = model.encode(train_examples)
    targets = torch.tensor(label_targets(task, train_examples),
                           dtype=torch.float32 if task.is_regression else torch.long)
    lengths = [model.length(f) for f in train_features]
    dev = {split: (model.encode(examples), examples) for split, examples in dev_examples.items()}

    steps_per_epoch = math.ceil(len(_epoch_batches(lengths, config, 1, processes)) / config.grad_accum)
    total_steps = max(1, steps_per_epoch * config.epochs)
    optimizer = torch.optim.AdamW(_param_groups(model.module, config.weight_decay), lr=config.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    module, optimizer = accelerator.prepare(model.module, optimizer)
    unwrapped = accelerator.unwrap_model(module)
    params = [p for p in unwrapped.parameters() if p.requires_grad]

    history: list[dict[str, Any]] = []
    best_metric, best_epoch, bad_epochs, start_epoch, train_seconds, global_step = -math.inf, 0, 0, 1, 0.0, 0
    best_weights: bytes | None = None
    best_on_disk: Path | None = None  # a checkpoint file holding best_weights, while no newer best exists
    progress: dict[str, Any] = {}  # a step checkpoint's place inside its epoch
    # the main process picks the checkpoint, so every process resumes from the same one
    checkpoint = share_from_main(latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None and resume else None)
    if checkpoint is not None:
        state = json.loads((checkpoint.parent / "state.json").read_text(encoding="utf-8"))
        _check_resumable(state, config, checkpoint)
        load_weights(unwrapped, checkpoint / "model.safetensors")
        try:
            saved = torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location="cpu")
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if accelerator.scaler is not None and saved.get("scaler"):
                accelerator.scaler.load_state_dict(saved["scaler"])
            history, best_metric, best_epoch = state["history"], state["best_metric"], state["best_epoch"]
            bad_epochs, train_seconds = state["bad_epochs"], state["train_seconds"]
            global_step, progress = state["global_step"], state.get("in_epoch") or {}
            start_epoch = state["epoch"] + (0 if progress else 1)
        except Exception as exc:  # weights_only refuses anything but tensors and plain containers
            raise GluebenchError(f"checkpoint is damaged ({type(exc).__name__}); remove {checkpoint.parent} to "
                                 "restart this task from scratch", path=checkpoint) from exc
        if (checkpoint / "best.safetensors").is_file():
            best_weights = (checkpoint / "best.safetensors").read_bytes()
            best_on_disk = checkpoint / "best.safetensors"
    elif checkpoint_dir is not None and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a fresh run never continues stale state

    def save_checkpoint(epoch: int, in_epoch: dict[str, Any] | None) -> None:
        nonlocal best_on_disk
        if checkpoint_dir is not None and accelerator.is_main_process:
            training_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None}
            just_best = in_epoch is None and best_epoch == epoch and best_weights is not None
            weights = best_weights if just_best else _weights_bytes(unwrapped)
            target = _write_checkpoint(checkpoint_dir, weights, best_weights, best_on_disk, training_state, {
                "epoch": epoch, "global_step": global_step, "in_epoch": in_epoch, "history": history,
                "best_metric": best_metric, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "train_seconds": train_seconds, "config": asdict(config),
            })
            best_on_disk = target / "best.safetensors" if best_weights is not None else None
        accelerator.wait_for_everyone()

    if config.trackers:
        accelerator.init_trackers(config.run_name, {k: v for k, v in asdict(config).items()
                                                     if isinstance(v, int | float | str | bool)})
    main = task.main_metric
    for epoch in range(start_epoch, config.epochs + 1):
        if bad_epochs >= config.patience:
            break
        groups = _epoch_batches(lengths, config, epoch, processes)
        groups = [groups[i : i + config.grad_accum] for i in range(0, len(groups), config.grad_accum)]
        first_group = progress.get("step_in_epoch", 0)
        _seed_everything(config.seed, epoch, first_group)
        loss_sum, seen, epoch_seconds = progress.get("loss_sum", 0.0), progress.get("seen", 0), progress.get(
            "seconds", 0.0)
        progress = {}
        module.train()
        started = time.perf_counter()
        bar = tqdm(range(first_group, len(groups)), desc=f"{task.name} epoch {epoch}/{config.epochs}", leave=False,
                   disable=not (config.progress and accelerator.is_local_main_process))
        for g in bar:
            group = groups[g]
            group_size = sum(len(b) for b in group)
            for k, global_batch in enumerate(group):
                mine = _share(global_batch, accelerator)
                batch = _to_device(model.collate([train_features[i] for i in mine]), accelerator.device)
                labels = targets[mine].to(accelerator.device)
                syncing = k == len(group) - 1
                with contextlib.nullcontext() if syncing else accelerator.no_sync(module):
                    summed = _loss_sum(task, module(**batch), labels)
                    accelerator.backward(summed * (processes / group_size))
                loss_sum += summed.item()
                seen += len(mine)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            if config.checkpoint_steps and global_step % config.checkpoint_steps == 0 and g + 1 < len(groups):
                elapsed = time.perf_counter() - started
                save_checkpoint(epoch, {"step_in_epoch": g + 1, "loss_sum": loss_sum, "seen": seen,
                                        "seconds": epoch_seconds + elapsed})
                _seed_everything(config.seed, epoch, g + 1)
        epoch_seconds += time.perf_counter() - started
        train_seconds += epoch_seconds
        totals = accelerator.reduce(torch.tensor([loss_sum, float(seen)], device=accelerator.device), "sum")
        metrics, _ = evaluate(model, task, dev, accelerator, config.eval_batch_size)
        record = {"epoch": epoch, "train_loss": float(totals[0] / max(totals[1], 1)), "seconds": epoch_seconds,
                  "examples_per_second": float(totals[1]) / epoch_seconds if epoch_seconds else 0.0, **metrics}
        history.append(record)
        if metrics[main] > best_metric:
            best_metric, best_epoch, bad_epochs = metrics[main], epoch, 0
            best_weights, best_on_disk = _weights_bytes(unwrapped), None
            if best_weights_path is not None and accelerator.is_main_process:
                atomic_write_bytes(best_weights_path, best_weights)
        else:
            bad_epochs += 1
        if config.trackers:
            accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
        if on_epoch is not None and accelerator.is_main_process:
            on_epoch(record)
        save_checkpoint(epoch, None)

    if config.trackers:
        accelerator.end_training()
    if best_weights is not None:
        unwrapped.load_state_dict(_load_bytes(best_weights))
    module.eval()
    best = next((h for h in history if h["epoch"] == best_epoch), history[-1] if history else {})
    best_metrics = {k: best[k] for k in task.metric_keys if k in best}
    seen_total = len(train_features) * len(history)
    return TrainOutcome(history, best_epoch, best_metrics, train_seconds, seen_total)


def _load_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


def process_state() -> PartialState:
    """This process's place in an ``accelerate launch`` group, set up as `make_accelerator` sets it up.

    Without a GPU the group must be created with ``cpu=True`` (gloo); created otherwise first, it would stay
    single-process and every rank would train alone.
    """
    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """True on the process that writes files (always true without ``accelerate launch``)."""
    return process_state().is_main_process


def wait_for_everyone() -> None:
    """A barrier across ``accelerate launch`` processes (a no-op in a single process)."""
    process_state().wait_for_everyone()


def share_from_main(value: T) -> T:
    """The main process's ``value`` on every process, so all agree (the value itself without ``accelerate launch``)."""
    if process_state().num_processes == 1:
        return value
    return broadcast_object_list([value], from_process=0)[0]
