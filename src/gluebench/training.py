"""One training loop for every model family and for one task or many, on Hugging Face accelerate.

accelerate gives device placement, mixed precision, trackers and data-parallel training (``accelerate
launch``); this module adds what GLUE fine-tuning needs around it: batches grouped by length (dynamic
padding wastes little), warmup + linear decay, gradient accumulation, early stopping on each task's main
metric, and checkpoints (every epoch, optionally every N optimiser steps) that ``resume`` continues from
to the same result.

The shape is jiant v2's: a `TaskSampler` yields the epoch's ``(task, batch)`` sequence, one `TrainState`
holds where training stands (and goes to and from a checkpoint), and `train_tasks` is a few short steps
over them. Single-task training (`train`) is the one-task case; multitask training (a shared encoder with a
head per task, as the GLUE paper's multi-task baselines) is the many-task case, and gets data parallelism,
mixed precision, accumulation, checkpoints and exact resume from the same code.

Why resuming is exact: the batch order of an epoch depends only on ``(seed, epoch)``, and the random
generators (dropout) are reseeded at every epoch start and at every step checkpoint, so the work done after
a restart is the work an uninterrupted run would have done, and the checkpoint holds everything else
(weights, optimiser, schedule, each task's best weights so far, history).

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
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import (
    broadcast_object_list,
    gather_object,
    is_mlflow_available,
    is_tensorboard_available,
    is_wandb_available,
)
from safetensors.torch import load, load_file, save
from torch import nn
from torch.utils.data import Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from gluebench.config import TRACKERS, TrainConfig
from gluebench.data.read import Example, Label
from gluebench.errors import ConfigError, GluebenchError
from gluebench.metrics import compute_metrics
from gluebench.models.base import Batch, Feature, TaskModel
from gluebench.runs import atomic_write_bytes, atomic_write_json, replace_directory
from gluebench.tasks import TaskSpec

log = logging.getLogger("gluebench")

T = TypeVar("T")
EpochCallback = Callable[[str, dict[str, Any]], None]


@dataclass
class TaskData:
    """One task's part of a training: its model, its examples and where its best weights go."""

    spec: TaskSpec
    model: TaskModel
    train: Sequence[Example]
    dev: dict[str, list[Example]]
    best_weights_path: Path | None = None


@dataclass
class TrainOutcome:
    """What training produced for one task: per-epoch history, the best epoch's dev metrics, throughput."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, float]
    train_seconds: float
    train_examples: int
    best_weights: bytes | None = None  # safetensors bytes of the best epoch's module (None: no epoch ran)
    resumed_from: dict[str, int] | None = None  # {"epoch", "global_step"} of the checkpoint continued from
    mixed_precision: str | None = None  # the precision it trained in (``auto`` resolved)
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
        permutation = rng.permutation(len(batches))
        return [batches[i] for i in permutation]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def sampling_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """Task probabilities proportional to ``size ** (1 / temperature)``."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return np.asarray(weights / weights.sum())


class TaskSampler:
    """The ``(task, global batch)`` sequence of each epoch, a pure function of ``(seed, epoch, active tasks)``.

    One task: its length-grouped batches in a shuffled order. Several tasks: as many draws as the active tasks
    have batches, each draw a task with probability proportional to ``n_task ** (1 / temperature)``
    (temperature 1: proportional to the training set size; larger values flatten toward uniform), the task's
    next length-grouped batch (a task drawn more often than it has batches starts a new pass). A final batch
    too small to give every process an example is dropped.
    """

    def __init__(self, lengths: dict[str, Sequence[int]], batch_size: int, seed: int, temperature: float,
                 processes: int = 1) -> None:
        self.lengths = lengths
        self.names = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.temperature = temperature
        self.processes = processes

    def batch_count(self, name: str) -> int:
        return math.ceil(len(self.lengths[name]) / self.batch_size)

    def _batches(self, name: str, seed: int) -> list[list[int]]:
        batches = LengthGroupedSampler(self.lengths[name], self.batch_size, shuffle=True, seed=seed).batches()
        return [b for b in batches if len(b) >= self.processes]

    def epoch(self, epoch: int, active: Sequence[str]) -> list[tuple[str, list[int]]]:
        if len(self.names) == 1:
            name = self.names[0]
            return [(name, batch) for batch in self._batches(name, self.seed * 1000 + epoch)]
        rng = np.random.default_rng([self.seed, epoch])
        probabilities = sampling_probabilities([len(self.lengths[n]) for n in active], self.temperature)
        draws = rng.choice(len(active), size=sum(self.batch_count(n) for n in active), p=probabilities)
        queues: dict[str, list[list[int]]] = {name: [] for name in active}
        passes = dict.fromkeys(active, 0)
        sequence: list[tuple[str, list[int]]] = []
        for draw in draws:
            name = active[int(draw)]
            while not queues[name]:
                position = self.names.index(name)
                seed = np.random.SeedSequence([self.seed, epoch, position, passes[name]]).generate_state(1)[0]
                queues[name] = self._batches(name, int(seed))
                passes[name] += 1
            sequence.append((name, queues[name].pop(0)))
        return sequence


