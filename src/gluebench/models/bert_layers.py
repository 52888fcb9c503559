"""Cheaper, equivalent forwards for BERT-family encoder layers while training a sequence classifier.

Only ``forward`` methods change, on the instances, for as long as a context lasts: no parameter, no
state-dict entry, no module is replaced, so checkpoints and exports never see a difference.

- `fused_qkv_attention`: each layer's query, key and value projections as one matmul over the
  concatenated weights. Same arithmetic; one 384 x 1152 product runs about 1.3x faster than three 384 x 384
  ones at SST-2's 13 tokens per sentence on this CPU in bf16 (forward + backward), a percent or so of a
  whole MiniLM step.
- `first_token_top_layer`: a sequence-classification head of the BERT family (BERT's pooler, RoBERTa's and
  ELECTRA's classification heads) reads the top layer at position 0 ([CLS], ``<s>``) and nothing else. In
  that layer the other positions matter only as keys and values of the first token's attention; their
  queries, attention output, layer norms and feed-forward block feed nothing. Computing the top layer for
  the first token alone gives the same logits and gradients (to float rounding; dropout masks are drawn for
  fewer positions) at about a sixth less work for a 6-layer model (1.11x faster MiniLM steps).

``docs/results/speed.md`` measures both.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gluebench.models.forwards import replaced_forwards

# model types whose sequence-classification head reads only the top layer's first token, and whose layers
# are BERT's (attention.self.{query,key,value}, attention.output, feed_forward_chunk)
BERT_LAYER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
_SELF_ATTENTION = ("query", "key", "value", "dropout", "num_attention_heads", "attention_head_size", "scaling")


def _bert_layers(model: nn.Module) -> list[Any]:
    """The encoder layers when they are BERT layers whose forwards this module can replace, else []."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in BERT_LAYER_TYPES:
        return []
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return []
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return []  # masks of other attention implementations are not [B, 1, L or 1, L] tensors
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return []  # relative position scores live inside the attention replaced here
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not layers:
        return []
    for layer in layers:
        attention = getattr(getattr(layer, "attention", None), "self", None)
        if attention is None or not all(hasattr(attention, name) for name in _SELF_ATTENTION):
            return []
        if not hasattr(layer.attention, "output") or not hasattr(layer, "feed_forward_chunk"):
            return []
        if getattr(layer, "chunk_size_feed_forward", 0):
            return []
    return list(layers)


def _heads(attention: Any, states: torch.Tensor) -> torch.Tensor:
    """``[B, L, H]`` projections to ``[B, heads, L, head size]``."""
    return states.view(states.shape[0], -1, attention.num_attention_heads, attention.attention_head_size) \
        .transpose(1, 2)


def _attend(attention: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention over the heads with the layer's dropout; ``[B, queries, H]``.

    Training with dropout on a CPU, the products are written out (as transformers' eager attention does) so
    that the attention probabilities go through the layer's own dropout module: under `numpy_dropout_masks`
    its masks are numpy's, and a MiniLM layer's attention forward + backward takes 2.8 ms instead of SDPA's
    3.5-4.9 ms (its CPU kernel with dropout draws the masks with ``bernoulli_``). Otherwise (a GPU's fused
    kernels drop inside them) SDPA.
    """
    if attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[-2] != query.shape[1]:
        attention_mask = attention_mask[..., :1, :]  # one query (the first token): its row of the mask
    q, k, v = _heads(attention, query), _heads(attention, key), _heads(attention, value)
    dropout = attention.dropout.p if attention.training else 0.0
    if dropout > 0 and q.device.type == "cpu":
        scores = torch.matmul(q, k.transpose(-1, -2)) * attention.scaling
        if attention_mask is not None and attention_mask.dtype == torch.bool:  # SDPA's form: True attends
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        elif attention_mask is not None:  # eager's form: added to the scores
            scores = scores + attention_mask
        probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
        context = torch.matmul(attention.dropout(probabilities), v)
    else:
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=attention.scaling,
                                                 dropout_p=dropout)
    return context.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)


def _projections(attention: Any, names: tuple[str, ...], states: torch.Tensor) -> list[torch.Tensor]:
    """The named projections (query, key, value) of ``states`` as one matmul over their stacked weights."""
    linears = [getattr(attention, name) for name in names]
    if any(linear.bias is None for linear in linears):
        return [linear(states) for linear in linears]
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias for linear in linears])
    return list(F.linear(states, weight, bias).split([linear.out_features for linear in linears], dim=-1))


def _fused_self_attention(attention: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          *_args: Any, **_kwargs: Any) -> tuple[torch.Tensor, None]:
    """BERT self-attention with one projection matmul; returns what the original does (no weights)."""
    query, key, value = _projections(attention, ("query", "key", "value"), hidden_states)
    return _attend(attention, query, key, value, attention_mask), None


def _first_token_layer(layer: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       *_args: Any, **_kwargs: Any) -> torch.Tensor:
    """The layer's output at position 0 only, ``[B, 1, H]``: the query from the first token, keys and values
    from all positions, then the layer's own attention output and feed-forward modules."""
    attention = layer.attention.self
    first = hidden_states[:, :1]
    key, value = _projections(attention, ("key", "value"), hidden_states)
    context = _attend(attention, attention.query(first), key, value, attention_mask)
    return layer.feed_forward_chunk(layer.attention.output(context, first))


def fused_qkv_attention(model: nn.Module) -> contextlib.AbstractContextManager[int]:
    """While the context lasts, every BERT-family layer's self-attention projects with one matmul; yields
    how many layers changed (0: not a BERT-family model)."""
    return replaced_forwards([(layer.attention.self, _fused_self_attention) for layer in _bert_layers(model)])


def first_token_top_layer(model: nn.Module) -> contextlib.AbstractContextManager[int]:
    """While the context lasts, a BERT-family model's top layer outputs the first token only (``[B, 1, H]``),
    all its sequence-classification head reads; yields 1 if it applied, else 0."""
    layers = _bert_layers(model)
    return replaced_forwards([(layers[-1], _first_token_layer)] if layers else [])


__all__ = ["BERT_LAYER_TYPES", "first_token_top_layer", "fused_qkv_attention"]
