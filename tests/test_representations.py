"""Representation similarity across tasks on real slices: frozen GloVe is identical at the embedding layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gluebench.analysis.representations import analyze, extract, load_run, read_alike
from gluebench.cli import app
from gluebench.config import RunConfig
from gluebench.runner import run

TASKS = ["SST-2", "MRPC"]  # one single-sentence and one pair task


@pytest.fixture(scope="module")
def runs(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """glove-cbow on 200-example slices of SST-2 and MRPC, once with frozen and once with trainable vectors.

    CBOW keeps the suite fast; its layers after the embedding (features, MLP, output) are all task-trained."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, unfreeze in (("frozen", False), ("unfrozen", True)):
        config = RunConfig(model="glove-cbow", tasks=TASKS, seeds=[1], data_dir=str(glue_dir),
                           output_dir=str(root / name), epochs=2, max_train_examples=200, hidden_size=64,
                           unfreeze_embeddings=unfreeze, lr=5e-3, progress=False)
        run(config)
        made[name] = root / name
    return made


@pytest.fixture(scope="module")
def result(runs: dict[str, Path], glue_dir: Path) -> dict:
    return analyze([runs["frozen"], runs["unfrozen"]], glue_dir, probe_size=60)


def test_frozen_glove_embedding_layer_is_identical_across_tasks(result: dict) -> None:
    frozen, unfrozen = result["runs"]
    assert frozen["frozen_embeddings"] is True and unfrozen["frozen_embeddings"] is False
    assert frozen["tasks"] == unfrozen["tasks"] == TASKS
    assert frozen["layers"][0] == "embeddings"
    assert frozen["cka"]["embeddings"][0][1] == pytest.approx(1.0, abs=1e-9)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in frozen["cka_to_initial"]["embeddings"].values())
    # the task-trained layers diverge: the output layers of a sentiment and a paraphrase model differ
    assert frozen["cross_task_cka"]["output"]["mean"] < 0.9
    assert "identical across tasks" in result["summary"][0]


def test_trainable_vectors_drift_a_little_and_only_words_seen_in_training(result: dict, runs: dict) -> None:
    unfrozen = result["runs"][1]
    for task in TASKS:
        drift = unfrozen["embedding_drift"][task]
        assert 0 < drift["moved"] < drift["words"]  # dev/test-only words get no gradient
        assert 0 < drift["relative_displacement_moved"]["median"] < 0.5
    assert unfrozen["cross_task_cka"]["embeddings"]["min"] < 1.0
    assert not result["runs"][0]["embedding_drift"]  # frozen runs have nothing to report


def test_every_model_reads_the_probe_as_the_same_words(runs: dict, glue_dir: Path) -> None:
    loaded = load_run(runs["frozen"])
    models = list(loaded.models.values())
    sentences = json.loads(json.dumps(analyze([runs["frozen"]], glue_dir, probe_size=20)["probe"]["sentences"]))
    assert len(sentences) == 20 and all(read_alike(s, models) for s in sentences)
    first, second = (extract(m, sentences)["embeddings"] for m in models)
    assert np.array_equal(first, second[:, : first.shape[1]])  # the pair model's first half is the same vector


def test_cli_writes_report_json_and_pngs(runs: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["analyze", "representations", str(runs["frozen"]), str(runs["unfrozen"]),
                                      "-o", str(tmp_path), "--probe-size", "30"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "representations.md").read_text()
    assert "## glove-cbow (frozen embeddings)" in report and "## glove-cbow (unfrozen embeddings)" in report
    assert (tmp_path / "profile.png").stat().st_size > 10_000
    assert len(list(tmp_path.glob("cka-*.png"))) == 2
    assert json.loads((tmp_path / "representations.json").read_text())["probe"]["size"] == 30
