"""The static GloVe families on real GLUE data: they learn, stay frozen, ignore padding, reload, run end to end."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from gluebench.artifacts import load_task_model, subsample
from gluebench.config import RunConfig
from gluebench.data.read import Example, read_split
from gluebench.errors import GluebenchError
from gluebench.metrics import compute_metrics
from gluebench.models import get_family
from gluebench.models.base import FamilyOptions
from gluebench.models.static import StaticTaskModel
from gluebench.runner import run
from gluebench.runs import read_json
from gluebench.tasks import TASKS, TaskSpec
from gluebench.training import (
    TrainConfig,
    load_weights,
    predict,
    predict_outputs,
    sampling_probabilities,
    save_weights,
    train,
)

from .conftest import CliRun

ENCODERS = ("glove-cbow", "glove-bilstm", "glove-transformer")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(task: TaskSpec, glue_dir: Path, limit: int | None) -> tuple[list[Example], list[Example]]:
    return subsample(read_split(task, "train", glue_dir), limit), read_split(task, "dev", glue_dir)


def _build(model: str, task: TaskSpec, examples: list[Example], seed: int = 1, **options: object) -> StaticTaskModel:
    return get_family(model).build(task, examples, FamilyOptions(**options), seed)  # type: ignore[arg-type,return-value]


def _fit(model: StaticTaskModel, task: TaskSpec, train_set: list[Example], dev: list[Example], epochs: int,
         **overrides: float) -> dict[str, float]:
    family = get_family(model.extra["family"])
    config = TrainConfig(epochs=epochs, batch_size=family.default_batch_size, lr=overrides.get("lr", family.default_lr),
                         warmup_ratio=overrides.get("warmup", family.default_warmup), progress=False, patience=epochs)
    return train(model, task, train_set, {"dev": dev}, config).best_metrics


@pytest.fixture(scope="module")
def sst2_bilstm(glue_dir: Path) -> tuple[StaticTaskModel, dict[str, float], list[Example]]:
    """A glove-bilstm trained on 2,000 real SST-2 sentences for two epochs (shared by several tests)."""
    task = TASKS["SST-2"]
    train_set, dev = _data(task, glue_dir, 2000)
    model = _build("glove-bilstm", task, train_set + dev)
    return model, _fit(model, task, train_set, dev, epochs=2), dev


def _majority_accuracy(dev: list[Example]) -> float:
    return 100.0 * max(collections.Counter(e.label for e in dev).values()) / len(dev)


def test_bilstm_beats_the_majority_class_on_sst2(sst2_bilstm: tuple[StaticTaskModel, dict[str, float],
                                                                    list[Example]]) -> None:
    _, metrics, dev = sst2_bilstm
    assert metrics["accuracy"] > _majority_accuracy(dev) + 15


@pytest.mark.parametrize(("model", "task", "limit", "epochs", "margin"), [
    ("glove-cbow", "MRPC", None, 4, 3),  # MRPC is 68% paraphrases: beating that takes real signal
    ("glove-transformer", "SST-2", 2000, 3, 8),
])
def test_encoders_beat_the_majority_class(glue_dir: Path, model: str, task: str, limit: int | None,
                                          epochs: int, margin: float) -> None:
    spec = TASKS[task]
    train_set, dev = _data(spec, glue_dir, limit)
    metrics = _fit(_build(model, spec, train_set + dev), spec, train_set, dev, epochs)
    assert metrics["accuracy"] > _majority_accuracy(dev) + margin


def test_cbow_learns_sts_b_similarity_and_stays_in_range(glue_dir: Path) -> None:
    task = TASKS["STS-B"]
    train_set, dev = _data(task, glue_dir, 2000)
    model = _build("glove-cbow", task, train_set + dev)
    assert _fit(model, task, train_set, dev, epochs=3)["pearson"] > 45
    predictions = np.asarray(predict(model, task, dev))
    assert predictions.min() >= 0.0 and predictions.max() <= 5.0 and predictions.std() > 0.3


def test_frozen_embeddings_stay_bit_identical_and_unfrozen_ones_move(glue_dir: Path) -> None:
    task = TASKS["SST-2"]
    train_set, dev = _data(task, glue_dir, 256)
    for unfreeze in (False, True):
        model = _build("glove-bilstm", task, train_set + dev, unfreeze_embeddings=unfreeze)
        before = {k: v.clone() for k, v in model.module.state_dict().items()}
        _fit(model, task, train_set, dev[:64], epochs=1)
        after = model.module.state_dict()
        embedding = "encoder.embedding.weight"
        assert torch.equal(before[embedding], after[embedding]) is not unfreeze
        assert not torch.equal(before["encoder.lstm_forward.weight_hh_l0"], after["encoder.lstm_forward.weight_hh_l0"])
        assert torch.equal(after[embedding][0], torch.zeros_like(after[embedding][0]))  # padding row stays zero


@pytest.mark.parametrize("model", ENCODERS)
@pytest.mark.parametrize("task", ["SST-2", "MRPC"])
def test_padding_does_not_change_an_example_output(glue_dir: Path, model: str, task: str) -> None:
    spec = TASKS[task]
    dev = read_split(spec, "dev", glue_dir)
    by_length = sorted(dev, key=lambda e: len(e.text_a) + len(e.text_b or ""))
    short, longest = by_length[0], by_length[-8:]
    tm = _build(model, spec, dev, dropout=0.0)
    tm.module.eval()
    with torch.no_grad():
        alone = tm.module(**tm.collate(tm.encode([short])))
        batch = tm.collate(tm.encode([*longest[:4], short, *longest[4:]]))
        assert batch["ids"].shape[1] > 2 * int(batch["lengths"][4])  # the short one really is padded
        together = tm.module(**batch)
    torch.testing.assert_close(together[4], alone[0], atol=1e-5, rtol=1e-5)


def test_bilstm_equals_a_packed_bidirectional_lstm(glue_dir: Path) -> None:
    spec = TASKS["CoLA"]
    dev = read_split(spec, "dev", glue_dir)[:32]
    tm = _build("glove-bilstm", spec, dev, dropout=0.0, hidden_size=32)
    encoder = tm.module.encoder
    reference = torch.nn.LSTM(50, 32, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(encoder.lstm_forward, name))
            getattr(reference, f"{name}_reverse").copy_(getattr(encoder.lstm_backward, name))
        batch = tm.collate(tm.encode(dev))
        ids, lengths = batch["ids"], batch["lengths"]
        assert len(set(lengths.tolist())) > 5
        packed = pack_padded_sequence(encoder.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(reference(packed)[0], batch_first=True, padding_value=float("-inf"))
        torch.testing.assert_close(encoder(ids, lengths), states.max(dim=1).values, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model", ENCODERS)
def test_layer_outputs_are_per_example_and_in_forward_order(glue_dir: Path, model: str) -> None:
    spec = TASKS["MRPC"]
    dev = read_split(spec, "dev", glue_dir)[:5]
    tm = _build(model, spec, dev)
    layers = tm.layer_outputs(tm.collate(tm.encode(dev)))
    expected = ["embeddings", "sentence", "features", "classifier", "output"]
    if model != "glove-cbow":
        expected.insert(1, "encoder")
    assert list(layers) == expected
    assert all(value.shape[0] == 5 for value in layers.values())
    assert layers["features"].shape[1] == 2 * layers["sentence"].shape[1]  # [u; v; |u-v|; u*v] vs [u; v]
    assert layers["output"].shape == (5, 2)


def test_checkpoint_reloads_to_the_same_predictions(tmp_path: Path, sst2_bilstm: tuple[StaticTaskModel,
                                                                                       dict[str, float],
                                                                                       list[Example]]) -> None:
    model, _, dev = sst2_bilstm
    task = TASKS["SST-2"]
    save_weights(model.module, tmp_path / "model.safetensors")
    metadata = json.loads(json.dumps(model.metadata()))
    family = get_family("glove-bilstm")
    restored = family.restore(task, metadata, FamilyOptions())
    load_weights(restored.module, tmp_path / "model.safetensors")
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model.module.eval()
    restored.module.eval()
    original = predict_outputs(model, task, model.encode(dev), accelerator)
    again = predict_outputs(restored, task, restored.encode(dev), accelerator)
    assert torch.equal(original, again)
    fresh = family.build(task, dev, FamilyOptions(), seed=7)  # an untrained model predicts differently
    assert not torch.equal(original, predict_outputs(fresh, task, fresh.encode(dev), accelerator))
    with pytest.raises(GluebenchError, match="not glove-cbow"):
        get_family("glove-cbow").restore(task, metadata, FamilyOptions())


def test_sampling_probabilities_follow_size_and_temperature() -> None:
    np.testing.assert_allclose(sampling_probabilities([300, 100], 1.0), [0.75, 0.25])
    np.testing.assert_allclose(sampling_probabilities([400, 100], 2.0), [2 / 3, 1 / 3])
    assert np.ptp(sampling_probabilities([10_000, 10], 1000.0)) < 0.01


def test_cli_run_writes_the_run_directory_and_seeds_repeat(cli: CliRun, tmp_path: Path, glue_dir: Path) -> None:
    common = ["--model", "glove-cbow", "--tasks", "RTE,STS-B", "--max-train-examples", "500", "--epochs", "1",
              "--data-dir", str(glue_dir), "--no-progress"]
    code, out, err = cli("run", *common, "--seeds", "1,2", "-o", str(tmp_path / "two"))
    assert code == 0, err
    assert "STS-B over seeds [1, 2]: pearson" in out and "±" in out
    root = tmp_path / "two"
    for name in ("config.yaml", "metrics.json", "run.json", "run.log"):
        assert (root / name).is_file(), name
    for task in ("RTE", "STS-B"):
        for seed in (1, 2):
            seed_dir = root / "tasks" / task / f"seed-{seed}"
            for name in ("dev_predictions.tsv", "test_predictions.tsv", "history.json", "result.json",
                         "model.safetensors", "model_meta.json"):
                assert (seed_dir / name).is_file(), seed_dir / name
    scores = [float(line.split("\t")[1]) for line in
              (root / "tasks/STS-B/seed-1/dev_predictions.tsv").read_text().splitlines()[1:]]
    assert len(scores) == 1500 and min(scores) >= 0.0 and max(scores) <= 5.0
    summary = read_json(root / "run.json")
    assert summary["tasks"]["RTE"]["seeds"] == [1, 2] and "accuracy" in summary["tasks"]["RTE"]["std"]
    assert "% of" in (root / "run.log").read_text()  # embedding coverage is logged per task
    code, _, err = cli("run", *common, "--seeds", "2", "-o", str(tmp_path / "again"))
    assert code == 0, err
    again = read_json(tmp_path / "again" / "metrics.json")
    assert again["RTE"] == summary["tasks"]["RTE"]["per_seed"][1]
    assert again["STS-B"] == summary["tasks"]["STS-B"]["per_seed"][1]


def test_multitask_run_trains_one_encoder_and_writes_every_task(tmp_path: Path, glue_dir: Path) -> None:
    config = RunConfig(model="glove-cbow", tasks=["MRPC", "STS-B"], multitask=True, max_train_examples=800, epochs=3,
                       data_dir=str(glue_dir), output_dir=str(tmp_path / "mt"), progress=False)
    summary = run(config)
    assert set(summary.tasks) == {"MRPC", "STS-B"}
    for task in ("MRPC", "STS-B"):
        result = read_json(tmp_path / "mt" / "tasks" / task / "seed-1" / "result.json")
        assert result["multitask"] == ["MRPC", "STS-B"] and result["epochs_run"] >= 1
    mrpc, mrpc_spec = load_task_model(tmp_path / "mt", "MRPC")
    sts, _ = load_task_model(tmp_path / "mt", "STS-B")
    dev = read_split(mrpc_spec, "dev", glue_dir)
    reloaded = compute_metrics(mrpc_spec, predict(mrpc, mrpc_spec, dev), [e.label for e in dev])
    assert reloaded == pytest.approx(summary.tasks["MRPC"]["mean"])  # the saved weights are the best epoch's
    assert summary.tasks["STS-B"]["mean"]["pearson"] > 10
    assert mrpc.module.encoder.embedding.weight.shape == sts.module.encoder.embedding.weight.shape  # one vocabulary
