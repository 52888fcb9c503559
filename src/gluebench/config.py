"""Every option of gluebench, declared once: name, type, default, help, allowed values.

Three dataclasses hold them. `FamilyOptions` is what a model family reads to build a task model,
`TrainConfig` what the training loop reads, and `RunConfig` (both of them plus what a run adds: model,
tasks, seeds, data and output directories) is what `gluebench run` takes, from the command line or a YAML
file with the same keys. The CLI options of `run` and `sweep`, the YAML keys, validation and the sweep's
searchable keys are all derived from these fields' metadata (`option`), so a setting added here is
reachable everywhere at once. None means "the model family's default" where the help says so.

Every key is checked: an unknown key, a wrong type or an impossible value is a `ConfigError` that names
the key (and the file) and says what is allowed. A value from the command line is checked on its own
(`parse_option`) before it meets a YAML file, so an error blames the place the bad value came from.

Types are coerced by `_check_type` rather than a library (pydantic comes only with typer, not as a
gluebench dependency): the options use five types, the coercion must refuse what pydantic's lax mode
takes (``True`` for 1, ``2.0`` for 2) and split comma-separated lists, and the message must stay one line
in the house style, which a ``ValidationError`` would have to be rewritten into anyway.
"""

from __future__ import annotations

import contextlib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gluebench.errors import ConfigError

EVALUATE_ONLY = ("label_map",)  # options of `gluebench evaluate` that `run` and `sweep` do not take
COMMAND_LINE = "option"  # the `where` of values typed on the command line ("option 'epochs' must be ...")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
TRACKERS = ("tensorboard", "mlflow", "wandb")


@dataclass(frozen=True)
class OptionSpec:
    """What the CLI, YAML validation and sweeps need to know about one option beyond its type."""

    help: str
    choices: tuple[str, ...] | None = None  # allowed values (of each item, for lists)
    nonempty: bool = False  # a list that must name at least one item
    minimum: float | None = None  # smallest allowed value (inclusive)
    below: float | None = None  # values must be smaller than this
    positive: bool = False  # > 0
    short: str | None = None  # a one-letter CLI alias, e.g. "-m"
    sweepable: bool = True  # may vary between the trials of a sweep
    cli: bool = True  # offered as a command-line option (False: set by gluebench itself)


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field carrying its `OptionSpec`; list defaults are copied per instance."""
    metadata = {"option": OptionSpec(help, **spec)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def option_spec(item: Field[Any]) -> OptionSpec:
    """The declaration of a field; every field of the three option classes has one."""
    spec = item.metadata.get("option")
    assert isinstance(spec, OptionSpec), f"{item.name} is not declared with option()"
    return spec


@dataclass
class FamilyOptions:
    """The options a model family reads to build a task model (None: the family's default)."""

    hidden_size: int | None = option(None, "Encoder hidden size (static models).", positive=True)
    max_length: int | None = option(None, "Max tokens per example.", positive=True)
    dropout: float | None = option(None, "Dropout.", minimum=0, below=1)
    embeddings: str | None = option(None, "GloVe .txt/.zip file or adapted-vectors dir (default glove.6B.50d).")
    unfreeze_embeddings: bool = option(False, "Fine-tune the word vectors too.")
    freeze_encoder: bool = option(False, "Transformers: keep the encoder as pretrained, train only an MLP head "
                                  "on its cached sentence vectors (give a head's --lr and --epochs, e.g. 1e-3, 20).")
    pooling: str | None = option(None, "With --freeze-encoder: the sentence vector is the [CLS] state (cls) or "
                                 "the mean of the tokens (mean, the default).", choices=("cls", "mean"))


@dataclass
class TrainConfig:
    """What the training loop reads (``batch_size`` is global: summed over processes).

    ``epochs``, ``batch_size``, ``lr`` and ``warmup_ratio`` of None are filled with the model family's
    defaults before training (`with_family_defaults`).
    """

    epochs: int | None = option(None, "Epochs (family default).", positive=True)
    batch_size: int | None = option(None, "Batch size, summed over processes (family default).", positive=True)
    lr: float | None = option(None, "Peak learning rate (family default).", positive=True)
    weight_decay: float = option(0.0, "AdamW weight decay (not on biases and norms).", minimum=0)
    warmup_ratio: float | None = option(None, "Share of steps for linear warmup (family default).", minimum=0,
                                        below=1)
    grad_accum: int = option(1, "Gradient accumulation steps.", positive=True)
    patience: int = option(2, "Early stopping: epochs without improvement of the main dev metric.", positive=True)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0: no clipping).", minimum=0)
    eval_batch_size: int = option(128, "Batch size for dev and test prediction.", positive=True)
    mixed_precision: str = option("auto", "Mixed precision: auto (accelerate launch's setting if any, else bf16 for "
                                  "the families measured faster in it at the same dev, fine-tuned Transformers, "
                                  "glove-bilstm and glove-transformer, where the GPU or CPU computes bf16 natively, "
                                  "else no), no, fp16 (GPU) or bf16.", choices=MIXED_PRECISION)
    torch_compile: bool = option(False, "torch.compile the model for its training steps (inductor; the first "
                                 "steps pay the compile time, prediction stays eager).")
    checkpoint_steps: int | None = option(None, "Also checkpoint every N optimiser steps inside an epoch.",
                                          positive=True)
    temperature: float = option(1.0, "Multitask sampling temperature (1: proportional to task size).",
                                positive=True)
    trackers: list[str] = option([], "Experiment trackers, comma-separated: tensorboard, mlflow, wandb.",
                                 choices=TRACKERS, sweepable=False)
    tracker_dir: str | None = option(None, "Where file-based trackers (TensorBoard) write.", sweepable=False)
    progress: bool = option(True, "Show progress bars.", sweepable=False)
    seed: int = option(1, "Seed of this training.", cli=False)
    run_name: str = option("gluebench", "Tracker project/run name.", cli=False)

    def with_family_defaults(self, defaults: TrainingDefaults) -> TrainConfig:
        """A copy with every "family default" (None) filled in."""
        return replace(self, epochs=self.epochs or defaults.epochs,
                       batch_size=self.batch_size or defaults.batch_size, lr=self.lr or defaults.lr,
                       warmup_ratio=defaults.warmup_ratio if self.warmup_ratio is None else self.warmup_ratio)


