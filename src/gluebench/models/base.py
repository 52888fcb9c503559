"""The one small interface every model family implements.

A *family* (GloVe + CBOW/BiLSTM/Transformer, a pretrained Transformer, ...) knows how to build a
`TaskModel` for one task: a torch module plus the code that turns `Example`s into tensors. The shared
training loop (`gluebench.training`) does everything else (batching, optimisation, early stopping,
checkpoints, prediction), so `run`, `sweep` and `analysis` never care which family it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from gluebench.config import FamilyOptions
from gluebench.data.read import Example
from gluebench.errors import GluebenchError
from gluebench.tasks import TaskSpec

Feature = dict[str, Any]
Batch = dict[str, torch.Tensor]


class TaskModel(Protocol):
    """A model for one task: ``module(**collate(features))`` returns logits ``[B, C]`` or scores ``[B]``."""

    module: nn.Module

    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        """Tokenize examples once; each feature carries whatever `collate` needs."""
        ...

    def collate(self, features: Sequence[Feature]) -> Batch:
        """Pad a list of features into a batch (dynamic padding: to the longest in the batch)."""
        ...

    def length(self, feature: Feature) -> int:
        """Token length of a feature, used to group batches by length."""
        ...

    def metadata(self) -> dict[str, Any]:
        """JSON-able state beyond the weights (vocabulary, label map) needed to rebuild the model."""
        ...

    def layer_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example representations at each named layer, in forward order, for analysis."""
        ...


class ModelFamily(Protocol):
    """Builds task models; holds the defaults its training needs."""

    name: str
    default_lr: float
    default_epochs: int
    default_batch_size: int

    def build(self, task: TaskSpec, examples: Sequence[Example], options: FamilyOptions, seed: int) -> TaskModel:
        """A fresh model for ``task``; ``examples`` are all texts the run will see (for vocabularies)."""
        ...

    def restore(self, task: TaskSpec, metadata: dict[str, Any], options: FamilyOptions) -> TaskModel:
        """Rebuild a model saved with `TaskModel.metadata` (weights are loaded by the caller)."""
        ...


FAMILIES: dict[str, Callable[[str], ModelFamily]] = {}


def register_family(*names: str) -> Callable[[Callable[[str], ModelFamily]], Callable[[str], ModelFamily]]:
    """Decorator: make a family factory available under ``--model NAME``."""

    def decorate(factory: Callable[[str], ModelFamily]) -> Callable[[str], ModelFamily]:
        for name in names:
            FAMILIES[name] = factory
        return factory

    return decorate


def get_family(name: str) -> ModelFamily:
    """The family for ``--model NAME``; ``hf:<id or path>`` selects any Hugging Face encoder."""
    import gluebench.models  # noqa: F401  (registers the built-in families)

    key = "hf:" if name.startswith("hf:") else name
    if key not in FAMILIES:
        known = ", ".join(sorted(n for n in FAMILIES if n != "hf:"))
        raise GluebenchError(f"unknown model {name!r} (choose from: {known}, or hf:<model id or path>)")
    return FAMILIES[key](name)
