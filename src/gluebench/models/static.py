"""Static-embedding baselines: GloVe vectors in a frozen embedding layer, a sentence encoder, an MLP head.

Three encoders, as in the GLUE paper's baselines and the first seed:

- ``glove-cbow``: the mean of the word vectors;
- ``glove-bilstm``: a BiLSTM over packed sequences, max-pooled over the real tokens (the GLUE baseline);
- ``glove-transformer``: a small Transformer encoder with learned positions and a padding mask, mean-pooled
  over the real tokens.

Pair tasks encode both sentences with the one shared encoder (in a single call: the two halves of the batch
are stacked) and classify ``[u; v; |u - v|; u * v]`` with an MLP of 512 hidden units; regression (STS-B) has a
single output. Padding never changes an example's output: the Transformer masks padded keys, every pooling
looks at real tokens only, and the BiLSTM reads each sentence exactly as over a packed sequence.

Why the BiLSTM is not an ``nn.LSTM`` over a ``PackedSequence``: on CPU, PyTorch runs packed input of mixed
lengths through its generic step-by-step kernel, while padded input goes to the fused oneDNN kernel, which
trains faster on the same length-grouped SST-2 batches (``docs/results/static.md``). Packing's guarantee is
kept exactly: the forward direction reads the padded batch (padding comes after every real token, so it
cannot reach them), and the backward direction reads each sentence reversed *within its length* (so it also
starts at the sentence's last real token). The outputs equal a packed bidirectional ``nn.LSTM``'s (tests
check this), and pooling ignores the padded positions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from gluebench.data.read import Example
from gluebench.embeddings import Vocabulary, WordVectors, coverage, load_vectors, needed_words
from gluebench.errors import GluebenchError
from gluebench.models.base import (
    Batch,
    Capability,
    FamilyOptions,
    Feature,
    ModelFamily,
    TaskModel,
    TokenOutputs,
    UnsupportedCapability,
)
from gluebench.runs import atomic_write_bytes, atomic_write_json, atomic_write_text
from gluebench.tasks import TaskSpec

log = logging.getLogger("gluebench")

MLP_HIDDEN = 512


LARGE_TASK = 20_000  # training examples from which a task counts as large for the dropout default


@dataclass(frozen=True)
class FamilyDefaults:
    """Training and size defaults of one encoder, chosen on the real dev sets with a 2-core CPU in mind.

    Head dropout depends on the size of the task's training set, because the two ends pull apart with
    frozen 50-d vectors: glove-bilstm on SST-2 (67k) overfits its phrases within two epochs without dropout
    (dev 80.0 at 0.0, 82.9 at 0.3), while on CoLA (8.5k) any dropout keeps the model on the majority class
    until early stopping ends it (MCC over seeds 1-3: 11.5 at 0.0, 9.7 at 0.1).
    """

    lr: float
    epochs: int
    batch_size: int
    warmup: float
    hidden_size: int
    dropout: float  # tasks with fewer than LARGE_TASK training examples
    large_task_dropout: float
    max_length: int = 128

    def dropout_for(self, task: TaskSpec) -> float:
        train_rows = next((split.rows for split in task.splits if split.name == "train"), 0)
        return self.large_task_dropout if train_rows >= LARGE_TASK else self.dropout


DEFAULTS: dict[str, FamilyDefaults] = {
    "glove-cbow": FamilyDefaults(lr=1e-3, epochs=20, batch_size=64, warmup=0.0, hidden_size=MLP_HIDDEN, dropout=0.1,
                                 large_task_dropout=0.1),
    "glove-bilstm": FamilyDefaults(lr=1e-3, epochs=10, batch_size=64, warmup=0.0, hidden_size=256, dropout=0.0,
                                   large_task_dropout=0.3),
    "glove-transformer": FamilyDefaults(lr=5e-4, epochs=10, batch_size=64, warmup=0.1, hidden_size=128,
                                        dropout=0.1, large_task_dropout=0.1),
}


@dataclass(frozen=True)
class StaticConfig:
    """Everything needed to rebuild a module (saved in ``model_meta.json``; weights come separately)."""

    encoder: str  # cbow, bilstm, transformer
    vocab_size: int
    dim: int
    hidden_size: int
    dropout: float
    max_length: int
    num_outputs: int
    pair: bool
    freeze: bool
    layers: int = 2  # Transformer layers
    heads: int = 4  # Transformer attention heads


def _mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, width]`` True at real tokens."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def reverse_within_lengths(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` steps of ``[N, L, D]``, leaving the padding after them in place."""
    width = states.shape[1]
    steps = torch.arange(width, device=states.device)[None, :].expand(states.shape[0], width)
    source = lengths[:, None] - 1 - steps
    source = torch.where(source >= 0, source, steps)
    return states.gather(1, source.unsqueeze(-1).expand(-1, -1, states.shape[2]))


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class SentenceEncoder(nn.Module):
    """Word ids ``[N, L]`` and lengths ``[N]`` to one vector per sentence (``output_size`` wide).

    No dropout on the word vectors: with frozen 50-d vectors it kept CoLA on the majority class for four
    epochs or more (dropout is in the head, and inside the Transformer layers).
    """

    def __init__(self, config: StaticConfig) -> None:
        super().__init__()
        self.kind = config.encoder
        self.embedding = nn.Embedding(config.vocab_size, config.dim, padding_idx=Vocabulary.PAD)
        self.embedding.weight.requires_grad_(not config.freeze)
        if self.kind == "bilstm":
            self.lstm_forward = nn.LSTM(config.dim, config.hidden_size, batch_first=True)
            self.lstm_backward = nn.LSTM(config.dim, config.hidden_size, batch_first=True)
            self.output_size = 2 * config.hidden_size
        elif self.kind == "transformer":
            self.project = nn.Linear(config.dim, config.hidden_size)
            self.positions = nn.Embedding(config.max_length, config.hidden_size)
            layer = nn.TransformerEncoderLayer(config.hidden_size, config.heads, 2 * config.hidden_size,
                                               config.dropout, batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(config.hidden_size)
            self.output_size = config.hidden_size
        elif self.kind == "cbow":
            self.output_size = config.dim
        else:
            raise GluebenchError(f"unknown static encoder {self.kind!r} (choose from: cbow, bilstm, transformer)")

    def token_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[N, L, width]`` per token, in forward order: the word vectors, then the encoder's states (not CBOW)."""
        words = self.embedding(ids)
        out = {"word_vectors": words}
        if self.kind == "bilstm":
            backward = self.lstm_backward(reverse_within_lengths(words, lengths))[0]
            out["encoder"] = torch.cat([self.lstm_forward(words)[0], reverse_within_lengths(backward, lengths)],
                                       dim=-1)
        elif self.kind == "transformer":
            positions = torch.arange(ids.shape[1], device=ids.device)
            hidden = self.project(words) + self.positions(positions)[None]
            mask = _mask(lengths, ids.shape[1])
            out["encoder"] = self.norm(self.transformer(hidden, src_key_padding_mask=~mask))
        return out

    def layers(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooled representations in forward order: embeddings, encoder states (not CBOW), sentence."""
        mask = _mask(lengths, ids.shape[1])
        tokens = self.token_states(ids, lengths)
        out = {"embeddings": _masked_mean(tokens["word_vectors"], mask)}
        if self.kind == "cbow":
            out["sentence"] = out["embeddings"]
            return out
        states = tokens["encoder"]
        out["encoder"] = _masked_mean(states, mask)
        if self.kind == "bilstm":
            out["sentence"] = states.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        else:
            out["sentence"] = out["encoder"]
        return out

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.layers(ids, lengths)["sentence"]


class Head(nn.Module):
    """The GLUE baselines' classifier (jiant's MLP): dropout, 512 tanh units with layer norm, dropout, output."""

    def __init__(self, in_size: int, num_outputs: int, dropout: float, hidden_size: int = MLP_HIDDEN) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_size, hidden_size), nn.Tanh(),
                                    nn.LayerNorm(hidden_size), nn.Dropout(dropout))
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(features))


class StaticClassifier(nn.Module):
    """Encoder + head. ``ids``/``lengths`` hold B sentences, or 2B for pair tasks (all first texts, then seconds)."""

    def __init__(self, encoder: SentenceEncoder, head: Head, pair: bool, regression: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.pair = pair
        self.regression = regression

    def _features(self, sentences: torch.Tensor) -> torch.Tensor:
        if not self.pair:
            return sentences
        u, v = sentences.chunk(2)
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        output = self.head(self._features(self.encoder(ids, lengths)))
        return output.squeeze(-1) if self.regression else output

    def layers(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example representations at each named layer, in forward order (pairs: ``[a; b]`` side by side)."""
        pooled = self.encoder.layers(ids, lengths)
        out = {name: torch.cat(value.chunk(2), dim=-1) if self.pair else value for name, value in pooled.items()}
        out["features"] = self._features(pooled["sentence"])
        out["classifier"] = self.head.hidden(out["features"])
        out["output"] = self.head.out(out["classifier"])
        return out


def static_capabilities(encoder: str) -> frozenset[Capability]:
    """What a static model offers; per-token outputs only where an encoder gives more than the word vectors."""
    base = {Capability.LAYER_OUTPUTS, Capability.WORD_EMBEDDINGS, Capability.TASK_VOCABULARY}
    return frozenset(base if encoder == "cbow" else base | {Capability.TOKEN_OUTPUTS})


# What `--mixed-precision auto` takes per encoder where the device computes bf16 natively: bf16 where full runs
# over seeds kept every task's mean dev within 1 point and trained faster (docs/results/speed.md, (d)):
# glove-bilstm (5 tasks x 5 seeds, within 0.1 point, 1.24-1.68x), glove-transformer (5 tasks x 5 seeds, within
# 0.7 point, 1.05-1.21x); fp32 for glove-cbow (same dev, not faster: 0.86-1.08x).
AUTO_PRECISION = {"bilstm": "bf16", "transformer": "bf16"}


class StaticTaskModel(TaskModel):
    """A `TaskModel`: the vocabulary that turns examples into word ids, and the module."""

    module: StaticClassifier

    def __init__(self, module: StaticClassifier, vocab: Vocabulary, config: StaticConfig,
                 extra: dict[str, Any]) -> None:
        self.module = module
        self.vocab = vocab
        self.config = config
        self.extra = extra  # family, embeddings source, coverage
        self.capabilities = static_capabilities(config.encoder)
        self.auto_precision = AUTO_PRECISION.get(config.encoder, "no")

    def _ids(self, text: str) -> torch.Tensor:
        ids = self.vocab.encode(text)[: self.config.max_length] or [Vocabulary.UNK]  # never an empty sequence
        return torch.tensor(ids, dtype=torch.long)

    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        if self.config.pair:
            return [{"a": self._ids(e.text_a), "b": self._ids(e.text_b or "")} for e in examples]
        return [{"a": self._ids(e.text_a)} for e in examples]

    def collate(self, features: Sequence[Feature]) -> Batch:
        sentences = [f["a"] for f in features] + ([f["b"] for f in features] if self.config.pair else [])
        lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
        return {"ids": pad_sequence(sentences, batch_first=True, padding_value=Vocabulary.PAD), "lengths": lengths}

    def length(self, feature: Feature) -> int:
        return sum(len(ids) for ids in feature.values())

    def metadata(self) -> dict[str, Any]:
        return {**self.extra, "config": asdict(self.config), "lowercase": self.vocab.lowercase,
                "words": self.vocab.words}

    def export(self, directory: Path) -> None:
        """``model.safetensors`` + ``config.json`` (architecture, family, labels) + ``vocab.txt`` (one word a line)."""
        meta = self.metadata()
        words = meta.pop("words")
        atomic_write_json(directory / "config.json", meta)
        atomic_write_text(directory / "vocab.txt", "".join(f"{word}\n" for word in words))
        atomic_write_bytes(directory / "model.safetensors", save({k: v.detach().cpu().contiguous()
                                                                  for k, v in self.module.state_dict().items()}))

    def layer_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.module.layers(batch["ids"], batch["lengths"])

    def token_outputs(self, texts: Sequence[str]) -> list[TokenOutputs]:
        """Each word's input vector and the encoder's state at it (each text alone; one token per word)."""
        if Capability.TOKEN_OUTPUTS not in self.capabilities:
            raise UnsupportedCapability(type(self).__name__, Capability.TOKEN_OUTPUTS)
        encoder, was_training = self.module.encoder, self.module.training
        self.module.eval()
        outputs = []
        try:
            with torch.no_grad():
                for text in texts:
                    ids = self._ids(text)
                    layers = encoder.token_states(ids[None], torch.tensor([len(ids)]))
                    words = self.read_words(text)[: len(ids)] or [None]
                    outputs.append(TokenOutputs(words, np.arange(len(ids)),
                                                {k: v[0].float().cpu().numpy() for k, v in layers.items()}))
        finally:
            self.module.train(was_training)
        return outputs

    def word_embedding(self) -> torch.Tensor:
        return self.module.encoder.embedding.weight

    def word_vocabulary(self) -> list[str]:
        return ["<pad>", "<unk>", *self.vocab.words]

    def read_words(self, text: str) -> list[str | None]:
        return [None if row == Vocabulary.UNK else self.vocab.words[row - 2] for row in self.vocab.encode(text)]

    def pretrained_word_embedding(self, options: FamilyOptions) -> torch.Tensor:
        """The vectors of this vocabulary's words in ``options.embeddings`` (zero where a word is missing)."""
        vectors = load_vectors(options.embeddings, set(self.vocab.words))
        found = dict(zip(vectors.words, vectors.vectors, strict=True))
        matrix = np.zeros(tuple(self.word_embedding().shape), dtype=np.float32)
        for word, row in self.vocab.index.items():
            if word in found:
                matrix[row] = found[word]
        return torch.from_numpy(matrix)


class StaticFamily(ModelFamily):
    """``glove-cbow``, ``glove-bilstm`` and ``glove-transformer``: one class, the encoder named by the model."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.defaults = DEFAULTS[name]
        self.encoder = name.removeprefix("glove-")
        self.capabilities = static_capabilities(self.encoder) | {Capability.MULTITASK}
        self.default_lr = self.defaults.lr
        self.default_epochs = self.defaults.epochs
        self.default_batch_size = self.defaults.batch_size
        self.default_warmup = self.defaults.warmup

    def _config(self, task: TaskSpec, vectors: WordVectors, vocab: Vocabulary, options: FamilyOptions) -> StaticConfig:
        return StaticConfig(
            encoder=self.encoder, vocab_size=len(vocab), dim=vectors.dim,
            hidden_size=options.hidden_size or self.defaults.hidden_size,
            dropout=self.defaults.dropout_for(task) if options.dropout is None else options.dropout,
            max_length=options.max_length or self.defaults.max_length, num_outputs=task.num_labels,
            pair=task.is_pair, freeze=not options.unfreeze_embeddings,
        )

    def _module(self, config: StaticConfig, encoder: SentenceEncoder | None = None) -> StaticClassifier:
        encoder = encoder or SentenceEncoder(config)
        in_size = encoder.output_size * (4 if config.pair else 1)
        head_hidden = config.hidden_size if self.encoder == "cbow" else MLP_HIDDEN
        head = Head(in_size, config.num_outputs, config.dropout, head_hidden)
        return StaticClassifier(encoder, head, config.pair, config.num_outputs == 1)

    def _fresh_module(self, task: TaskSpec, config: StaticConfig,
                      encoder: SentenceEncoder | None = None) -> StaticClassifier:
        """A new module; a regression head starts at the middle of the label range, not at 0."""
        module = self._module(config, encoder)
        if task.label_range is not None:
            nn.init.constant_(module.head.out.bias, sum(task.label_range) / 2)
        return module

    def _vocabulary(self, texts: list[str], options: FamilyOptions) -> tuple[WordVectors, Vocabulary]:
        vectors = load_vectors(options.embeddings, needed_words(texts))
        if not vectors.words:
            raise GluebenchError(f"the embeddings {vectors.source} have none of the task's words (--embeddings)")
        return vectors, Vocabulary(vectors.words, vectors.lowercase)

    def _task_model(self, task: TaskSpec, module: StaticClassifier, vectors: WordVectors, vocab: Vocabulary,
                    config: StaticConfig, texts: list[str]) -> StaticTaskModel:
        share, tokens = coverage(vocab, texts)
        log.info("%s: %s covers %.2f%% of %d tokens (%d word types with a vector)", task.name, vectors.source,
                 share, tokens, len(vectors.words))
        extra = {"family": self.name, "embeddings": vectors.source, "coverage": round(share, 3)}
        return StaticTaskModel(module, vocab, config, extra)

    def build(self, task: TaskSpec, examples: Sequence[Example], options: FamilyOptions,
              seed: int) -> StaticTaskModel:
        texts = _texts(examples)
        vectors, vocab = self._vocabulary(texts, options)
        config = self._config(task, vectors, vocab, options)
        torch.manual_seed(seed)
        module = self._fresh_module(task, config)
        module.encoder.embedding.weight.data.copy_(torch.from_numpy(vocab.matrix(vectors.vectors)))
        return self._task_model(task, module, vectors, vocab, config, texts)

    def build_multitask(self, tasks: Sequence[TaskSpec], examples: dict[str, Sequence[Example]],
                        options: FamilyOptions, seed: int) -> dict[str, TaskModel]:
        """One model per task, all sharing one vocabulary and one encoder (embedding included); own heads."""
        all_texts = _texts([e for group in examples.values() for e in group])
        vectors, vocab = self._vocabulary(all_texts, options)
        torch.manual_seed(seed)
        shared: SentenceEncoder | None = None
        models: dict[str, TaskModel] = {}
        for task in tasks:
            config = self._config(task, vectors, vocab, options)
            module = self._fresh_module(task, config, shared)
            if shared is None:
                shared = module.encoder
                shared.embedding.weight.data.copy_(torch.from_numpy(vocab.matrix(vectors.vectors)))
            models[task.name] = self._task_model(task, module, vectors, vocab, config, _texts(examples[task.name]))
        return models

    def restore(self, task: TaskSpec, metadata: dict[str, Any], options: FamilyOptions) -> StaticTaskModel:
        try:
            config = StaticConfig(**metadata["config"])
            vocab = Vocabulary(list(metadata["words"]), bool(metadata["lowercase"]))
        except (KeyError, TypeError) as exc:
            raise GluebenchError(f"model metadata does not describe a {self.name} model ({exc})") from exc
        if config.encoder != self.encoder or config.vocab_size != len(vocab):
            raise GluebenchError(f"model metadata is for glove-{config.encoder} with {config.vocab_size} rows, "
                                 f"not {self.name} with {len(vocab)}")
        extra: dict[str, Any] = {k: metadata[k] for k in ("family", "embeddings", "coverage") if k in metadata}
        return StaticTaskModel(self._module(config), vocab, config, extra)

    def load_exported(self, task: TaskSpec, directory: Path, options: FamilyOptions) -> StaticTaskModel:
        """What `StaticTaskModel.export` wrote; a missing or damaged file is a one-line error naming it."""
        config_file, vocab_file, weights_file = (directory / n for n in ("config.json", "vocab.txt",
                                                                          "model.safetensors"))
        try:
            metadata = json.loads(config_file.read_text(encoding="utf-8"))
            words = vocab_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GluebenchError(f"not a gluebench static-model export ({exc})", path=directory) from exc
        model = self.restore(task, {**metadata, "words": words}, options)
        try:
            weights = load_file(str(weights_file))
            model.module.load_state_dict(weights)
        except Exception as exc:  # safetensors' own errors for a damaged file; RuntimeError for a misfit
            raise GluebenchError(f"weights do not load ({str(exc).splitlines()[0][:200]})", path=weights_file) \
                from exc
        return model


def _texts(examples: Sequence[Example]) -> list[str]:
    return [text for e in examples for text in (e.text_a, e.text_b) if text]


__all__ = ["DEFAULTS", "StaticClassifier", "StaticFamily", "StaticTaskModel"]