def label_targets(task: TaskSpec, examples: Sequence[Example]) -> torch.Tensor:
    """Training targets: scores (regression) or label indices."""
    if task.is_regression:
        return torch.tensor([float(e.label) for e in examples], dtype=torch.float32)  # type: ignore[arg-type]
    return torch.tensor([task.label_index(str(e.label)) for e in examples], dtype=torch.long)


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
    # autocast: bf16/fp16 where the accelerator was set up so; the family's prediction layout (a Transformer
    # computes its top layer at the first token only)
    with torch.inference_mode(), accelerator.autocast(), model.prediction_layout():
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


_TRACKER_CHECKS = {"tensorboard": is_tensorboard_available, "mlflow": is_mlflow_available,
                   "wandb": is_wandb_available}


def native_bf16() -> bool:
    """Whether this process's device computes bf16 natively: a CUDA GPU with bf16 units, or a CPU with
    AVX512-BF16 or AMX. Elsewhere bf16 is emulated, slower than fp32."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_mixed_precision(requested: str, models: Sequence[TaskModel]) -> str:
    """The precision ``requested`` means for these models here. ``auto`` is what ``accelerate launch`` (or
    accelerate's environment) set, if anything; else bf16 where every model gains from it
    (`TaskModel.auto_precision`) and the device computes bf16 natively; else no. Other values stay."""
    if requested != "auto":
        return requested
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    wanted = bool(models) and all(model.auto_precision == "bf16" for model in models)
    if launched:
        resolved, why = launched, "as accelerate launch set it"
    elif wanted and native_bf16():
        resolved, why = "bf16", "this device computes bf16 natively"
    else:
        resolved, why = "no", "no native bf16 here" if wanted else "this model family trains in fp32"
    log.info("mixed precision auto: %s (%s)", resolved, why)
    return resolved


def make_accelerator(mixed_precision: str | None = None, trackers: Sequence[str] = (),
                     tracker_dir: str | None = None, *, unused_parameters: bool = False) -> Accelerator:
    """An accelerator for this machine (GPU when there is one) or for the ``accelerate launch`` setup.

    ``mixed_precision`` None keeps whatever the process already uses. accelerate fixes the precision once
    per process; a single process that trains again with another precision (a sweep, the Python API) gets
    the shared state reset, which is safe because nothing else holds it between trainings.
    ``unused_parameters``: some parameters get no gradient in a step (multitask: the other tasks' heads),
    which DDP must be told.
    """
    state = AcceleratorState._shared_state
    if (mixed_precision is not None and state and state.get("_mixed_precision") != mixed_precision
            and state.get("num_processes", 1) == 1):
        AcceleratorState._reset_state()
    for name in trackers:
        if name not in TRACKERS:
            raise ConfigError(f"unknown tracker {name!r} (choose from: {', '.join(TRACKERS)})")
        if not _TRACKER_CHECKS[name]():
            raise ConfigError(f"tracker {name!r} is not installed (pip install {name})")
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        log_with=list(trackers) or None,
        project_dir=tracker_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if unused_parameters else None,
    )


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


# ---- weights ----------------------------------------------------------------------------------------


def weights_bytes(module: nn.Module) -> bytes:
    """A module's weights as safetensors bytes; a tensor shared by several names is stored once."""
    unique: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for name, tensor in module.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in seen:
            seen.add(key)
            unique[name] = tensor.detach().cpu().contiguous()
    return save(unique)


def load_weights_bytes(module: nn.Module, data: bytes) -> None:
    """The inverse of `weights_bytes`: names stored once load every module name that shares them."""
    _load_state(module, load(data), "weights")


def _load_state(module: nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    result = module.load_state_dict(weights, strict=False)
    expected = module.state_dict()
    stored = {(expected[k].data_ptr(), tuple(expected[k].shape)) for k in weights if k in expected}
    missing = [k for k in result.missing_keys if (expected[k].data_ptr(), tuple(expected[k].shape)) not in stored]
    if missing or result.unexpected_keys:
        names = (missing or list(result.unexpected_keys))[:3]
        problem = "missing" if missing else "unexpected"
        raise GluebenchError(f"weights do not fit this model ({problem} {', '.join(names)})", path=where)


def save_weights(module: nn.Module, path: Path) -> None:
    """Weights only, in the safetensors format (no pickle), written atomically."""
    atomic_write_bytes(path, weights_bytes(module))


def load_weights(module: nn.Module, path: Path) -> None:
    """Load safetensors weights (never unpickles); a bad file is a one-line error naming it."""
    try:
        weights = load_file(str(path))
    except FileNotFoundError as exc:
        raise GluebenchError("weights file not found", path=path) from exc
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise GluebenchError(f"not a valid safetensors weights file ({exc})", path=path) from exc
    try:
        _load_state(module, weights, path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GluebenchError(f"weights do not fit this model ({first})", path=path) from exc


# ---- where training stands --------------------------------------------------------------------------


@dataclass
class TaskProgress:
    """One task's history and early-stopping bookkeeping."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0
    seen: int = 0


@dataclass
class TrainState:
    """Where training stands: what a checkpoint's ``state.json`` holds besides the tensors.

    ``epoch`` is the last finished epoch, or the epoch in progress when ``in_epoch`` (a step checkpoint's
    place inside it: next optimiser step, per-task summed loss, examples and seconds so far) is set.
    """

    tasks: dict[str, TaskProgress]
    epoch: int = 0
    global_step: int = 0
    train_seconds: float = 0.0
    in_epoch: dict[str, Any] | None = None

    @property
    def next_epoch(self) -> int:
        return self.epoch + (0 if self.in_epoch else 1)

    def to_json(self, config: TrainConfig) -> dict[str, Any]:
        return {"epoch": self.epoch, "global_step": self.global_step, "train_seconds": self.train_seconds,
                "in_epoch": self.in_epoch, "tasks": {name: asdict(p) for name, p in self.tasks.items()},
                "config": asdict(config)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        return cls(tasks={name: TaskProgress(**p) for name, p in data["tasks"].items()}, epoch=data["epoch"],
                   global_step=data["global_step"], train_seconds=data["train_seconds"],
                   in_epoch=data.get("in_epoch"))


# ---- checkpoints ------------------------------------------------------------------------------------
#
# checkpoint_dir/state.json                          where training stands; names the directory below
# checkpoint_dir/step-000000042/model.safetensors    weights at that point (every task's module)
#                              /best-TASK.safetensors  each task's best weights so far (after its first epoch)
#                              /optimizer.pt         optimiser, schedule and loss-scaler tensors (weights_only)
# A checkpoint directory is written under a temporary name and renamed into place; state.json is replaced
# atomically afterwards and only then are older directories removed, so a kill at any moment leaves
# state.json naming a complete checkpoint (or no state.json at all).

_STEP_GLOB = "step-*"
_RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "grad_accum", "seed",
                "max_grad_norm", "mixed_precision", "temperature")


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


def _best_file(directory: Path, task: str) -> Path:
    return directory / f"best-{task}.safetensors"


class _Checkpoints:
    """Writes and reads one training's checkpoints; only the main process writes."""

    def __init__(self, directory: Path | None, accelerator: Accelerator) -> None:
        self.directory = directory
        self.accelerator = accelerator
        self.best_on_disk: dict[str, Path] = {}  # a file holding a task's current best, while no newer exists

    def clear(self) -> None:
        """A fresh run never continues stale state."""
        if self.directory is not None and self.accelerator.is_main_process:
            shutil.rmtree(self.directory, ignore_errors=True)

    def write(self, state: TrainState, config: TrainConfig, module: nn.Module, best: dict[str, bytes],
              training_state: dict[str, Any]) -> None:
        if self.directory is not None and self.accelerator.is_main_process:
            target = self.directory / f"step-{state.global_step:09d}"
            tmp = self.directory / f".{target.name}-{os.getpid()}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                atomic_write_bytes(tmp / "model.safetensors", weights_bytes(module))
                for name, data in best.items():
                    _link_or_write(_best_file(tmp, name), data, self.best_on_disk.get(name))
                buffer = io.BytesIO()
                torch.save(training_state, buffer)
                atomic_write_bytes(tmp / "optimizer.pt", buffer.getvalue())
            except BaseException:  # a full disk: no half-written checkpoint stays behind to fill it further
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            replace_directory(tmp, target)
            atomic_write_json(self.directory / "state.json", {**state.to_json(config), "dir": target.name})
            for old in self.directory.iterdir():
                if old != target and old.is_dir() and (old.match(_STEP_GLOB) or old.name.endswith(".partial")):
                    shutil.rmtree(old, ignore_errors=True)
            self.best_on_disk = {name: _best_file(target, name) for name in best}
        self.accelerator.wait_for_everyone()

    def newer_best(self, task: str) -> None:
        """The task's best changed since the last checkpoint: its file there no longer holds it."""
        self.best_on_disk.pop(task, None)

    def read(self, config: TrainConfig, module: nn.Module,
             optimizer: Any, scheduler: Any) -> tuple[TrainState, dict[str, bytes]] | None:
        """Load the newest complete checkpoint into ``module``/``optimizer``/``scheduler``; its state and bests."""
        # the main process picks the checkpoint, so every process resumes from the same one
        checkpoint = share_from_main(latest_checkpoint(self.directory) if self.directory is not None else None)
        if checkpoint is None:
            return None
        state_file = checkpoint.parent / "state.json"
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        for key in _RESUME_KEYS:
            if key in saved.get("config", {}) and saved["config"][key] != getattr(config, key):
                raise ConfigError(f"cannot resume: the checkpoint was trained with {key}={saved['config'][key]!r}, "
                                  f"this run asks for {getattr(config, key)!r}", path=state_file)
        load_weights(module, checkpoint / "model.safetensors")
        try:
            tensors = torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location="cpu")
            optimizer.load_state_dict(tensors["optimizer"])
            _check_optimizer_state(optimizer)
            scheduler.load_state_dict(tensors["scheduler"])
            if self.accelerator.scaler is not None and tensors.get("scaler"):
                self.accelerator.scaler.load_state_dict(tensors["scaler"])
            state = TrainState.from_json(saved)
        except Exception as exc:  # weights_only refuses anything but tensors and plain containers
            raise GluebenchError(f"checkpoint is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                                 f"remove {checkpoint.parent} to restart this task from scratch",
                                 path=checkpoint) from exc
        best = {name: _best_file(checkpoint, name).read_bytes() for name in state.tasks
                if _best_file(checkpoint, name).is_file()}
        self.best_on_disk = {name: _best_file(checkpoint, name) for name in best}
        return state, best


def _check_optimizer_state(optimizer: Any) -> None:
    """Every moment has its parameter's shape (a checkpoint of another model layout would fail mid-step)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, moment in optimizer.state.get(param, {}).items():
                if isinstance(moment, torch.Tensor) and moment.ndim and moment.shape != param.shape:
                    raise ValueError(f"optimizer {name} of shape {tuple(moment.shape)} for a parameter of shape "
                                     f"{tuple(param.shape)}")


def _link_or_write(path: Path, data: bytes, same_content: Path | None) -> None:
    """Hard-link a file known to hold ``data`` (no second copy on disk), else write ``data``."""
    if same_content is not None and same_content.is_file():
        try:
            os.link(same_content, path)
            return
        except OSError:
            pass
    atomic_write_bytes(path, data)


# ---- the loop ---------------------------------------------------------------------------------------


class TaskRouter(nn.Module):
    """Every task's module under one parent, so one optimiser, one DDP wrapper and one autocast serve all.

    Modules that share an encoder (multitask) share its parameters here too; they appear once in
    ``parameters()``.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.tasks = nn.ModuleDict(modules)

    def forward(self, task: str, **batch: torch.Tensor) -> torch.Tensor:
        return self.tasks[task](**batch)


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights (1-D tensors), as BERT does."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class _Encoded:
    """A task's examples turned into features once, before the first epoch."""

    data: TaskData
    features: list[Feature]
    targets: torch.Tensor
    dev: dict[str, tuple[list[Feature], list[Example]]]


def _encode(task: TaskData) -> _Encoded:
    return _Encoded(task, task.model.encode(task.train), label_targets(task.spec, task.train),
                    {split: (task.model.encode(examples), examples) for split, examples in task.dev.items()})


@dataclass
class _Run:
    """What one training holds while it runs; the epoch steps below read and update it."""

    config: TrainConfig
    accelerator: Accelerator
    tasks: dict[str, _Encoded]
    sampler: TaskSampler
    module: nn.Module  # the prepared (possibly DDP-wrapped, possibly compiled) TaskRouter
    router: TaskRouter
    optimizer: Any
    scheduler: Any
    checkpoints: _Checkpoints
    state: TrainState
    best: dict[str, bytes]
    on_epoch: EpochCallback | None

    def active(self) -> list[str]:
        patience = self.config.patience
        return [name for name, progress in self.state.tasks.items() if progress.bad_epochs < patience]

    def save(self) -> None:
        training_state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                          "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler else None}
        self.checkpoints.write(self.state, self.config, self.router, self.best, training_state)


def _required(config: TrainConfig) -> tuple[int, int, float, float]:
    if config.epochs is None or config.batch_size is None or config.lr is None:
        raise ConfigError("training needs epochs, batch_size and lr (gluebench run takes them from the model "
                          "family when not given)")
    return config.epochs, config.batch_size, config.lr, config.warmup_ratio or 0.0


def train_tasks(tasks: Sequence[TaskData], config: TrainConfig, *, checkpoint_dir: Path | None = None,
                resume: bool = False, on_epoch: EpochCallback | None = None) -> dict[str, TrainOutcome]:
    """Train the ``tasks`` together (one task: ordinary fine-tuning), early-stopping each on its main metric.

    With ``checkpoint_dir`` the full state is saved after every epoch (and every ``checkpoint_steps``
    optimiser steps); with ``resume`` the newest complete checkpoint there is loaded and training continues
    where it stopped, reaching the same result as an uninterrupted run. Each task's best weights are in its
    outcome (and its ``best_weights_path``); with one task they also end up in its module. Under
    ``accelerate launch`` only the main process writes. ``mixed_precision`` auto is resolved here
    (`resolve_mixed_precision`); each outcome names the precision it trained in.
    """
    config = replace(config, mixed_precision=resolve_mixed_precision(config.mixed_precision,
                                                                     [task.model for task in tasks]))
    with contextlib.ExitStack() as layouts:  # each model in its training layout until the loop ends
        run = _start(tasks, config, checkpoint_dir, resume, on_epoch, layouts)
        resumed_from = ({"epoch": run.state.epoch, "global_step": run.state.global_step}
                        if run.state.global_step else None)
        epochs = _required(config)[0]
        if config.trackers:
            run.accelerator.init_trackers(config.run_name, {k: v for k, v in asdict(config).items()
                                                             if isinstance(v, int | float | str | bool)})
        for epoch in range(run.state.next_epoch, epochs + 1):
            active = run.active()
            if not active:
                break
            _train_epoch(run, epoch, active)
            _evaluate_epoch(run, epoch, active)
            run.state.epoch, run.state.in_epoch = epoch, None
            run.save()
        if config.trackers:
            run.accelerator.end_training()
        run.module.eval()
        outcomes = {name: _outcome(run, name, resumed_from) for name in run.tasks}
    only = outcomes[tasks[0].spec.name].best_weights if len(tasks) == 1 else None
    if only is not None:
        load_weights_bytes(tasks[0].model.module, only)
    return outcomes


def _start(tasks: Sequence[TaskData], config: TrainConfig, checkpoint_dir: Path | None, resume: bool,
           on_epoch: EpochCallback | None, layouts: contextlib.ExitStack) -> _Run:
    """Encode the tasks, lay the models out for training (until ``layouts`` closes), build optimiser and
    schedule, and load the checkpoint when resuming."""
    epochs, batch_size, lr, warmup = _required(config)
    accelerator = make_accelerator(config.mixed_precision, config.trackers, config.tracker_dir,
                                   unused_parameters=len(tasks) > 1)
    if batch_size < accelerator.num_processes:
        raise ConfigError(f"batch size {batch_size} is smaller than the {accelerator.num_processes} processes")
    _seed_everything(config.seed)
    encoded = {task.spec.name: _encode(task) for task in tasks}
    for e in encoded.values():
        layouts.enter_context(e.data.model.training_layout(e.features, config.weight_decay))
    sampler = TaskSampler({name: [e.data.model.length(f) for f in e.features] for name, e in encoded.items()},
                          batch_size, config.seed, config.temperature, accelerator.num_processes)
    names = list(encoded)
    batches_per_epoch = len(sampler.epoch(1, names)) if len(names) == 1 else sum(map(sampler.batch_count, names))
    total_steps = max(1, math.ceil(batches_per_epoch / config.grad_accum) * epochs)
    router = TaskRouter({name: e.data.model.module for name, e in encoded.items()})
    # fused: one kernel over all parameters; an AdamW step over MiniLM's 22.7 M parameters takes 24 ms instead
    # of the default for-loop's 162 ms on one thread of this CPU, same updates to float32 rounding
    # (docs/results/optimizer.md)
    optimizer = torch.optim.AdamW(_param_groups(router, config.weight_decay), lr=lr, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup * total_steps), total_steps)
    module, optimizer = accelerator.prepare(router, optimizer)
    if config.torch_compile:  # the training steps run the compiled graph; prediction uses the eager modules
        module = torch.compile(module)
    checkpoints = _Checkpoints(checkpoint_dir, accelerator)
    state, best = TrainState({name: TaskProgress() for name in names}), dict[str, bytes]()
    restored = checkpoints.read(config, router, optimizer, scheduler) if resume else None
    if restored is not None:
        state, best = restored
    else:
        checkpoints.clear()
    return _Run(config, accelerator, encoded, sampler, module, router, optimizer, scheduler, checkpoints, state,
                best, on_epoch)


def _train_epoch(run: _Run, epoch: int, active: list[str]) -> None:
    """One pass over the epoch's optimiser steps (from a step checkpoint's place when resuming inside it)."""
    config, accelerator, state = run.config, run.accelerator, run.state
    sequence = run.sampler.epoch(epoch, active)
    steps = [sequence[i : i + config.grad_accum] for i in range(0, len(sequence), config.grad_accum)]
    place = state.in_epoch or {}
    first = place.get("step", 0)
    loss = {name: place.get("loss", {}).get(name, 0.0) for name in active}
    seen = {name: place.get("seen", {}).get(name, 0) for name in active}
    seconds = {name: place.get("seconds", {}).get(name, 0.0) for name in active}
    _seed_everything(config.seed, epoch, first)
    run.module.train()
    label = active[0] if len(run.tasks) == 1 else "multitask"
    bar = tqdm(range(first, len(steps)), desc=f"{label} epoch {epoch}/{config.epochs}", leave=False,
               disable=not (config.progress and accelerator.is_local_main_process))
    for g in bar:
        started = time.perf_counter()
        step_loss, step_seen = _optimizer_step(run, steps[g])
        elapsed = time.perf_counter() - started
        total = sum(step_seen.values())
        for name, count in step_seen.items():
            loss[name] += step_loss[name]
            seen[name] += count
            seconds[name] += elapsed * count / total
        state.global_step += 1
        if config.checkpoint_steps and state.global_step % config.checkpoint_steps == 0 and g + 1 < len(steps):
            state.epoch, state.in_epoch = epoch, {"step": g + 1, "loss": loss, "seen": seen, "seconds": seconds}
            run.save()
            _seed_everything(config.seed, epoch, g + 1)
    for name in active:
        totals = accelerator.reduce(torch.tensor([loss[name], float(seen[name])], device=accelerator.device), "sum")
        progress = state.tasks[name]
        progress.seconds += seconds[name]
        progress.seen += int(totals[1])
        progress.history.append({"epoch": epoch, "train_loss": float(totals[0] / max(totals[1], 1)),
                                 "seconds": seconds[name],
                                 "examples_per_second": float(totals[1]) / seconds[name] if seconds[name] else 0.0})
    state.train_seconds += sum(seconds.values())


def _optimizer_step(run: _Run, batches: list[tuple[str, list[int]]]) -> tuple[dict[str, float], dict[str, int]]:
    """Forward and backward over one step's global batches (accumulated), then one optimiser update."""
    accelerator, processes = run.accelerator, run.accelerator.num_processes
    group_size = sum(len(batch) for _, batch in batches)
    loss: dict[str, float] = {}
    seen: dict[str, int] = {}
    for k, (name, global_batch) in enumerate(batches):
        task = run.tasks[name]
        mine = _share(global_batch, accelerator)
        batch = _to_device(task.data.model.collate([task.features[i] for i in mine]), accelerator.device)
        labels = task.targets[mine].to(accelerator.device)
        syncing = k == len(batches) - 1
        with contextlib.nullcontext() if syncing else accelerator.no_sync(run.module):
            summed = _loss_sum(task.data.spec, run.module(name, **batch), labels)
            accelerator.backward(summed * (processes / group_size))
        loss[name] = loss.get(name, 0.0) + summed.item()
        seen[name] = seen.get(name, 0) + len(mine)
    if run.config.max_grad_norm:
        _clip_gradients(run)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, seen


def _clip_gradients(run: _Run) -> None:
    """Scale the gradients to a global norm of at most ``max_grad_norm``, as ``clip_grad_norm_`` does.

    Without a loss scaler (fp32, bf16) the factor goes to the fused AdamW's ``grad_scale``, which divides each
    gradient inside its one kernel: the same update without a pass that multiplies every gradient (2.3 of a
    MiniLM step's 6 ms of clipping here, ``docs/results/speed.md``). fp16's scaler owns ``grad_scale``, so
    there accelerate clips.
    """
    accelerator, optimizer = run.accelerator, run.optimizer.optimizer
    if accelerator.scaler is not None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        accelerator.clip_grad_norm_(run.router.parameters(), run.config.max_grad_norm)
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)), as the divisor grad_scale is (set every step)
    optimizer.grad_scale = torch.clamp((torch.nn.utils.get_total_norm(grads, foreach=True) + 1e-6)
                                       / run.config.max_grad_norm, min=1.0) if grads else None