class TrainingDefaults(NamedTuple):
    """The loop settings a model family supplies where a run leaves them unset (`ModelFamily.training_defaults`)."""

    epochs: int
    batch_size: int
    lr: float
    warmup_ratio: float


@dataclass
class RunConfig(TrainConfig, FamilyOptions):
    """Everything `gluebench run` needs: the family's and the loop's options plus what a run adds."""

    model: str = option("glove-bilstm", "Model: glove-cbow, glove-bilstm, glove-transformer, minilm, "
                        "hf:<id|path>.", short="-m")
    tasks: list[str] = option(["all"], "Comma-separated tasks, or 'all'.", short="-t", sweepable=False,
                              nonempty=True)
    seeds: list[int] = option([1], "Comma-separated seeds, e.g. 1,2,3 (mean ± std is reported).", nonempty=True)
    data_dir: str | None = option(None, "GLUE data directory, official TSVs or the Hub's parquet (default: "
                                  "$GLUE_DIR, the cache, the Hugging Face cache, ../shared).", sweepable=False)
    output_dir: str | None = option(None, "Run directory (default runs/<date-time>-<model>).", short="-o",
                                    sweepable=False)
    max_train_examples: int | None = option(None, "Train on a fixed random slice of this size.", positive=True)
    multitask: bool = option(False, "One shared encoder, per-task heads, batches sampled across tasks.")
    label_map: list[str] = option([], "evaluate: which task label each checkpoint output predicts, "
                                  "[TASK:]ID=LABEL,... (e.g. 0=entailment,1=not_entailment).", sweepable=False)

    def validate(self, source: str = COMMAND_LINE) -> RunConfig:
        """Check every value against its declaration; ``source`` names where it came from in errors."""
        for item in fields(self):
            _check_value(item, getattr(self, item.name), source)
        return self

    def family_options(self) -> FamilyOptions:
        return FamilyOptions(**{f.name: getattr(self, f.name) for f in fields(FamilyOptions)})

    def train_config(self, seed: int) -> TrainConfig:
        """The loop's options for one seed (family defaults still None)."""
        values = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        return TrainConfig(**{**values, "seed": seed})

    def options(self) -> dict[str, Any]:
        """The user-facing options (no per-seed fields): what `config_from_mapping` reads back."""
        return {k: v for k, v in asdict(self).items() if option_spec(_FIELDS[k]).cli}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.options(), sort_keys=False)


_FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)
_INHERITED = {f.name for f in (*fields(FamilyOptions), *fields(TrainConfig))}
# the run's own options first (model, tasks, seeds, ...), then the family's, then the loop's
OPTION_NAMES: tuple[str, ...] = tuple(
    name for name in sorted(_FIELDS, key=lambda n: (n in _INHERITED, n in {f.name for f in fields(TrainConfig)}))
    if option_spec(_FIELDS[name]).cli)


def run_options() -> list[Field[Any]]:
    """The user-facing options of a run, in declaration order (the CLI shows them so)."""
    return [_FIELDS[name] for name in OPTION_NAMES]


def option_type(name: str) -> Any:
    return _HINTS[name]


def value_type(name: str) -> tuple[type, bool]:
    """The type of one value of an option, and whether the option takes a list of them."""
    hint = _without_none(_HINTS[name])
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def default_of(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None


def parse_option(name: str, value: Any, where: str = COMMAND_LINE) -> Any:
    """One option's value coerced to its type and checked against its declaration, else a `ConfigError`."""
    checked = _check_type(name, value, _HINTS[name], where)
    _check_value(_FIELDS[name], checked, where)
    return checked


def _subject(key: str, where: str) -> str:
    """How an error names a key: "option 'epochs'" from the command line, "run.yaml: 'epochs'" elsewhere."""
    return f"{where} {key!r}" if where == COMMAND_LINE else f"{where}: {key!r}"


def _without_none(hint: Any) -> Any:
    """``int | None`` → ``int``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _check_value(item: Field[Any], value: Any, where: str) -> None:
    spec = option_spec(item)
    subject = _subject(item.name, where)
    if isinstance(value, list):
        if spec.nonempty and not value:
            raise ConfigError(f"{subject} must name at least one value")
        repeated = sorted({repr(v) for v in value if value.count(v) > 1})
        if repeated:
            raise ConfigError(f"{subject} repeats {', '.join(repeated)}")
    values: Sequence[Any] = value if isinstance(value, list) else [value]
    for one in values:
        if one is None or isinstance(one, bool):
            continue
        if spec.choices is not None and one not in spec.choices:
            raise ConfigError(f"{subject} must be one of {', '.join(spec.choices)}, got {one!r}")
        if not isinstance(one, int | float):
            continue
        if spec.positive and one <= 0:
            raise ConfigError(f"{subject} must be positive, got {one}")
        if spec.minimum is not None and one < spec.minimum:
            raise ConfigError(f"{subject} must be >= {spec.minimum:g}, got {one}")
        if spec.below is not None and one >= spec.below:
            low = f"[{spec.minimum:g}, {spec.below:g})" if spec.minimum is not None else f"< {spec.below:g}"
            raise ConfigError(f"{subject} must be in {low}, got {one}")


def _check_type(key: str, value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to the field's type where that is lossless, else raise naming the key."""
    if value is None and _without_none(hint) is not hint:
        return None
    hint = _without_none(hint)
    if typing.get_origin(hint) is list:
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{_subject(key, where)} must be a list, got {value!r}")
        return [_check_type(key, item, typing.get_args(hint)[0], where) for item in items]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value)
    elif hint is float:
        number: Any = value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number):
            return float(number)
    elif hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{_subject(key, where)} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_mapping(values: dict[str, Any], where: str = "config") -> RunConfig:
    """A checked config from YAML-like ``values`` (CLI strings such as "1,2,3" are coerced too)."""
    unknown = [k for k in values if k not in OPTION_NAMES]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(OPTION_NAMES)})")
    return RunConfig(**{k: parse_option(k, v, where) for k, v in values.items()}).validate(where)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A config from a YAML file, with command-line ``overrides`` (not None) on top."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError("config file not found", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file ({exc})", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("not valid YAML", path=path, line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of keys to values", path=path)
    merged = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return config_from_mapping(merged, where=str(path))
