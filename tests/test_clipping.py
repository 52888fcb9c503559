"""Gradient clipping folded into the fused AdamW (its ``grad_scale``) updates the parameters as
``torch.nn.utils.clip_grad_norm_`` followed by the same AdamW step does: clipped and unclipped, fp32 and bf16."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from gluebench.artifacts import subsample
from gluebench.config import FamilyOptions, TrainConfig
from gluebench.data.read import read_split
from gluebench.models import get_family
from gluebench.tasks import TASKS
from gluebench.training import TaskData, _clip_gradients, _start

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("precision", ["no", "bf16"])
@pytest.mark.parametrize("max_norm", [0.05, 1e6])  # every step's gradients scaled down; none touched
def test_clipping_in_the_fused_step_is_clip_grad_norm(glue_dir: Path, precision: str, max_norm: float) -> None:
    task = TASKS["SST-2"]
    train_set = subsample(read_split(task, "train", glue_dir), 64)
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-2, seed=3, progress=False, max_grad_norm=max_norm,
                         mixed_precision=precision)
    with contextlib.ExitStack() as layouts:
        runs = []
        for _ in range(3):  # clipped in the fused step, by clip_grad_norm_, not at all
            model = get_family("glove-cbow").build(task, train_set, FamilyOptions(), seed=3)
            runs.append(_start([TaskData(task, model, train_set, {})], config, None, False, None, layouts))
        folded = runs[0]
        assert folded.accelerator.scaler is None
        trained = [[p for p in run.router.parameters() if p.requires_grad] for run in runs]
        generator = torch.Generator().manual_seed(0)
        for scale in (1.0, 30.0, 0.1):  # Adam's update depends on how the steps' gradient sizes compare
            for params in zip(*trained, strict=True):
                grad = scale * torch.randn(params[0].shape, generator=generator)
                for p in params:
                    p.grad = grad.clone()
            norm = torch.nn.utils.clip_grad_norm_(trained[1], max_norm)
            assert (norm > max_norm) == (max_norm < 1)
            _clip_gradients(folded)
            for run in runs:
                run.optimizer.step()
        for folded_param, reference_param, _ in zip(*trained, strict=True):
            torch.testing.assert_close(folded_param, reference_param, rtol=1e-5, atol=1e-6)
        apart = max((b - c).abs().max().item() for _, b, c in zip(*trained, strict=True))
        assert (apart > 1e-3) == (max_norm < 1)  # the comparison can tell clipped from unclipped
