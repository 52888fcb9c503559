"""AX category parsing on the real diagnostic-full.tsv, and R3 per slice against sklearn."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from sklearn.metrics import matthews_corrcoef

from gluebench.analysis.diagnostic import load_diagnostic
from gluebench.metrics import (
    breakdown,
    coarse_categories,
    collapse_to_binary,
    diagnostic_task,
    fine_tags,
    r3,
)
from gluebench.tasks import NLI3

COARSE_CATEGORIES = diagnostic_task()[1].categories  # the registry's: AX's four coarse categories


def raw_columns(glue_dir: Path) -> tuple[list[str], list[list[str]]]:
    """The file read directly, independent of gluebench's reader: header and rows (CRLF stripped)."""
    lines = (glue_dir / "diagnostic" / "diagnostic-full.tsv").read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_coarse_and_fine_counts_match_a_direct_count_of_the_file(glue_dir: Path) -> None:
    header, rows = raw_columns(glue_dir)
    examples = load_diagnostic(glue_dir)
    assert len(examples) == len(rows) == 1104
    for category in COARSE_CATEGORIES:
        column = header.index(category)
        assert sum(1 for e in examples if category in coarse_categories(e)) == sum(1 for r in rows if r[column])
        direct = Counter(tag for r in rows for tag in r[column].split(";") if tag)
        parsed = Counter(tag for e in examples for tag in fine_tags(e, category))
        assert parsed == direct
    # the GLUE paper's Table 5 sizes of the coarse categories
    assert {c: sum(1 for e in examples if c in coarse_categories(e)) for c in COARSE_CATEGORIES} == {
        "Lexical Semantics": 368, "Predicate-Argument Structure": 424, "Logic": 364, "Knowledge": 284}


def test_breakdown_counts_and_r3_equal_sklearn_on_each_slice(glue_dir: Path) -> None:
    examples = load_diagnostic(glue_dir)
    rng = random.Random(7)
    predictions = [str(e.label) if rng.random() < 0.6 else rng.choice(NLI3) for e in examples]
    slices = {(s.group, s.name): s for s in breakdown(examples, predictions)}
    gold = [str(e.label) for e in examples]
    overall = slices[("all", "all")]
    assert overall.count == 1104
    assert overall.r3 == pytest.approx(100 * matthews_corrcoef(gold, predictions))
    logic = [i for i, e in enumerate(examples) if e.extras["Logic"]]
    assert slices[("coarse", "Logic")].count == len(logic)
    assert slices[("coarse", "Logic")].r3 == pytest.approx(
        100 * matthews_corrcoef([gold[i] for i in logic], [predictions[i] for i in logic]))
    negation = [i for i, e in enumerate(examples) if "Negation" in e.extras["Logic"].split(";")]
    assert slices[("fine", "Logic / Negation")].count == len(negation) == 82
    assert slices[("fine", "Logic / Negation")].r3 == pytest.approx(
        100 * matthews_corrcoef([gold[i] for i in negation], [predictions[i] for i in negation]))
    assert sum(s.count for s in slices.values() if s.group == "domain") == 1104


def test_perfect_and_constant_predictions(glue_dir: Path) -> None:
    examples = load_diagnostic(glue_dir)
    gold = [str(e.label) for e in examples]
    perfect = breakdown(examples, gold)
    assert all(s.r3 == pytest.approx(100.0) for s in perfect if s.group in ("all", "coarse"))
    assert r3(["entailment"] * len(gold), gold) == 0.0  # a constant guess carries no correlation


def test_stand_in_scores_the_binary_collapse(glue_dir: Path) -> None:
    examples = load_diagnostic(glue_dir)
    binary_gold = [collapse_to_binary(str(e.label)) for e in examples]
    assert Counter(binary_gold) == {"entailment": 460, "not_entailment": 644}
    overall = breakdown(examples, binary_gold, binary=True)[0]
    assert (overall.name, overall.r3) == ("all", pytest.approx(100.0))
    flipped = ["entailment" if g == "not_entailment" else "not_entailment" for g in binary_gold]
    assert breakdown(examples, flipped, binary=True)[0].r3 == pytest.approx(-100.0)


