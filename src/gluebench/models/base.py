"""The contract every model family implements, with its optional capabilities declared.

A *family* (GloVe + CBOW/BiLSTM/Transformer, a pretrained Transformer, ...) knows how to build a
`TaskModel` for one task: a torch module plus the code that turns `Example`s into tensors. The shared
training loop (`gluebench.training`) does everything else (batching, optimisation, early stopping,
checkpoints, prediction), so `run`, `sweep` and `analysis` never care which family it is.

What only some families offer is a `Capability`, declared in ``capabilities`` (on the family, and on the
task models it builds) so that callers ask ``Capability.X in family.capabilities`` instead of probing for
attributes. The method behind a capability that is not declared raises `UnsupportedCapability`, one line
that names the model and what it lacks. ``tests/test_family_contract.py`` checks every registered family
against this contract.
"""

from __future__ import annotations

import contextlib
import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gluebench.config import FamilyOptions, TrainingDefaults
from gluebench.data.read import Example
from gluebench.errors import GluebenchError
from gluebench.tasks import TaskSpec

Feature = dict[str, Any]
Batch = dict[str, torch.Tensor]


class Capability(enum.Enum):
    """What a family may offer beyond build / encode / collate / restore (the value is how errors name it).

    - MULTITASK: `ModelFamily.build_multitask`, one shared encoder with a head per task;
    - FINETUNED: `ModelFamily.load_finetuned`, a checkpoint someone else fine-tuned, evaluated as it is;
    - LAYER_OUTPUTS: `TaskModel.layer_outputs`, for probing and representation analysis;
    - TOKEN_OUTPUTS: `TaskModel.token_outputs`, every token's vector at every layer, for token-level
      analysis (how contextual a layer is: one word's vectors in different sentences);
    - WORD_EMBEDDINGS: `TaskModel.word_embedding`, `word_vocabulary`, `read_words` and
      `pretrained_word_embedding`, the input word vectors and the words they stand for;
    - TASK_VOCABULARY: no method, a property analysis must know: the word vocabulary is built from each
      task's own texts, so models of different tasks may read one sentence differently (a word one of them
      lacks reads as the unknown word there).
    """

    MULTITASK = "multitask training (one shared encoder, a head per task)"
    FINETUNED = "evaluating a checkpoint already fine-tuned for the task"
    LAYER_OUTPUTS = "per-layer outputs"
    TOKEN_OUTPUTS = "per-token layer outputs"
    WORD_EMBEDDINGS = "word embeddings"
    TASK_VOCABULARY = "a word vocabulary built per task"


class UnsupportedCapability(GluebenchError):
    """A capability was used that the model family does not declare."""

    def __init__(self, model: str, capability: Capability) -> None:
        super().__init__(f"{model} does not offer {capability.value}")
        self.capability = capability


@dataclass
class TokenOutputs:
    """TOKEN_OUTPUTS: one text as a model reads it, token by token, at each layer.

    ``words`` are the text's words as the model reads them (normalised as it normalises them; None for a
    word it does not know); ``word_of_token[t]`` is the index in ``words`` of token ``t``, -1 for a token of
    no word ([CLS], [SEP]). A word split into subword tokens has several tokens; averaging them is the
    caller's choice. ``layers`` maps each layer, in forward order, to a ``[tokens, width]`` float32 array.
    """

    words: list[str | None]
    word_of_token: np.ndarray
    layers: dict[str, np.ndarray]


