"""The pretrained-Transformer family (MiniLM offline, hf:<path>) and `gluebench sweep`, on real GLUE slices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gluebench.artifacts import subsample
from gluebench.config import RunConfig
from gluebench.data.locate import cache_dir
from gluebench.data.read import Example, read_split
from gluebench.errors import ConfigError, GluebenchError
from gluebench.models import FamilyOptions, get_family
from gluebench.models.transformer import TransformerTaskModel, minilm_path
from gluebench.sweep import parse_grid, sweep
from gluebench.tasks import TASKS
from gluebench.training import (
    TRACKERS,
    TrainConfig,
    TrainOutcome,
    load_weights,
    make_accelerator,
    predict,
    save_weights,
    train,
)

MINILM_SPECIAL = {"[CLS]": 101, "[SEP]": 102}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _build(task: str, **options: object) -> TransformerTaskModel:
    model = get_family("minilm").build(TASKS[task], [], FamilyOptions(**{"max_length": 64, **options}), seed=1)
    assert isinstance(model, TransformerTaskModel)
    return model


@pytest.fixture(scope="module")
def sst2(glue_dir: Path) -> tuple[TransformerTaskModel, TrainOutcome, list[Example]]:
    """MiniLM fine-tuned for 2 epochs on 256 real SST-2 sentences, evaluated on 160 dev sentences."""
    task = TASKS["SST-2"]
    train_set = subsample(read_split(task, "train", glue_dir), 256)
    dev = subsample(read_split(task, "dev", glue_dir), 160)
    model = _build("SST-2", max_length=40)
    config = TrainConfig(epochs=2, batch_size=16, lr=2e-4, warmup_ratio=0.1, seed=1, patience=9, progress=False)
    return model, train(model, task, train_set, {"dev": dev}, config), dev


def test_fine_tuning_beats_the_majority_class(sst2: tuple[TransformerTaskModel, TrainOutcome, list[Example]]) -> None:
    _, outcome, dev = sst2
    majority = 100 * max(sum(e.label == label for e in dev) for label in ("0", "1")) / len(dev)
    assert outcome.best_metrics["accuracy"] >= majority + 8
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]


def test_a_saved_model_predicts_the_same_label_strings_after_reload(
        sst2: tuple[TransformerTaskModel, TrainOutcome, list[Example]], tmp_path: Path) -> None:
    model, _, dev = sst2
    task = TASKS["SST-2"]
    before = predict(model, task, dev)
    save_weights(model.module, tmp_path / "model.safetensors")
    metadata = json.loads(json.dumps(model.metadata()))  # what the run directory keeps
    restored = get_family("minilm").restore(task, metadata, FamilyOptions())
    load_weights(restored.module, tmp_path / "model.safetensors")
    after = predict(restored, task, dev)
    assert after == before
    assert set(after) == {"0", "1"}
    assert restored.module.model.config.id2label == {0: "0", 1: "1"}


def test_label_order_comes_from_the_registry_and_survives_a_reload(glue_dir: Path, tmp_path: Path) -> None:
    task = TASKS["RTE"]
    model = _build("RTE")
    config = model.module.model.config
    assert config.id2label == {0: "entailment", 1: "not_entailment"}
    assert config.label2id == {"entailment": 0, "not_entailment": 1}
    assert config.problem_type == "single_label_classification"
    dev = read_split(task, "dev", glue_dir)[:24]
    before = predict(model, task, dev)
    save_weights(model.module, tmp_path / "rte.safetensors")
    restored = get_family("minilm").restore(task, model.metadata(), FamilyOptions())
    load_weights(restored.module, tmp_path / "rte.safetensors")
    assert predict(restored, task, dev) == before
    assert set(before) <= {"entailment", "not_entailment"}
    with pytest.raises(GluebenchError, match="labels"):  # a model saved for another label set is refused
        get_family("minilm").restore(TASKS["MNLI"], model.metadata(), FamilyOptions())


def test_pair_inputs_are_cls_a_sep_b_sep_with_token_types(glue_dir: Path) -> None:
    model = _build("MRPC", max_length=128)  # long enough that none of these pairs is truncated
    examples = read_split(TASKS["MRPC"], "dev", glue_dir)[:8]
    batch = model.collate(model.encode(examples))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    for row, example in enumerate(examples):
        n = int(batch["attention_mask"][row].sum())
        ids, types = batch["input_ids"][row, :n].tolist(), batch["token_type_ids"][row, :n].tolist()
        seps = [i for i, t in enumerate(ids) if t == MINILM_SPECIAL["[SEP]"]]
        assert ids[0] == MINILM_SPECIAL["[CLS]"] and len(seps) == 2 and seps[1] == n - 1
        assert types == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1)
        assert n < 128
        for text, piece in ((example.text_a, ids[1 : seps[0]]), (example.text_b, ids[seps[0] + 1 : -1])):
            assert piece == model.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert (batch["input_ids"][row, n:] == model.pad_id).all()  # right padding, masked out
    single = _build("SST-2")
    sentence = single.collate(single.encode(read_split(TASKS["SST-2"], "dev", glue_dir)[:4]))
    assert int(sentence["token_type_ids"].sum()) == 0
    assert ((sentence["input_ids"] == MINILM_SPECIAL["[SEP]"]).sum(dim=1) == 1).all()


def test_stsb_head_is_a_single_regression_output(glue_dir: Path) -> None:
    task = TASKS["STS-B"]
    model = _build("STS-B", max_length=48)
    config = model.module.model.config
    assert config.num_labels == 1 and config.problem_type == "regression"
    train_set = subsample(read_split(task, "train", glue_dir), 64)
    dev = read_split(task, "dev", glue_dir)[:48]
    with torch.no_grad():
        assert model.module(**model.collate(model.encode(dev[:5]))).shape == (5,)
    outcome = train(model, task, train_set, {"dev": dev},
                    TrainConfig(epochs=1, batch_size=16, lr=1e-4, seed=1, progress=False))
    assert set(outcome.best_metrics) == {"pearson", "spearman"}
    scores = predict(model, task, dev)
    assert all(isinstance(s, float) and 0.0 <= s <= 5.0 for s in scores)
    assert np.std(scores) > 0  # not one constant


def test_tokenization_is_cached_on_disk_by_tokenizer_task_text_and_length(glue_dir: Path) -> None:
    examples = read_split(TASKS["RTE"], "dev", glue_dir)[:16]
    first = _build("RTE").encode(examples)
    stored = sorted((cache_dir() / "tokenized").glob("RTE-*.npz"))
    assert len(stored) == 1
    with np.load(stored[0], allow_pickle=False) as arrays:  # plain arrays, no pickle needed
        assert set(arrays.files) == {"offsets", "input_ids", "token_type_ids"}
    stamp = stored[0].stat().st_mtime_ns
    again = _build("RTE").encode(examples)
    assert stored[0].stat().st_mtime_ns == stamp  # read back, not rewritten
    assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again, strict=True))
    _build("RTE", max_length=32).encode(examples)
    _build("RTE").encode(examples[:8])
    assert len(list((cache_dir() / "tokenized").glob("RTE-*.npz"))) == 3
    whole = stored[0].read_bytes()
    for damage in (b"not an npz file", whole[: len(whole) // 2]):  # garbage, a truncated write
        stored[0].write_bytes(damage)
        repaired = _build("RTE").encode(examples)  # a damaged entry is rebuilt, never trusted
        assert all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, repaired, strict=True))
        with np.load(stored[0], allow_pickle=False) as arrays:  # and written back whole
            assert len(arrays["offsets"]) == len(examples) + 1


def test_layer_outputs_cover_every_layer_and_feed_the_classifier(glue_dir: Path) -> None:
    model = _build("RTE")
    batch = model.collate(model.encode(read_split(TASKS["RTE"], "dev", glue_dir)[:6]))
    layers = model.layer_outputs(batch)
    expected = [f"{name}_{kind}" for name in ["embeddings", *(f"layer_{i}" for i in range(1, 7))]
                for kind in ("cls", "mean")]
    assert list(layers) == [*expected, "pooled", "pre_classifier", "logits"]
    assert all(layers[name].shape == (6, 384) for name in [*expected, "pooled", "pre_classifier"])
    classifier = model.module.model.classifier
    torch.testing.assert_close(classifier(layers["pre_classifier"]), layers["logits"])
    model.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.module(**batch), layers["logits"])
    assert not torch.allclose(layers["layer_1_cls"], layers["layer_6_cls"])


def test_hf_prefix_loads_any_local_model_and_refuses_what_it_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    family = get_family(f"hf:{minilm_path()}")
    assert family.default_lr == 2e-5 and family.default_warmup == 0.1
    model = family.build(TASKS["CoLA"], [], FamilyOptions(max_length=32), seed=1)
    assert model.module.model.config.num_labels == 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GluebenchError, match="cannot load"):
        get_family("hf:/no/such/model-dir").build(TASKS["CoLA"], [], FamilyOptions(), seed=1)
    with pytest.raises(GluebenchError, match="max-length"):
        family.build(TASKS["CoLA"], [], FamilyOptions(max_length=4096), seed=1)


def test_bf16_mixed_precision_passes_through_accelerate(glue_dir: Path) -> None:
    """bf16 autocast (on CPU here; the same flag drives a GPU) trains and predicts; fp32 afterwards still works."""
    task = TASKS["SST-2"]
    train_set = subsample(read_split(task, "train", glue_dir), 8)  # bf16 is emulated (10x slower) on most CPUs
    dev = read_split(task, "dev", glue_dir)[:4]
    model = _build("SST-2", max_length=12)
    outcome = train(model, task, train_set, {"dev": dev}, TrainConfig(
        epochs=1, batch_size=8, lr=1e-4, seed=1, progress=False, mixed_precision="bf16"))
    assert make_accelerator().mixed_precision == "bf16"
    assert np.isfinite(outcome.history[0]["train_loss"])
    with torch.no_grad():  # accelerate's autocast wrapper hands back float32 outputs
        assert model.module(**model.collate(model.encode(dev))).dtype == torch.float32
    assert set(predict(model, task, dev)) <= {"0", "1"}
    assert make_accelerator("no").mixed_precision == "no"  # a later fp32 training in this process is allowed


def test_unknown_or_missing_trackers_are_config_errors() -> None:
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    with pytest.raises(ConfigError, match="unknown tracker"):
        make_accelerator(trackers=["neptune-ish"])
    available = {"tensorboard": is_tensorboard_available(), "mlflow": is_mlflow_available(),
                 "wandb": is_wandb_available()}
    for name in TRACKERS:
        if not available[name]:
            with pytest.raises(ConfigError, match=f"pip install {name}"):
                make_accelerator(trackers=[name])


# ---- sweep ------------------------------------------------------------------------------------------


def test_sweep_runs_every_trial_records_them_and_picks_the_best(glue_dir: Path, tmp_path: Path) -> None:
    base = RunConfig(model="glove-cbow", tasks=["WNLI", "MRPC"], data_dir=str(glue_dir), epochs=1, progress=False)
    out = tmp_path / "sweep"
    result = sweep(base, parse_grid("lr=1e-4,3e-3"), output_dir=out)
    record = json.loads((out / "sweep.json").read_text())
    for task in ("WNLI", "MRPC"):  # one study per task, each walking the grid
        assert [t["params"] for t in record["trials"] if t["task"] == task] == [{"lr": 1e-4}, {"lr": 3e-3}]
    for trial in record["trials"]:
        run = json.loads((Path(trial["run_dir"]) / "run.json").read_text())
        assert run["config"]["lr"] == trial["params"]["lr"] and run["config"]["epochs"] == 1
        assert trial["metrics"] == {task: info["mean"] for task, info in run["tasks"].items()}
    for task, main in (("WNLI", "accuracy"), ("MRPC", "f1")):
        trials = [t for t in record["trials"] if t["task"] == task]
        values = [t["metrics"][task][main] for t in trials]
        assert record["best"][task]["value"] == max(values)
        assert record["best"][task]["trial"] == trials[values.index(max(values))]["name"]
    assert "**" in (out / "sweep.md").read_text()
    stamps = {t.name: os.stat(Path(t.run_dir) / "run.json").st_mtime_ns for t in result.trials}
    again = sweep(RunConfig(progress=False), None, output_dir=out, resume=True)  # saved grid and config win
    assert {t.name: os.stat(Path(t.run_dir) / "run.json").st_mtime_ns for t in again.trials} == stamps
    assert again.best == result.best


def test_sweep_grid_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="'lrr' cannot be swept"):
        parse_grid("lrr=1e-5")
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        parse_grid("batch_size=16,3.5")
    with pytest.raises(ConfigError, match="repeats"):
        parse_grid("lr=2e-5,2e-5")
