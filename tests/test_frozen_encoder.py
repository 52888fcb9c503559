"""``--freeze-encoder`` on real GLUE rows: the encoder stays bit-identical while the head trains, cached
features are the encoder's own, the head beats the majority class, an interrupted training resumes to the
same result, and a run exports, re-evaluates and submits as any other."""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load

from gluebench.artifacts import subsample
from gluebench.config import RunConfig, TrainConfig
from gluebench.data.read import read_split
from gluebench.errors import GluebenchError
from gluebench.models import FamilyOptions, get_family
from gluebench.models.transformer import FrozenEncoderTaskModel, encoder_digest, minilm_path
from gluebench.runner import train_config
from gluebench.runs import read_json
from gluebench.tasks import TASKS
from gluebench.training import train, weights_bytes
from tests.conftest import CliRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FROZEN = FamilyOptions(max_length=64, freeze_encoder=True)
HEAD = {"batch_size": 32, "lr": 1e-3, "warmup_ratio": 0.0, "progress": False}


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module fixtures run before each test's own cache is set: give them one of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLUEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def trained(glue_dir: Path, private_cache: None) -> dict[str, Any]:
    """A frozen-MiniLM head trained on 400 real SST-2 sentences (4 epochs), judged on the full dev set."""
    task = TASKS["SST-2"]
    rows = subsample(read_split(task, "train", glue_dir), 400)
    dev = read_split(task, "dev", glue_dir)
    model = get_family("minilm").build(task, rows, FROZEN, seed=1)
    assert isinstance(model, FrozenEncoderTaskModel)
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head = {k: v.clone() for k, v in model.module.state_dict().items()}
    outcome = train(model, task, rows, {"dev": dev}, TrainConfig(epochs=4, **HEAD))
    return {"model": model, "encoder": encoder, "head": head, "outcome": outcome, "dev": dev}


def test_the_encoder_stays_bit_identical_and_only_the_head_trains(trained: dict[str, Any]) -> None:
    model: FrozenEncoderTaskModel = trained["model"]
    after = model.encoder.state_dict()
    assert set(after) == set(trained["encoder"]) and all(torch.equal(trained["encoder"][k], after[k]) for k in after)
    assert encoder_digest(model.encoder) == model.encoder_digest() == model.metadata()["encoder_digest"]
    head = model.module.state_dict()
    assert all(not torch.equal(trained["head"][k], head[k]) for k in head)  # every head tensor moved
    assert set(load(weights_bytes(model.module))) == set(head)  # what a run saves: the head alone
    assert sum(p.numel() for p in model.module.parameters()) < 0.05 * sum(p.numel() for p in after.values())


def test_a_frozen_minilm_head_beats_the_majority_class(trained: dict[str, Any]) -> None:
    dev = trained["dev"]
    majority = 100 * max(Counter(e.label for e in dev).values()) / len(dev)
    assert trained["outcome"].best_metrics["accuracy"] > majority + 10, (trained["outcome"].best_metrics, majority)


