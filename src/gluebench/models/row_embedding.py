"""An input embedding that trains only the rows a training set uses, with the ordinary state-dict layout.

Why: a pretrained Transformer's token embedding is a large share of its parameters (MiniLM: 30,522 x 384,
11.7 M of 22.7 M), and a dense gradient for it is zeroed, accumulated, clipped and stepped by AdamW on every
step although a batch touches a few hundred rows. A row that no training text uses gets a zero gradient, so
with zero weight decay its AdamW update is zero too (its moments stay zero): leaving it out of the trained
parameter changes no number, only the time (``docs/results/speed.md``). Rows outside the parameter are read
from the table as it was; the padding row is never trained, as ``nn.Embedding(padding_idx=...)`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class TrainedRowsEmbedding(nn.Module):
    """``embedding`` with only ``rows`` trainable; its state dict is ``embedding``'s (one ``weight``)."""

    table: torch.Tensor
    rows: torch.Tensor
    local: torch.Tensor

    def __init__(self, embedding: nn.Embedding, rows: torch.Tensor) -> None:
        super().__init__()
        table = embedding.weight.detach()
        self.padding_idx = embedding.padding_idx
        rows = torch.unique(rows.to(torch.long))
        if self.padding_idx is not None:
            rows = rows[rows != self.padding_idx]
        local = torch.full((table.shape[0],), -1, dtype=torch.long, device=table.device)
        local[rows] = torch.arange(len(rows), device=table.device)
        self.register_buffer("table", table, persistent=False)  # the other rows, as they were
        self.register_buffer("rows", rows.to(table.device), persistent=False)
        self.register_buffer("local", local, persistent=False)  # vocabulary id -> row of `trained`, or -1
        self.trained = nn.Parameter(table[rows].clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = self.local[ids]
        vectors = F.embedding(local.clamp(min=0), self.trained)
        known = local >= 0
        if bool(known.all()):  # every training batch, by construction
            return vectors
        return torch.where(known.unsqueeze(-1), vectors, F.embedding(ids, self.table))

    def full_weight(self) -> torch.Tensor:
        """The whole vocabulary's rows, the trained ones as they are now."""
        weight = self.table.clone()
        weight[self.rows] = self.trained.detach()
        return weight

    def to_embedding(self) -> nn.Embedding:
        """An ordinary ``nn.Embedding`` holding `full_weight`."""
        vocabulary, width = self.table.shape
        embedding = nn.Embedding(vocabulary, width, padding_idx=self.padding_idx, device=self.table.device,
                                 dtype=self.table.dtype)
        with torch.no_grad():
            embedding.weight.copy_(self.full_weight())
        return embedding

    # the ordinary layout in and out, so checkpoints, best weights and exports never see this module
    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.full_weight()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
            return
        weight = state_dict[key]
        if weight.shape != self.table.shape:
            error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(weight.shape)}, "
                              f"the model has {tuple(self.table.shape)}")
            return
        with torch.no_grad():
            self.table.copy_(weight)
            self.trained.copy_(weight[self.rows])


__all__ = ["TrainedRowsEmbedding"]