def test_diagnose_a_real_run_with_an_rte_stand_in(glue_dir: Path, tmp_path: Path) -> None:
    """No MNLI data here: an RTE model trained on a real slice stands in, scored on the binary collapse."""
    import json

    from typer.testing import CliRunner

    from gluebench.artifacts import load_task_model
    from gluebench.cli import app
    from gluebench.config import RunConfig
    from gluebench.runner import run
    from gluebench.training import predict

    run_dir = tmp_path / "run"
    run(RunConfig(model="glove-cbow", tasks=["RTE"], seeds=[1], data_dir=str(glue_dir), output_dir=str(run_dir),
                  epochs=2, max_train_examples=300, progress=False))
    result = CliRunner().invoke(app, ["diagnose", str(run_dir), "--data-dir", str(glue_dir)])
    assert result.exit_code == 0, result.output
    assert "stands in" in result.output
    report = json.loads((run_dir / "analysis" / "diagnostic.json").read_text())
    assert report["predicted_by"] == "RTE" and report["stand_in"] is True
    assert "binary collapse" in report["metric"]
    assert (run_dir / "analysis" / "diagnostic.png").stat().st_size > 10_000

    model, spec = load_task_model(run_dir, "RTE", 1)
    examples = load_diagnostic(glue_dir)
    predictions = predict(model, spec, examples)
    gold = [collapse_to_binary(str(e.label)) for e in examples]
    rows = {(r["group"], r["name"]): r for r in report["slices"]}
    assert rows[("all", "all")]["count"] == 1104
    assert rows[("all", "all")]["r3"] == pytest.approx(100 * matthews_corrcoef(gold, predictions))
    knowledge = [i for i, e in enumerate(examples) if e.extras["Knowledge"]]
    assert rows[("coarse", "Knowledge")]["r3"] == pytest.approx(
        100 * matthews_corrcoef([gold[i] for i in knowledge], [predictions[i] for i in knowledge]))


def test_diagnose_without_an_nli_model_says_so(glue_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gluebench.cli import app

    (tmp_path / "config.yaml").write_text("model: glove-cbow\nseeds: [1]\n")
    result = CliRunner().invoke(app, ["diagnose", str(tmp_path), "--data-dir", str(glue_dir)])
    assert result.exit_code != 0
    assert "no NLI model" in str(result.exception)


def test_a_run_with_mnli_predicts_ax_and_keeps_r3_per_category(glue_dir: Path, samples_dir: Path,
                                                               tmp_path: Path) -> None:
    """MNLI from the real sample slice, AX from the real files: the run scores AX with the MNLI model.

    48 MNLI examples teach the model little (it may predict one class, R3 0), so this checks the wiring: the
    run's R3 values equal sklearn's on the predictions it wrote; R3 per slice itself is checked above.
    """
    import csv
    import json
    import shutil

    from gluebench.config import RunConfig
    from gluebench.runner import run

    data = tmp_path / "glue"
    shutil.copytree(samples_dir / "MNLI", data / "MNLI")
    shutil.copyfile(data / "MNLI" / "dev_matched.tsv", data / "MNLI" / "dev_mismatched.tsv")
    shutil.copytree(glue_dir / "diagnostic", data / "diagnostic")
    run_dir = tmp_path / "run"
    run(RunConfig(model="glove-cbow", tasks=["MNLI"], seeds=[1], data_dir=str(data), output_dir=str(run_dir),
                  epochs=2, progress=False))
    summary = json.loads((run_dir / "run.json").read_text())
    ax = summary["tasks"]["AX"]
    assert ax["predicted_by"] == "MNLI" and set(ax["categories"]) == set(COARSE_CATEGORIES)

    predictions = run_dir / "tasks" / "AX" / "seed-1" / "full_predictions.tsv"
    with predictions.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    examples = load_diagnostic(glue_dir)
    assert len(rows) == len(examples) == 1104
    predicted = [row["prediction"] for row in rows]
    gold = [str(e.label) for e in examples]
    assert ax["mean"]["r3"] == pytest.approx(100 * matthews_corrcoef(gold, predicted))
    logic = [i for i, e in enumerate(examples) if e.extras["Logic"]]
    assert ax["categories"]["Logic"] == pytest.approx(
        100 * matthews_corrcoef([gold[i] for i in logic], [predicted[i] for i in logic]))
