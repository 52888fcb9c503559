"""Bring your own model: evaluate checkpoints gluebench did not train, export runs to Hugging Face, predict new
text. Real MiniLM fine-tuned on a real CoLA slice; real glove-cbow on RTE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gluebench.data.read import read_split
from gluebench.runs import RunPaths
from gluebench.tasks import TASKS
from tests.conftest import CliRun

MINILM_RUN = ["--model", "minilm", "--tasks", "CoLA", "--max-train-examples", "96", "--epochs", "1",
              "--max-length", "64", "--batch-size", "16", "--lr", "1e-4", "--no-progress"]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluebench: error: "), err
    return lines[0]


def _metrics(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


def _predictions(run: Path, task: str, split: str = "dev", seed: int = 1) -> list[str]:
    lines = RunPaths(run).predictions(task, seed, split).read_text().splitlines()[1:]
    return [line.split("\t")[1] for line in lines]


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path) -> tuple[Path, Path]:
    """A MiniLM run fine-tuned on CoLA and its export (module-scoped: one training for all tests here)."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("byom")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLUEBENCH_CACHE": str(root / "cache")}
    run, export = root / "run", root / "export"
    for args in (["run", *MINILM_RUN, "--data-dir", str(glue_dir), "-o", str(run)],
                 ["export", str(run), "-o", str(export)]):
        done = subprocess.run([sys.executable, "-m", "gluebench", *args], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return run, export


def test_export_is_a_hugging_face_model_and_evaluate_gives_the_run_back(
        minilm_export: tuple[Path, Path], glue_dir: Path, cli: CliRun, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

    run, export = minilm_export
    checkpoint = export / "CoLA"
    config = AutoConfig.from_pretrained(checkpoint)
    assert config.id2label == {0: "unacceptable", 1: "acceptable"}
    assert AutoModelForSequenceClassification.from_pretrained(checkpoint).num_labels == 2
    card = (checkpoint / "README.md").read_text()
    assert "CoLA" in card and "mcc" in card and "gluebench" in card
    assert not list(export.rglob("*.bin")) and not list(export.rglob("*.pkl"))  # no pickles

    out = tmp_path / "evaluated"
    code, _, err = cli("evaluate", "--model", f"hf:{checkpoint}", "--tasks", "CoLA", "--max-length", "64",
                       "--data-dir", str(glue_dir), "-o", str(out))
    assert code == 0, err
    assert _metrics(out)["CoLA"]["mcc"] == pytest.approx(_metrics(run)["CoLA"]["mcc"], abs=1e-4)
    assert _predictions(out, "CoLA", "test") == _predictions(run, "CoLA", "test")

    dev = read_split(TASKS["CoLA"], "dev", glue_dir)[:100]
    classify = pipeline("text-classification", model=str(checkpoint), device="cpu")
    named = [r["label"] for r in classify([e.text_a for e in dev], truncation=True, max_length=64, batch_size=1)]
    by_name = {"unacceptable": "0", "acceptable": "1"}
    assert [by_name[n] for n in named] == _predictions(run, "CoLA")[: len(dev)]


def test_label_names_are_matched_or_mapped_and_misfit_heads_are_refused(
        minilm_export: tuple[Path, Path], glue_dir: Path, cli: CliRun, tmp_path: Path) -> None:
    import shutil

    run, export = minilm_export
    generic = tmp_path / "generic"
    shutil.copytree(export / "CoLA", generic)
    config = json.loads((generic / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "LABEL_0", "1": "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    (generic / "config.json").write_text(json.dumps(config))
    common = ["evaluate", "--model", f"hf:{generic}", "--tasks", "CoLA", "--max-length", "64",
              "--data-dir", str(glue_dir)]

    code, _, err = cli(*common, "-o", str(tmp_path / "refused"))
    line = _one_line(err)
    assert code == 2 and "LABEL_0" in line and "acceptable" in line and "--label-map" in line
    assert not (tmp_path / "refused").exists()  # refused before anything was written

    code, _, err = cli(*common, "--label-map", "0=unacceptable,1=acceptable", "-o", str(tmp_path / "mapped"))
    assert code == 0, err
    expected = _metrics(run)["CoLA"]["mcc"]
    assert _metrics(tmp_path / "mapped")["CoLA"]["mcc"] == pytest.approx(expected, abs=1e-4)
    code, _, err = cli(*common, "--label-map", "CoLA:0=1,CoLA:1=0", "-o", str(tmp_path / "swapped"))
    assert code == 0, err
    assert _metrics(tmp_path / "swapped")["CoLA"]["mcc"] == pytest.approx(-expected, abs=1e-4)  # labels swapped

    code, _, err = cli("evaluate", "--model", f"hf:{export / 'CoLA'}", "--tasks", "STS-B", "--data-dir",
                       str(glue_dir), "-o", str(tmp_path / "misfit"))
    assert code == 2 and "2-output head cannot score STS-B" in _one_line(err)


def test_evaluate_output_is_an_ordinary_run_and_a_run_dir_re_evaluates(
        minilm_export: tuple[Path, Path], glue_dir: Path, cli: CliRun, tmp_path: Path) -> None:
    run, _ = minilm_export
    again = tmp_path / "again"
    code, _, err = cli("evaluate", str(run), "--data-dir", str(glue_dir), "-o", str(again))
    assert code == 0, err
    assert _metrics(again) == _metrics(run)
    assert _predictions(again, "CoLA") == _predictions(run, "CoLA")
    code, out, err = cli("score", str(again / "metrics.json"))
    assert code == 0 and "CoLA" in out, err
    zip_path = tmp_path / "submission.zip"
    code, _, err = cli("submit", str(again), "-o", str(zip_path), "--fill", "majority")
    assert code == 0, err
    code, _, err = cli("validate-submission", str(zip_path))
    assert code == 0, err


def test_static_models_export_and_reload(glue_dir: Path, cli: CliRun, tmp_path: Path) -> None:
    run, export, evaluated = tmp_path / "run", tmp_path / "export", tmp_path / "evaluated"
    code, _, err = cli("run", "--model", "glove-cbow", "--tasks", "RTE", "--epochs", "2", "--no-progress",
                       "--data-dir", str(glue_dir), "-o", str(run))
    assert code == 0, err
    code, _, err = cli("export", str(run), "-o", str(export))
    assert code == 0, err
    assert {p.name for p in (export / "RTE").iterdir()} == {"config.json", "vocab.txt", "model.safetensors",
                                                            "README.md"}
    code, _, err = cli("evaluate", "--model", str(export), "--tasks", "RTE", "--data-dir", str(glue_dir),
                       "-o", str(evaluated))
    assert code == 0, err
    assert _metrics(evaluated) == _metrics(run)
    assert _predictions(evaluated, "RTE", "test") == _predictions(run, "RTE", "test")
    code, _, err = cli("export", str(run), "-o", str(export))  # not over an earlier export
    assert code == 2 and "not empty" in _one_line(err)


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("missing.csv", "text\nA sentence.\n", "missing.csv:2: no text in column 'sentence'"),
    ("empty.tsv", "", "empty.tsv: empty file"),
    ("latin1.tsv", "sentence\nCaf\xe9 au lait.\n", "latin1.tsv:2: not UTF-8"),
    ("ragged.tsv", "sentence\tid\nOne.\t1\nTwo.\n", "ragged.tsv:3: 1 fields where the header has 2"),
    ("broken.jsonl", '{"sentence": "One."}\n{"sentence": \n', "broken.jsonl:2: not a JSON object"),
])
def test_predict_bad_input_is_one_line_and_writes_nothing(
        minilm_export: tuple[Path, Path], cli: CliRun, tmp_path: Path, name: str, content: str,
        problem: str) -> None:
    run, _ = minilm_export
    source = tmp_path / name
    source.write_bytes(content.encode("latin-1" if "latin1" in name else "utf-8"))
    out = tmp_path / "out.tsv"
    code, _, err = cli("predict", str(run), "--task", "CoLA", "--input", str(source), "-o", str(out))
    assert code == 2 and problem in _one_line(err)
    assert not out.exists()


def test_predict_new_text_in_every_format(minilm_export: tuple[Path, Path], cli: CliRun, tmp_path: Path,
                                          glue_dir: Path) -> None:
    run, _ = minilm_export
    dev = read_split(TASKS["CoLA"], "dev", glue_dir)[:5]
    inputs = {
        "new.tsv": "sentence\n" + "".join(f"{e.text_a}\n" for e in dev),
        "new.csv": "id,sentence\n" + "".join(f'{i},"{e.text_a}"\n' for i, e in enumerate(dev)),
        "new.jsonl": "".join(json.dumps({"sentence": e.text_a}) + "\n" for e in dev),
    }
    outputs = []
    for name, content in inputs.items():
        (tmp_path / name).write_text(content)
        code, _, err = cli("predict", str(run), "--task", "cola", "--input", str(tmp_path / name),
                           "-o", str(tmp_path / f"{name}.out"))
        assert code == 0, err
        outputs.append((tmp_path / f"{name}.out").read_text())
    assert outputs[0] == outputs[1] == outputs[2]
    header, *rows = outputs[0].splitlines()
    assert header.split("\t") == ["index", "label", "p_unacceptable", "p_acceptable"]
    assert len(rows) == 5
    by_name = {"unacceptable": "0", "acceptable": "1"}
    assert [by_name[r.split("\t")[1]] for r in rows] == _predictions(run, "CoLA")[:5]  # as the run predicted
    for row in rows:
        assert sum(float(p) for p in row.split("\t")[2:]) == pytest.approx(1.0, abs=1e-3)