def test_cached_features_equal_fresh_ones(trained: dict[str, Any], isolated_cache: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model: FrozenEncoderTaskModel = trained["model"]
    examples = trained["dev"][:24]
    first = model.encode(examples)
    entries = list((isolated_cache / "encoded").iterdir())
    again = model.encode(examples)  # read back from the cache entry just written
    assert len(entries) == 1 and list((isolated_cache / "encoded").iterdir()) == entries
    assert all((a["pooled"] == b["pooled"]).all() and (a["input_ids"] == b["input_ids"]).all()
               for a, b in zip(first, again, strict=True))
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    encoder = AutoModel.from_pretrained(str(minilm_path())).eval()
    with torch.no_grad():  # each sentence alone through an independently loaded encoder, mean of its tokens
        fresh = torch.stack([encoder(**tokenizer(e.text_a, truncation=True, max_length=64, return_tensors="pt"))
                             .last_hidden_state[0].mean(0) for e in examples])
    cached = torch.stack([torch.from_numpy(f["pooled"]) for f in again])
    torch.testing.assert_close(cached, fresh, atol=1e-5, rtol=1e-4)
    layers = model.layer_outputs(model.collate(again))  # the live encoder agrees with the cache as well
    torch.testing.assert_close(layers["layer_6_mean"], cached, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(layers["features"], cached)


def test_an_interrupted_frozen_training_resumes_to_the_same_result(glue_dir: Path, tmp_path: Path) -> None:
    task = TASKS["MRPC"]  # a pair task: two cached vectors per example
    rows = subsample(read_split(task, "train", glue_dir), 200)
    dev = read_split(task, "dev", glue_dir)[:100]
    config = TrainConfig(epochs=3, seed=2, **HEAD)
    family = get_family("minilm")
    straight = train(family.build(task, rows, FROZEN, seed=2), task, rows, {"dev": dev}, config)

    def stop_in_epoch_two(record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(family.build(task, rows, FROZEN, seed=2), task, rows, {"dev": dev}, config,
              checkpoint_dir=tmp_path / "checkpoint", on_epoch=stop_in_epoch_two)
    resumed = train(family.build(task, rows, FROZEN, seed=2), task, rows, {"dev": dev}, config,
                    checkpoint_dir=tmp_path / "checkpoint", resume=True)
    assert resumed.resumed_from == {"epoch": 1, "global_step": 7}
    assert resumed.best_metrics == straight.best_metrics and resumed.best_weights == straight.best_weights


def test_a_frozen_run_exports_reevaluates_and_submits(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    code, _, err = cli("run", "--model", "minilm", "--freeze-encoder", "--pooling", "cls", "--tasks", "WNLI",
                         "--max-train-examples", "200", "--epochs", "3", "--lr", "1e-3", "--max-length", "64",
                         "--data-dir", str(glue_dir), "-o", str(run_dir), "--no-progress")
    assert code == 0, err
    meta = read_json(run_dir / "tasks" / "WNLI" / "seed-1" / "model_meta.json")
    assert meta["freeze_encoder"] is True and meta["pooling"] == "cls"
    assert (run_dir / "tasks" / "WNLI" / "seed-1" / "model.safetensors").stat().st_size < 5_000_000  # head only
    metrics = read_json(run_dir / "metrics.json")["WNLI"]
    code, _, err = cli("export", str(run_dir), "-o", str(export_dir))
    assert code == 0, err
    assert {p.name for p in (export_dir / "WNLI").iterdir()} >= {"encoder", "head.safetensors", "frozen_head.json"}
    assert not list(export_dir.rglob("*.bin")) and not list(export_dir.rglob("*.pkl"))
    code, _, err = cli("evaluate", "--model", str(export_dir), "--tasks", "WNLI", "--data-dir", str(glue_dir),
                         "-o", str(tmp_path / "again"))
    assert code == 0, err
    assert read_json(tmp_path / "again" / "metrics.json")["WNLI"] == metrics
    code, _, err = cli("submit", str(run_dir), "-o", str(tmp_path / "glue.zip"), "--fill", "majority",
                         "--data-dir", str(glue_dir))
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "glue.zip") as archive:
        rows = archive.read("WNLI.tsv").decode().splitlines()
    assert len(rows) == 1 + 146  # the header and every WNLI test example, predicted by the frozen model
    code, _, err = cli("run", "--resume", "--output-dir", str(run_dir), "--no-progress")
    assert code == 0 and read_json(run_dir / "metrics.json")["WNLI"] == metrics


def test_frozen_options_are_checked(cli: CliRun, tmp_path: Path) -> None:
    with pytest.raises(GluebenchError, match="--pooling applies to --freeze-encoder"):
        get_family("minilm").build(TASKS["RTE"], [], FamilyOptions(pooling="cls"), seed=1)
    code, _, err = cli("run", "--model", "minilm", "--freeze-encoder", "--pooling", "max", "-o", str(tmp_path))
    assert code == 2 and "option 'pooling' must be one of cls, mean, got 'max'" in err
    saved = get_family("minilm").build(TASKS["RTE"], [], FROZEN, seed=1).metadata()
    other_weights = {**saved, "encoder_digest": "0" * 64}  # what a head trained on another encoder records
    with pytest.raises(GluebenchError, match="is not the one this head was trained on"):
        get_family("minilm").restore(TASKS["RTE"], other_weights, FamilyOptions())


def test_a_frozen_run_defaults_to_a_heads_pace_and_explicit_settings_win() -> None:
    family = get_family("minilm")
    fine_tuning = train_config(RunConfig(model="minilm"), family, seed=1)
    frozen = train_config(RunConfig(model="minilm", freeze_encoder=True), family, seed=1)
    assert (fine_tuning.lr, fine_tuning.epochs) == (5e-5, 3)
    assert (frozen.lr, frozen.epochs, frozen.batch_size) == (1e-3, 20, 32)
    named = train_config(RunConfig(model="minilm", freeze_encoder=True, lr=3e-4, epochs=5), family, seed=1)
    assert (named.lr, named.epochs) == (3e-4, 5)
