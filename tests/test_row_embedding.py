"""Training only the embedding rows a training set uses changes no number: against a dense embedding, by hand
and through the training loop on real GLUE rows (MiniLM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load
from torch import nn

from gluebench.artifacts import subsample
from gluebench.config import TrainConfig
from gluebench.data.read import read_split
from gluebench.models import FamilyOptions, get_family
from gluebench.models.row_embedding import TrainedRowsEmbedding
from gluebench.models.transformer import TransformerTaskModel
from gluebench.tasks import TASKS
from gluebench.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _steps(embedding: nn.Module, head: nn.Linear, batches: list[torch.Tensor]) -> None:
    """AdamW (fused, as the loop) with clipping over a few batches; the loss reads every position."""
    params = [p for p in [*embedding.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.05, weight_decay=0.0, fused=True)  # the loop's default
    for ids in batches:
        head(embedding(ids)).pow(2).mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_trained_rows_take_the_dense_updates_and_the_others_stay() -> None:
    torch.manual_seed(0)
    dense = nn.Embedding(40, 6, padding_idx=0)
    start = dense.weight.detach().clone()
    batches = [torch.tensor([[3, 5, 7, 0], [5, 9, 0, 0]]), torch.tensor([[11, 3, 3, 12]]), torch.tensor([[7, 9]])]
    rows = torch.unique(torch.cat([b.flatten() for b in batches]))  # the padding id 0 among them
    compact = TrainedRowsEmbedding(nn.Embedding.from_pretrained(start.clone(), freeze=False, padding_idx=0), rows)
    head = nn.Linear(6, 3)
    head_copy = nn.Linear(6, 3)
    head_copy.load_state_dict(head.state_dict())
    _steps(dense, head, batches)
    _steps(compact, head_copy, batches)
    assert compact.trained.shape == (6, 6)  # ids 3, 5, 7, 9, 11, 12: the padding row is not trained
    after = compact.state_dict()
    assert list(after) == ["weight"]  # the ordinary layout
    assert torch.allclose(after["weight"], dense.weight.detach(), rtol=0, atol=1e-6)
    untouched = [i for i in range(40) if i not in {3, 5, 7, 9, 11, 12}]
    assert torch.equal(after["weight"][untouched], start[untouched])  # padding row and unused rows as they were
    unseen = torch.tensor([[1, 3, 39]])  # a row no training text used is read from the table
    assert torch.allclose(compact(unseen), dense(unseen), rtol=0, atol=1e-6)
    plain = compact.to_embedding()
    assert torch.equal(plain.weight, after["weight"]) and plain.padding_idx == 0
    fresh = TrainedRowsEmbedding(nn.Embedding.from_pretrained(start.clone(), padding_idx=0), rows)
    fresh.load_state_dict(after)
    assert torch.equal(fresh.trained, compact.trained) and torch.equal(fresh.full_weight(), after["weight"])
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh.load_state_dict({"weight": torch.zeros(41, 6)})


def test_minilm_trains_to_the_same_weights_with_trained_rows_only(glue_dir: Path) -> None:
    task = TASKS["RTE"]
    rows = subsample(read_split(task, "train", glue_dir), 64)
    dev = read_split(task, "dev", glue_dir)[:48]
    options = FamilyOptions(max_length=64)

    def trained(weight_decay: float) -> tuple[TransformerTaskModel, dict[str, torch.Tensor]]:
        model = get_family("minilm").build(task, rows, options, seed=3)
        assert isinstance(model, TransformerTaskModel)
        seen: list[type] = []
        model.module.register_forward_pre_hook(
            lambda module, args: seen.append(type(module.model.get_input_embeddings())))
        outcome = train(model, task, rows, {"dev": dev}, TrainConfig(
            epochs=2, batch_size=16, lr=1e-4, warmup_ratio=0.1, weight_decay=weight_decay, progress=False, seed=3))
        layouts = set(seen)
        return model, {"layouts": layouts, **load(outcome.best_weights)}

    # weight decay 1e-12 keeps the dense layout (decay is not exact with rows left out) yet decays nothing:
    # 1 - lr * 1e-12 rounds to 1 in float32, so it is the same arithmetic as weight decay 0
    compact_model, compact = trained(0.0)
    _, dense = trained(1e-12)
    assert compact.pop("layouts") == {TrainedRowsEmbedding}  # the training layout for the whole loop
    assert dense.pop("layouts") == {nn.Embedding}
    assert type(compact_model.module.model.get_input_embeddings()) is nn.Embedding  # the ordinary module back
    assert compact.keys() == dense.keys()
    for name in dense:
        assert torch.allclose(compact[name], dense[name], rtol=0, atol=2e-6), name
    pretrained = get_family("minilm").build(task, rows, options, seed=3).module.model.get_input_embeddings().weight
    key = next(k for k in dense if k.endswith("word_embeddings.weight"))
    moved = (compact[key] != pretrained.detach()).any(dim=1)
    used = {int(i) for f in compact_model.encode(rows) for i in f["input_ids"]}
    assert set(torch.nonzero(moved).flatten().tolist()) <= used and moved.sum() > 100
