"""Token-level contextuality (Ethayarajh 2019): the measures against numpy by hand, on random vectors, on
real static and contextual layers; the 2 x 2 study end to end on real slices, and its bad input in one line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from gluebench.analysis.contextuality import (
    WORD_VECTORS,
    Occurrences,
    measure,
    measured_words,
    random_pair_cosine,
    readings,
    summarize,
)
from gluebench.config import RunConfig
from gluebench.data.read import read_split
from gluebench.models import FamilyOptions, get_family
from gluebench.models.base import TokenOutputs
from gluebench.reporting import write_report
from gluebench.runner import run
from gluebench.tasks import TASKS
from tests.conftest import CliRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASK_NAMES = ["SST-2", "CoLA"]  # short sentences: enough of them are known to both tasks' GloVe vocabularies
DEV_ROWS = 200  # each dev file's first rows: the dev sets, and the probes' pool, kept small


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_measures_equal_a_direct_numpy_computation_on_a_hand_made_case() -> None:
    rng = np.random.default_rng(3)
    # three sentences; "bank" occurs in all three (split into two subword tokens in the second, and twice in
    # the third: only its first occurrence there counts as a context), "the" in two; a special token first
    sentences = [["the", "bank", "rose"], ["a", "bank", "fell"], ["the", "bank", "bank"]]
    tokens = [[-1, 0, 1, 2], [-1, 0, 1, 1, 2], [-1, 0, 1, 2]]
    vectors = [rng.normal(size=(len(t), 4)).astype(np.float32) for t in tokens]
    outputs = [TokenOutputs(list(words), np.array(t), {"layer": v}) for words, t, v in zip(sentences, tokens,
                                                                                       vectors, strict=True)]
    measured = measure(outputs, min_contexts=2)["layer"]
    words = [[v[np.array(t) == k].astype(np.float64).mean(axis=0) for k in range(len(s))]  # subwords averaged
             for s, t, v in zip(sentences, tokens, vectors, strict=True)]
    bank = np.stack([words[0][1], words[1][1], words[2][1]])  # the third sentence's first "bank"
    expected = np.mean([_cos(bank[i], bank[j]) for i, j in itertools.permutations(range(3), 2)])
    assert measured.self_similarity["bank"] == pytest.approx(expected, abs=1e-12)
    assert measured.self_similarity["the"] == pytest.approx(_cos(words[0][0], words[2][0]), abs=1e-12)
    singular = np.linalg.svd(bank, compute_uv=False)
    assert measured.max_explainable_variance["bank"] == pytest.approx(singular[0] ** 2 / np.sum(singular**2),
                                                                      abs=1e-12)
    intra = np.mean([np.mean([_cos(w, np.mean(s, axis=0)) for w in s]) for s in words])
    assert measured.intra_sentence == pytest.approx(intra, abs=1e-12)
    assert set(measured.self_similarity) == {"bank", "the"} and measured.contexts == {"bank": 3, "the": 2}
    summary = summarize(measure(outputs, min_contexts=2), {"bank", "the"})["layer"]["self_similarity"]
    assert summary["corrected"] == pytest.approx(summary["raw"] - summary["baseline"])
    assert summary["raw"] == pytest.approx(np.mean([expected, _cos(words[0][0], words[2][0])]))


def test_the_anisotropy_baseline_of_random_vectors_is_about_zero() -> None:
    rng = np.random.default_rng(0)
    occurrences = Occurrences(rng.normal(size=(6000, 256)), np.zeros(6000, int), np.repeat(np.arange(300), 20), ["w"])
    assert abs(random_pair_cosine(occurrences, np.random.default_rng(1))) < 0.005
    shifted = Occurrences(occurrences.vectors + 2.0, occurrences.word, occurrences.sentence, ["w"])
    # a common direction of length 2 per coordinate: expected cosine 4 / (4 + 1) (anisotropy)
    assert random_pair_cosine(shifted, np.random.default_rng(1)) == pytest.approx(0.8, abs=0.01)


@pytest.fixture(scope="module")
def probe(glue_dir: Path) -> list[str]:
    return list(dict.fromkeys(t for e in read_split(TASKS["STS-B"], "dev", glue_dir)[:80]
                              for t in (e.text_a, e.text_b) if t))


def test_a_static_layer_has_self_similarity_one_a_contextual_layer_less(probe: list[str], glue_dir: Path) -> None:
    examples = read_split(TASKS["STS-B"], "dev", glue_dir)[:80]
    glove = get_family("glove-bilstm").build(TASKS["STS-B"], examples, FamilyOptions(), seed=1)
    minilm = get_family("minilm").build(TASKS["STS-B"], [], FamilyOptions(max_length=64, freeze_encoder=True), seed=1)
    static, contextual = measure(readings(glove, probe)), measure(readings(minilm, probe))
    assert list(static) == [WORD_VECTORS, "encoder"] and len(static[WORD_VECTORS].self_similarity) >= 20
    static_top = summarize(static, measured_words(static))  # the BiLSTM's states are contextual, its inputs not
    assert static_top["encoder"]["self_similarity"]["raw"] < 1 - 1e-3
    for layer in (static[WORD_VECTORS], contextual[WORD_VECTORS]):  # input vectors: one per word type
        assert all(abs(value - 1) < 1e-6 for value in layer.self_similarity.values())
        assert all(abs(value - 1) < 1e-6 for value in layer.max_explainable_variance.values())
    words = measured_words(contextual)
    top = summarize(contextual, words)
    assert top["layer_6"]["self_similarity"]["raw"] < 0.95  # context changes a word's top-layer vector
    assert all(value < 1 - 1e-3 for value in contextual["layer_6"].self_similarity.values())
    assert top["layer_6"]["self_similarity"]["raw"] < top["embeddings"]["self_similarity"]["raw"]


# ---- the 2 x 2 study end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_glue(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SST-2 and CoLA training files and the first rows of their dev files (no test files: nothing to
    predict beyond dev), so four runs of both families fit in a test."""
    root = tmp_path_factory.mktemp("glue")
    for task in TASK_NAMES:
        source = glue_dir / task
        (root / task).mkdir()
        (root / task / "train.tsv").symlink_to(source / "train.tsv")
        lines = (source / "dev.tsv").read_bytes().splitlines(keepends=True)
        (root / task / "dev.tsv").write_bytes(b"".join(lines[: DEV_ROWS + 1]))
    return root


