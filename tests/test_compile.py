"""``--torch-compile``: the compiled training steps compute what the eager ones compute, within float
tolerance, on a real GLUE slice; the trained model's eager predictions agree. Dropout is off here because
compiled dropout draws its masks from inductor's own generator, a different (seeded) random stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gluebench.artifacts import subsample
from gluebench.config import FamilyOptions, TrainConfig
from gluebench.data.read import read_split
from gluebench.models import get_family
from gluebench.tasks import TASKS
from gluebench.training import make_accelerator, predict_outputs, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_compiled_training_matches_eager(glue_dir: Path) -> None:
    task = TASKS["SST-2"]
    train_set = subsample(read_split(task, "train", glue_dir), 3000)
    dev = read_split(task, "dev", glue_dir)
    results = {}
    for compiled in (False, True):
        model = get_family("glove-cbow").build(task, train_set + dev, FamilyOptions(dropout=0.0), seed=2)
        config = TrainConfig(epochs=3, batch_size=64, lr=1e-3, seed=2, patience=9, progress=False,
                             torch_compile=compiled)
        outcome = train(model, task, train_set, {"dev": dev}, config)
        outputs = predict_outputs(model, task, model.encode(dev), make_accelerator(), 128)
        results[compiled] = (outcome, outputs)
    (eager, eager_outputs), (fused, fused_outputs) = results[False], results[True]
    assert [h["train_loss"] for h in fused.history] == pytest.approx([h["train_loss"] for h in eager.history],
                                                                       rel=1e-4)
    assert torch.allclose(fused_outputs, eager_outputs, rtol=0, atol=1e-3)
    assert (fused_outputs.argmax(-1) == eager_outputs.argmax(-1)).float().mean() >= 0.99
    assert eager.best_metrics["accuracy"] > 55  # it learned (SST-2 dev majority: 50.9)