def _evaluate_epoch(run: _Run, epoch: int, active: list[str]) -> None:
    """Dev metrics of every still-training task; a new best keeps that task's weights (shared encoder too)."""
    for name in active:
        task, progress = run.tasks[name], run.state.tasks[name]
        metrics, _ = evaluate(task.data.model, task.data.spec, task.dev, run.accelerator, run.config.eval_batch_size)
        record = progress.history[-1]
        record.update(metrics)
        main = metrics[task.data.spec.main_metric]
        if main > progress.best_metric:
            progress.best_metric, progress.best_epoch, progress.bad_epochs = main, epoch, 0
            run.best[name] = weights_bytes(task.data.model.module)
            run.checkpoints.newer_best(name)
            if task.data.best_weights_path is not None and run.accelerator.is_main_process:
                atomic_write_bytes(task.data.best_weights_path, run.best[name])
        else:
            progress.bad_epochs += 1
        if run.config.trackers:
            prefix = "" if len(run.tasks) == 1 else f"{name}/"
            run.accelerator.log({f"{prefix}{k}": v for k, v in record.items() if k != "epoch"}, step=epoch)
        if run.on_epoch is not None and run.accelerator.is_main_process:
            run.on_epoch(name, record)


def _outcome(run: _Run, name: str, resumed_from: dict[str, int] | None) -> TrainOutcome:
    progress, spec = run.state.tasks[name], run.tasks[name].data.spec
    best = next((h for h in progress.history if h["epoch"] == progress.best_epoch),
                progress.history[-1] if progress.history else {})
    return TrainOutcome(progress.history, progress.best_epoch, {k: best[k] for k in spec.metric_keys if k in best},
                        progress.seconds, progress.seen, run.best.get(name), resumed_from, run.config.mixed_precision)


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
    """Train ``model`` on one task: the one-task case of `train_tasks`; the best epoch's weights end in it."""
    data = TaskData(task, model, train_examples, dev_examples, best_weights_path)
    outcomes = train_tasks([data], config, checkpoint_dir=checkpoint_dir, resume=resume,
                           on_epoch=None if on_epoch is None else lambda _name, record: on_epoch(record))
    return outcomes[task.name]


# ---- processes --------------------------------------------------------------------------------------


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
    result: T = broadcast_object_list([value], from_process=0)[0]
    return result
