"""The top encoder layer computed at the first token only, for heads that read nothing else.

Why: a sequence-classification head of the BERT family (BERT's pooler, RoBERTa's and ELECTRA's
classification heads) reads the top layer at position 0 ([CLS], ``<s>``) and nothing else. In that layer the
other positions matter only as keys and values of the first token's attention; their queries, attention
output, layer norms and feed-forward block feed nothing. Computing the top layer for the first token alone
gives the same logits and the same gradients (to float rounding; dropout masks are drawn for fewer
positions) at about a sixth less work for a 6-layer model (``docs/results/speed.md``).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# model types whose sequence-classification head reads only the top layer's first token, and whose layers
# are BERT's (attention.self.{query,key,value}, attention.output, feed_forward_chunk)
FIRST_TOKEN_HEADS = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})


def _top_layer(model: nn.Module) -> nn.Module | None:
    """The top encoder layer when it is a BERT layer this module can compute at one position, else None."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in FIRST_TOKEN_HEADS:
        return None
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return None
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return None  # masks of other attention implementations are not [B, 1, L or 1, L] tensors
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None  # relative position scores live inside the attention this module replaces
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not layers:
        return None
    layer = layers[-1]
    attention = getattr(getattr(layer, "attention", None), "self", None)
    needed = ("query", "key", "value", "dropout", "num_attention_heads", "attention_head_size", "scaling")
    if attention is None or not all(hasattr(attention, name) for name in needed):
        return None
    if not hasattr(layer.attention, "output") or not hasattr(layer, "feed_forward_chunk"):
        return None
    if getattr(layer, "chunk_size_feed_forward", 0):
        return None
    return layer


def _first_token_forward(layer: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         *_args: Any, **_kwargs: Any) -> torch.Tensor:
    """The layer's output at position 0 only, ``[B, 1, H]``: queries from the first token, keys and values
    from all positions, then the layer's own attention output and feed-forward modules. ``layer`` is a
    transformers BERT-family layer (its structure checked by `_top_layer`)."""
    attention = layer.attention.self
    batch = hidden_states.shape[0]
    first = hidden_states[:, :1]
    heads = (batch, -1, attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(first).view(*heads).transpose(1, 2)
    key = attention.key(hidden_states).view(*heads).transpose(1, 2)
    value = attention.value(hidden_states).view(*heads).transpose(1, 2)
    if attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[-2] > 1:
        attention_mask = attention_mask[..., :1, :]  # the first query's row of a [B, 1, L, L] mask
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, scale=attention.scaling,
        dropout_p=attention.dropout.p if attention.training else 0.0)
    context = context.transpose(1, 2).reshape(batch, 1, -1)
    return layer.feed_forward_chunk(layer.attention.output(context, first))


@contextlib.contextmanager
def first_token_top_layer(model: nn.Module) -> Iterator[bool]:
    """While the context lasts, ``model``'s top layer outputs the first token only (``[B, 1, H]``) where the
    model type's head reads only that token; yields whether it applied. Only the layer's ``forward`` changes
    (no parameter or state-dict entry)."""
    layer = _top_layer(model)
    if layer is None or "forward" in vars(layer):  # not a known first-token head, or already applied
        yield False
        return
    layer.forward = types.MethodType(_first_token_forward, layer)
    try:
        yield True
    finally:
        del layer.forward


__all__ = ["FIRST_TOKEN_HEADS", "first_token_top_layer"]
