"""The Transformer family's cheaper training layouts change no result: the fused query/key/value projection
and the first-token top layer, alone and together, give the full model's logits and gradients (BERT, RoBERTa,
ELECTRA, and MiniLM on real rows); numpy dropout masks drop at the stated rate, scale to an unbiased
expectation, follow torch's seed, and train MiniLM as torch's do."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from gluebench.artifacts import subsample
from gluebench.config import TrainConfig
from gluebench.data.read import read_split
from gluebench.models import FamilyOptions, get_family
from gluebench.models.bert_layers import first_token_top_layer, fused_qkv_attention
from gluebench.models.dropout import LEVELS, keep_mask, numpy_dropout_masks
from gluebench.models.transformer import TRAINING_LAYOUTS, TransformerTaskModel
from gluebench.tasks import TASKS
from gluebench.training import make_accelerator, predict_outputs, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 48, "num_labels": 3, "max_position_embeddings": 64}
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def _tiny(kind: str, attention: str, dropout: bool = True) -> nn.Module:
    """A small randomly initialised sequence classifier of ``kind`` (no download needed)."""
    sizes = {**SIZES, **({} if dropout else NO_DROPOUT)}
    config: BertConfig | RobertaConfig | ElectraConfig
    if kind == "bert":
        config = BertConfig(**sizes)
        model: nn.Module = BertForSequenceClassification(config)
    elif kind == "roberta":
        config = RobertaConfig(**sizes, pad_token_id=1)
        model = RobertaForSequenceClassification(config)
    else:
        config = ElectraConfig(**sizes, embedding_size=16)
        model = ElectraForSequenceClassification(config)
    model.config._attn_implementation = attention
    return model


def _padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 120, (4, 11), generator=generator)
    mask = torch.ones_like(ids)
    for row, length in enumerate([11, 7, 3, 9]):
        mask[row, length:] = 0
        ids[row, length:] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _bert_layouts(model: nn.Module, layouts: str) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for name in layouts.split("+"):
        layout = {"first-token": first_token_top_layer, "fused-qkv": fused_qkv_attention}[name]
        assert stack.enter_context(layout(model))  # applied
    return stack


def _logits_and_grads(model: nn.Module, batch: dict[str, torch.Tensor],
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward (of the squared logits): the logits and every parameter's gradient."""
    model.zero_grad()
    logits = model(**batch).logits
    logits.pow(2).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("layouts", ["first-token", "fused-qkv", "first-token+fused-qkv"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_bert_layouts_give_the_full_models_logits_and_gradients(kind: str, attention: str, layouts: str) -> None:
    torch.manual_seed(1)
    model = _tiny(kind, attention, dropout=False)
    batch = _padded_batch()
    model.train()  # no dropout configured: training mode is deterministic
    full, full_grads = _logits_and_grads(model, batch)  # the layer as transformers defines it
    with _bert_layouts(model, layouts):
        fast, fast_grads = _logits_and_grads(model, batch)
    for layer in model.base_model.encoder.layer:  # the layers' own forwards are back
        assert "forward" not in vars(layer) and "forward" not in vars(layer.attention.self)
    assert torch.allclose(fast, full, rtol=1e-5, atol=1e-6)
    # the top layer's queries, attention output and feed-forward get gradients from the first token alone,
    # which is every gradient they get in the full model too
    assert fast_grads.keys() <= full_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(fast_grads.get(name, torch.zeros_like(grad)), grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # boolean masks and additive ones
def test_fused_attention_drops_the_probabilities_as_transformers_eager_attention(attention: str) -> None:
    """With attention dropout, the fused layout writes the products out and drops the probabilities with
    the layer's dropout module: the same torch masks, in the same order, as transformers' eager attention."""
    torch.manual_seed(1)
    model = _tiny("bert", "eager", dropout=False)
    model.config.attention_probs_dropout_prob = 0.3
    for layer in model.base_model.encoder.layer:
        layer.attention.self.dropout.p = 0.3
    batch = _padded_batch()
    model.train()
    torch.manual_seed(7)
    full, full_grads = _logits_and_grads(model, batch)
    model.config._attn_implementation = attention
    with _bert_layouts(model, "fused-qkv"):
        torch.manual_seed(7)  # the same torch masks
        fast, fast_grads = _logits_and_grads(model, batch)
        torch.manual_seed(8)
        other = model(**batch).logits.detach()
    assert not torch.allclose(other, full, rtol=1e-3, atol=1e-4)  # the masks matter
    assert torch.allclose(fast, full, rtol=1e-5, atol=1e-6)
    for name, grad in full_grads.items():
        assert torch.allclose(fast_grads[name], grad, rtol=1e-4, atol=1e-6), name
    with _bert_layouts(model, "fused-qkv"), numpy_dropout_masks(model), torch.profiler.profile() as profile:
        model(**batch).logits.sum().backward()
    assert not [e for e in profile.events() if "bernoulli" in e.name]  # numpy drew the probabilities' masks


def test_bert_layouts_leave_other_models_alone() -> None:
    config = DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4, hidden_dim=48, num_labels=2)
    model = DistilBertForSequenceClassification(config)
    with first_token_top_layer(model) as first, fused_qkv_attention(model) as fused:
        assert not first and not fused  # not a model type with BERT's layers and a first-token head
    bert = _tiny("bert", "sdpa")
    with first_token_top_layer(bert) as outer, first_token_top_layer(bert) as inner:
        assert outer and not inner  # entered twice on one model (a shared encoder): applied once
    assert "forward" not in vars(bert.base_model.encoder.layer[-1])


def test_minilm_logits_on_real_rows_with_the_bert_layouts(glue_dir: Path) -> None:
    task = TASKS["MRPC"]
    rows = read_split(task, "dev", glue_dir)[:24]  # sentence pairs: two segments, padded batches
    model = get_family("minilm").build(task, rows, FamilyOptions(max_length=128), seed=0)
    assert isinstance(model, TransformerTaskModel)
    batch = model.collate(model.encode(rows))
    model.module.eval()
    with torch.no_grad():
        full = model.module(**batch)
        with _bert_layouts(model.module.model, "first-token+fused-qkv"):
            fast = model.module(**batch)
    assert batch["attention_mask"].min() == 0
    assert torch.allclose(fast, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_numpy_dropout_masks_drop_at_the_rate_and_keep_the_expectation(dtype: torch.dtype) -> None:
    p, shape = 0.1, torch.Size([64, 50, 40])
    torch.manual_seed(7)
    mask = keep_mask(shape, p, dtype)
    assert mask.shape == shape and mask.dtype == dtype
    dropped_probability = round(p * LEVELS) / LEVELS
    scale = torch.tensor(1 / (1 - dropped_probability), dtype=dtype)
    values = set(torch.unique(mask).tolist())
    assert values == {0.0, scale.item()}
    dropped = int((mask == 0).sum())
    # a two-sided binomial test of the drop count at the rounded probability
    assert stats.binomtest(dropped, shape.numel(), dropped_probability).pvalue > 1e-3
    kept_fraction = 1 - dropped / shape.numel()
    assert abs(kept_fraction * scale.double().item() - 1) < 0.01  # E[mask] = 1 (to bf16's rounding of scale)
    torch.manual_seed(7)
    assert torch.equal(keep_mask(shape, p, dtype), mask)  # torch's seed decides the mask
    assert not torch.equal(keep_mask(shape, p, dtype), mask)  # and the next mask is another


def test_numpy_dropout_masks_replace_torch_masks_in_training_only() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.25), nn.Linear(8, 2), nn.Dropout(0.5, inplace=True))
    x = torch.randn(500, 8, requires_grad=True)
    with numpy_dropout_masks(model) as changed:
        assert changed == 1  # the in-place dropout is left as it is
        hidden = model[0](x)
        torch.manual_seed(3)
        out = model[1](hidden)
        torch.manual_seed(3)
        mask = keep_mask(hidden.shape, 0.25, hidden.dtype)
        assert torch.equal(out, hidden * mask)
        out.sum().backward()
        assert torch.allclose(x.grad, mask @ model[0].weight)  # the gradient goes through the same mask
        model.eval()
        assert torch.equal(model[1](hidden), hidden)  # no dropout at evaluation
    assert "forward" not in vars(model[1])


def test_minilm_trains_as_well_with_numpy_dropout_masks(glue_dir: Path) -> None:
    """Both mask generators, the same seed on real SST-2 rows: numpy's masks learn as torch's do."""
    task = TASKS["SST-2"]
    rows = subsample(read_split(task, "train", glue_dir), 480)
    dev = read_split(task, "dev", glue_dir)[:400]
    majority = max(np.mean([e.label == label for e in dev]) for label in task.labels) * 100

    def dev_accuracy(layouts: frozenset[str], seed: int) -> float:
        model = get_family("minilm").build(task, rows, FamilyOptions(max_length=64), seed=seed)
        assert isinstance(model, TransformerTaskModel)
        model.training_layouts = layouts
        outcome = train(model, task, rows, {"dev": dev}, TrainConfig(
            epochs=2, batch_size=32, lr=1e-4, warmup_ratio=0.1, progress=False, seed=seed))
        return float(outcome.history[-1]["accuracy"])

    with_numpy = dev_accuracy(TRAINING_LAYOUTS, seed=0)
    with_torch = dev_accuracy(TRAINING_LAYOUTS - {"numpy-dropout"}, seed=0)
    assert with_numpy > majority + 10
    assert abs(with_numpy - with_torch) < 5  # one seed's spread: other masks, another run


def test_minilm_predictions_with_the_prediction_layout_equal_the_full_models(glue_dir: Path) -> None:
    task = TASKS["STS-B"]  # a regression head: scores, not only an argmax, must be the same
    rows = read_split(task, "dev", glue_dir)[:40]
    model = get_family("minilm").build(task, rows, FamilyOptions(max_length=128), seed=0)
    features = model.encode(rows)
    predicted = predict_outputs(model, task, features, make_accelerator("no"))
    model.module.eval()
    with torch.no_grad():
        full = model.module(**model.collate(features))
    assert predicted.shape == (40,)
    assert torch.allclose(predicted, full, rtol=1e-4, atol=1e-5)
    assert all("forward" not in vars(layer) for layer in model.module.model.base_model.encoder.layer)