class TaskModel(ABC):
    """A model for one task: ``module(**collate(features))`` returns logits ``[B, C]`` or scores ``[B]``."""

    module: nn.Module
    capabilities: frozenset[Capability] = frozenset()  # of LAYER_OUTPUTS, TOKEN_OUTPUTS, WORD_EMBEDDINGS, ...
    # what `--mixed-precision auto` takes on a device that computes bf16 natively: "bf16" where the family was
    # measured faster in it at the same accuracy (docs/results/speed.md; each family says where), else "no"
    auto_precision: str = "no"

    @abstractmethod
    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        """Tokenize examples once; each feature carries whatever `collate` needs."""

    @abstractmethod
    def collate(self, features: Sequence[Feature]) -> Batch:
        """Pad a list of features into a batch (dynamic padding: to the longest in the batch)."""

    @abstractmethod
    def length(self, feature: Feature) -> int:
        """Token length of a feature, used to group batches by length."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """JSON-able state beyond the weights (vocabulary, label map) needed to rebuild the model."""

    @abstractmethod
    def export(self, directory: Path) -> None:
        """Write the model in its ecosystem's own format (no pickles), for `ModelFamily.load_exported`."""

    @contextlib.contextmanager
    def training_layout(self, features: Sequence[Feature], weight_decay: float) -> Iterator[None]:
        """The module laid out for training on ``features`` while the context lasts (default: as it is).

        A family may train an equivalent, cheaper layout (the Transformer family: only the embedding rows
        the features use); the state dict keeps the ordinary layout throughout, and the module gets it
        back, trained, when the context ends.
        """
        yield

    @contextlib.contextmanager
    def prediction_layout(self) -> Iterator[None]:
        """The module laid out for predicting outputs (logits, scores) while the context lasts (default: as
        it is); a family may compute only what its output needs (the Transformer family: the top layer at
        the first token)."""
        yield

    def layer_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """LAYER_OUTPUTS: ``[B, width]`` per example at each named layer, in forward order, the output last."""
        raise UnsupportedCapability(type(self).__name__, Capability.LAYER_OUTPUTS)

    def token_outputs(self, texts: Sequence[str]) -> list[TokenOutputs]:
        """TOKEN_OUTPUTS: each text, given alone (no second text), token by token at every layer."""
        raise UnsupportedCapability(type(self).__name__, Capability.TOKEN_OUTPUTS)

    def word_embedding(self) -> torch.Tensor:
        """WORD_EMBEDDINGS: the ``[V, D]`` input word-embedding weight itself (``requires_grad``: it trains)."""
        raise UnsupportedCapability(type(self).__name__, Capability.WORD_EMBEDDINGS)

    def word_vocabulary(self) -> list[str]:
        """WORD_EMBEDDINGS: the word (or token) of each row of `word_embedding`."""
        raise UnsupportedCapability(type(self).__name__, Capability.WORD_EMBEDDINGS)

    def read_words(self, text: str) -> list[str | None]:
        """WORD_EMBEDDINGS: the vocabulary entries ``text`` is read as, None for a word the vocabulary lacks."""
        raise UnsupportedCapability(type(self).__name__, Capability.WORD_EMBEDDINGS)

    def pretrained_word_embedding(self, options: FamilyOptions) -> torch.Tensor:
        """WORD_EMBEDDINGS: the rows of `word_embedding` as training found them, re-read from their source."""
        raise UnsupportedCapability(type(self).__name__, Capability.WORD_EMBEDDINGS)


class ModelFamily(ABC):
    """Builds task models; holds the defaults its training needs (every one is required)."""

    name: str
    default_lr: float
    default_epochs: int
    default_batch_size: int
    default_warmup: float  # share of the training steps spent warming the learning rate up
    capabilities: frozenset[Capability] = frozenset()  # its task models' capabilities, MULTITASK, FINETUNED

    def training_defaults(self, options: FamilyOptions) -> TrainingDefaults:
        """What training a model built with ``options`` takes where the run leaves a setting unset."""
        return TrainingDefaults(self.default_epochs, self.default_batch_size, self.default_lr, self.default_warmup)

    @abstractmethod
    def build(self, task: TaskSpec, examples: Sequence[Example], options: FamilyOptions, seed: int) -> TaskModel:
        """A fresh model for ``task``; ``examples`` are all texts the run will see (for vocabularies)."""

    @abstractmethod
    def restore(self, task: TaskSpec, metadata: dict[str, Any], options: FamilyOptions) -> TaskModel:
        """Rebuild a model saved with `TaskModel.metadata` (weights are loaded by the caller)."""

    @abstractmethod
    def load_exported(self, task: TaskSpec, directory: Path, options: FamilyOptions) -> TaskModel:
        """The model `TaskModel.export` wrote to ``directory``, weights included."""

    def load_finetuned(self, task: TaskSpec, options: FamilyOptions,
                       label_map: dict[int, str] | None = None) -> TaskModel:
        """FINETUNED: the family's checkpoint as it is (its own head), outputs in the task's label order.

        ``label_map`` names the task label of each checkpoint output where its own label names do not say.
        """
        raise UnsupportedCapability(f"--model {self.name}", Capability.FINETUNED)

    def build_multitask(self, tasks: Sequence[TaskSpec], examples: dict[str, Sequence[Example]],
                        options: FamilyOptions, seed: int) -> dict[str, TaskModel]:
        """MULTITASK: one model per task name, all sharing one encoder, each with its own head."""
        raise UnsupportedCapability(f"--model {self.name}", Capability.MULTITASK)


__all__ = ["Batch", "Capability", "FamilyOptions", "Feature", "ModelFamily", "TaskModel", "TokenOutputs",
           "UnsupportedCapability"]
