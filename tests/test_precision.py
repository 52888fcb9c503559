"""bf16 on the CPU (this machine has AVX512-BF16): it learns, it resumes exactly, and a bf16 step computes the
loss an fp32 step does, within bf16's precision. Real GLUE slices, real models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gluebench.artifacts import subsample
from gluebench.config import FamilyOptions, TrainConfig
from gluebench.data.read import read_split
from gluebench.models import get_family
from gluebench.runs import RunPaths
from gluebench.tasks import TASKS
from gluebench.training import make_accelerator, native_bf16, resolve_mixed_precision, train
from tests.conftest import CliRun

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


def _cpu_has_native_bf16() -> bool:
    """Read off the kernel's CPU flags, independently of torch's own check."""
    flags = Path("/proc/cpuinfo").read_text()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_auto_precision_is_bf16_where_measured_and_the_device_computes_bf16(
        glue_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    train_set, _ = _sst2(glue_dir, 8)
    minilm = get_family("minilm").build(TASKS["SST-2"], train_set, FamilyOptions(max_length=16), seed=1)
    cbow = get_family("glove-cbow").build(TASKS["SST-2"], train_set, FamilyOptions(), seed=1)
    bilstm = get_family("glove-bilstm").build(TASKS["SST-2"], train_set, FamilyOptions(), seed=1)
    glove_transformer = get_family("glove-transformer").build(TASKS["SST-2"], train_set, FamilyOptions(), seed=1)
    frozen = get_family("minilm").build(TASKS["SST-2"], train_set, FamilyOptions(max_length=16, freeze_encoder=True),
                                        seed=1)
    if not torch.cuda.is_available():  # on a CPU the kernel's flags decide (this machine has AVX512-BF16)
        assert native_bf16() == _cpu_has_native_bf16()
    native = native_bf16()
    assert resolve_mixed_precision("auto", [minilm]) == ("bf16" if native else "no")
    assert resolve_mixed_precision("auto", [bilstm]) == ("bf16" if native else "no")
    assert resolve_mixed_precision("auto", [glove_transformer]) == ("bf16" if native else "no")
    assert resolve_mixed_precision("auto", [cbow]) == "no"  # glove-cbow: bf16 measured, not faster
    assert resolve_mixed_precision("auto", [frozen]) == "no"  # a frozen encoder's head: the same
    assert resolve_mixed_precision("auto", [bilstm, cbow]) == "no"
    assert resolve_mixed_precision("auto", [minilm, cbow]) == "no"
    assert resolve_mixed_precision("no", [minilm]) == "no" and resolve_mixed_precision("bf16", [cbow]) == "bf16"
    for launched in ("no", "fp16"):  # under `accelerate launch --mixed_precision X`, auto is the launcher's X
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launched)
        assert resolve_mixed_precision("auto", [minilm]) == launched


def test_a_run_on_defaults_records_the_precision_auto_chose(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    """`gluebench run` without --mixed-precision: result.json says what the run trained in, the log says why."""
    expected = "bf16" if native_bf16() else "no"
    for model, precision in (("minilm", expected), ("glove-bilstm", expected), ("glove-cbow", "no")):
        out = tmp_path / model
        code, _, err = cli("run", "--model", model, "--tasks", "WNLI", "--max-train-examples", "32", "--epochs", "1",
                           "--max-length", "32", "--no-progress", "--data-dir", str(glue_dir), "-o", str(out))
        assert code == 0, err
        assert json.loads(RunPaths(out).result("WNLI", 1).read_text())["config"]["mixed_precision"] == precision
        assert f"mixed precision auto: {precision}" in (out / "run.log").read_text()
