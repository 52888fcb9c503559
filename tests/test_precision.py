"""bf16 on the CPU (this machine has AVX512-BF16): it learns, it resumes exactly, and a bf16 step computes the
loss an fp32 step does, within bf16's precision. Real GLUE slices, real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from gluebench.artifacts import subsample
from gluebench.config import FamilyOptions, TrainConfig
from gluebench.data.read import read_split
from gluebench.models import get_family
from gluebench.tasks import TASKS
from gluebench.training import make_accelerator, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sst2(glue_dir: Path, n: int) -> tuple[list, list]:
    task = TASKS["SST-2"]
    return subsample(read_split(task, "train", glue_dir), n), read_split(task, "dev", glue_dir)


def test_bf16_training_beats_the_majority_class_and_resumes_exactly(glue_dir: Path, tmp_path: Path) -> None:
    task = TASKS["SST-2"]
    train_set, dev = _sst2(glue_dir, 3000)
    config = TrainConfig(epochs=3, batch_size=64, lr=1e-3, seed=4, patience=9, progress=False,
                         mixed_precision="bf16")

    def fit(checkpoints: Path, resume: bool = False, stop_after: int | None = None) -> tuple[list[dict], Any]:
        model = get_family("glove-cbow").build(task, train_set + dev, FamilyOptions(), seed=4)

        def interrupt(record: dict) -> None:
            if record["epoch"] == stop_after:
                raise KeyboardInterrupt  # as Ctrl-C would; before this epoch is checkpointed

        try:
            outcome = train(model, task, train_set, {"dev": dev}, config, checkpoint_dir=checkpoints,
                            resume=resume, on_epoch=interrupt)
        except KeyboardInterrupt:
            return [], None
        assert make_accelerator().mixed_precision == "bf16"
        return [{k: v for k, v in h.items() if k not in ("seconds", "examples_per_second")}
                for h in outcome.history], outcome.resumed_from

    uninterrupted, _ = fit(tmp_path / "a")
    majority = 100 * max(sum(e.label == label for e in dev) for label in ("0", "1")) / len(dev)
    assert max(h["accuracy"] for h in uninterrupted) > majority + 10
    assert fit(tmp_path / "b", stop_after=2) == ([], None)  # stopped in epoch 2: resuming starts after epoch 1
    resumed, resumed_from = fit(tmp_path / "b", resume=True)
    assert resumed == uninterrupted and resumed_from is not None and resumed_from["epoch"] == 1


def test_one_bf16_step_computes_the_fp32_loss_within_bf16_precision(glue_dir: Path) -> None:
    task = TASKS["SST-2"]
    train_set, _ = _sst2(glue_dir, 32)
    model = get_family("minilm").build(task, train_set, FamilyOptions(max_length=64, dropout=0.0), seed=2)
    batch = model.collate(model.encode(train_set))
    labels = torch.tensor([task.label_index(str(e.label)) for e in train_set])
    model.module.eval()

    def loss(dtype: torch.dtype | None) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            return torch.nn.functional.cross_entropy(model.module(**batch).float(), labels)

    with torch.no_grad():
        full, half = loss(None), loss(torch.bfloat16)
    assert half.item() != full.item()  # it really ran in bf16
    assert half.item() == pytest.approx(full.item(), rel=2e-2)  # bf16 keeps 8 bits of mantissa