def _run(root: Path, data: Path, name: str, **values: object) -> Path:
    config = RunConfig(tasks=TASK_NAMES, seeds=[1], data_dir=str(data), output_dir=str(root / name),
                       progress=False, **values)
    run(config)
    return root / name


@pytest.fixture(scope="module")
def study_runs(small_glue: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four conditions (static: 1,000-example slices, whose vocabularies share enough probe sentences;
    MiniLM: 120 examples, one to three epochs), and a glove-cbow run (no encoder layer)."""
    root = tmp_path_factory.mktemp("study")
    static = {"hidden_size": 64, "epochs": 2, "max_train_examples": 1000}
    minilm = {"model": "minilm", "max_length": 32, "max_train_examples": 120}
    return {
        "static-frozen": _run(root, small_glue, "sf", model="glove-bilstm", **static),
        "static-trained": _run(root, small_glue, "st", model="glove-bilstm", unfreeze_embeddings=True, **static),
        "contextual-frozen": _run(root, small_glue, "cf", freeze_encoder=True, lr=1e-3, epochs=3, **minilm),
        "contextual-fine-tuned": _run(root, small_glue, "ct", lr=1e-4, epochs=1, **minilm),
        "cbow": _run(root, small_glue, "cbow", model="glove-cbow", **static),
    }


@pytest.fixture(scope="module")
def study(study_runs: dict[str, Path], small_glue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from gluebench.cli import app

    out = tmp_path_factory.mktemp("analysis")
    runs = [str(study_runs[c]) for c in ("contextual-fine-tuned", "static-frozen", "contextual-frozen",
                                         "static-trained")]
    result = CliRunner().invoke(app, ["analyze", "representations", *runs, "--study", "--probe-size", "20",
                                      "--token-probe-size", "60", "--min-contexts", "3", "--data-dir",
                                      str(small_glue), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_study_separates_static_from_frozen(study: Path, study_runs: dict[str, Path]) -> None:
    record = json.loads((study / "study.json").read_text())
    conditions = record["conditions"]
    assert list(conditions) == ["static-frozen", "static-trained", "contextual-frozen", "contextual-fine-tuned"]
    table = {row["condition"]: row for row in record["table"]}
    assert table["static-frozen"]["cka_input"] == pytest.approx(1.0, abs=1e-9)  # frozen GloVe: identical inputs
    assert table["contextual-frozen"]["cka_top"] == pytest.approx(1.0, abs=1e-9)  # a frozen encoder, too
    assert table["contextual-fine-tuned"]["cka_top"] < 0.999  # fine-tuning makes the top layer task-specific
    for condition in ("static-frozen", "static-trained"):  # static: one vector per word, in every context
        raw = conditions[condition]["contextuality"][WORD_VECTORS]["self_similarity"]["raw"]
        assert raw == pytest.approx(1, abs=1e-6)
        states = conditions[condition]["contextuality"]["encoder"]["self_similarity"]["raw"]
        assert states < 0.999  # the BiLSTM over the static vectors is contextual
    top = conditions["contextual-frozen"]["contextuality"]["layer_6"]["self_similarity"]
    assert top["raw"] < 0.99 and top["corrected_min"] == top["corrected_max"]  # not static; the same for every task
    assert len(record["words"]) >= 3 and set(conditions["static-frozen"]["dev"]) == set(TASK_NAMES)
    for condition, info in conditions.items():
        assert info["run_dir"] == str(study_runs[condition]) and len(info["dev"]["SST-2"]["seeds"]) == 1
    markdown = (study / "representations.md").read_text()
    assert "## The 2 × 2: static vs contextual × frozen vs trained" in markdown
    assert f"Static input layers: at `{WORD_VECTORS}` every word has one vector" in markdown
    assert "The static family's own encoder is contextual: at `encoder`" in markdown
    assert (study / "study-contextuality.png").stat().st_size > 10_000 and (study / "study-cka.png").is_file()
    assert (study_runs["static-frozen"] / "analysis" / "representations" / "study.json").is_file()


def test_the_html_report_of_a_study_run_has_the_study_section(study: Path, study_runs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    report = write_report([study_runs["contextual-frozen"]], tmp_path / "report.html")
    page = report.html.read_text()
    assert "Representations: static vs contextual × frozen vs trained" in page
    assert {p.name for p in report.figures} >= {"study1_study-contextuality.png", "study1_study-cka.png"}
    record = json.loads((study / "study.json").read_text())
    assert f"{record['table'][0]['dev_mean']:.1f}" in page


@pytest.mark.parametrize("case", ["missing task", "no encoder layer", "too few contexts", "missing condition"])
def test_bad_study_input_is_one_line(case: str, study: Path, study_runs: dict[str, Path], small_glue: Path,
                                     cli: CliRun, tmp_path: Path) -> None:
    runs = {c: str(p) for c, p in study_runs.items() if c != "cbow"}
    args = ["--probe-size", "20", "--token-probe-size", "60", "--min-contexts", "3"]
    if case == "missing task":
        args += ["--tasks", "CoLA,SST-2,RTE"]
        expected = "the static-frozen run has no model of RTE for seed 1 (it has: CoLA, SST-2)"
    elif case == "no encoder layer":
        runs["static-frozen"] = str(study_runs["cbow"])
        expected = "the static-frozen run's glove-cbow models have no encoder layer over their inputs"
    elif case == "too few contexts":
        args = ["--token-probe-size", "12", "--min-contexts", "13"]
        expected = "no word occurs in 13 or more of the 12 token-probe sentences for every model"
    else:
        del runs["contextual-frozen"]
        expected = "the study needs one run per condition; missing: contextual-frozen"
    code, out, err = cli("analyze", "representations", *runs.values(), "--study", *args, "--data-dir",
                         str(small_glue), "-o", str(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("gluebench: error: ") and expected in lines[0], lines[0]
