"""The run configuration: one dataclass, filled from defaults, a YAML file and command-line options.

Every key is checked: an unknown key, a wrong type or an impossible value is a `ConfigError` that names
the key (and the file) and says what is allowed.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from gluebench.errors import ConfigError


@dataclass
class RunConfig:
    """Everything `gluebench run` needs; None means "the model family's default"."""

    model: str = "glove-bilstm"
    tasks: list[str] = field(default_factory=lambda: ["all"])
    seeds: list[int] = field(default_factory=lambda: [1])
    data_dir: str | None = None
    output_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float | None = None
    grad_accum: int = 1
    patience: int = 2
    max_length: int | None = None
    hidden_size: int | None = None
    dropout: float | None = None
    embeddings: str | None = None
    unfreeze_embeddings: bool = False
    max_train_examples: int | None = None
    mixed_precision: str = "no"
    multitask: bool = False
    temperature: float = 1.0
    progress: bool = True

    def validate(self, source: str = "option") -> RunConfig:
        """Check values that types alone cannot; ``source`` names where they came from in errors."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "grad_accum": self.grad_accum, "patience": self.patience, "max_length": self.max_length,
                    "hidden_size": self.hidden_size, "max_train_examples": self.max_train_examples,
                    "temperature": self.temperature}
        for key, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"{source} {key!r} must be positive, got {value}")
        for key, value in {"dropout": self.dropout, "warmup_ratio": self.warmup_ratio}.items():
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{source} {key!r} must be in [0, 1), got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"{source} 'weight_decay' must be >= 0, got {self.weight_decay}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"{source} 'mixed_precision' must be one of no, fp16, bf16, got {self.mixed_precision!r}")
        if not self.seeds:
            raise ConfigError(f"{source} 'seeds' must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{source} 'seeds' has duplicates: {self.seeds}")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


_HINTS = typing.get_type_hints(RunConfig)


def _check_type(key: str, value: Any, hint: Any, where: str) -> Any:
    """Coerce ``value`` to the field's type where that is lossless, else raise naming the key."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: {key!r} must be a list, got {value!r}")
        return [_check_type(key, item, args[0], where) for item in items]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: {key!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_mapping(values: dict[str, Any], where: str = "config") -> RunConfig:
    allowed = [f.name for f in fields(RunConfig)]
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
    checked = {k: _check_type(k, v, _HINTS[k], where) for k, v in values.items()}
    return RunConfig(**checked).validate(where)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A config from a YAML file, with command-line ``overrides`` (not None) on top."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError("config file not found", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("not valid YAML", path=path, line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of keys to values", path=path)
    merged = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return config_from_mapping(merged, where=str(path))
