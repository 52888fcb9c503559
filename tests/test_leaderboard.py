"""Published leaderboard rows: our scoring code reproduces their GLUE scores; runs are ranked, labeled dev."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import gluebench.cli  # noqa: F401  (registers every command)
from gluebench.cli import results as results_cli
from gluebench.cli.app import app
from gluebench.leaderboard import (
    ROUNDING_SLACK,
    Entry,
    board,
    entry_from_run,
    human_baseline,
    published,
    sources,
    standing,
)
from gluebench.metrics import glue_score, task_score
from gluebench.runs import RunPaths, read_json, register_run
from gluebench.tasks import GLUE_TASKS, TASKS
from tests.test_submission import RUN_TASKS, cbow_run  # noqa: F401  (the shared real run)


def _row(name: str) -> Entry:
    return next(e for e in published() if e.name == name)


@pytest.mark.parametrize("entry", published(), ids=lambda e: e.name)
def test_published_score_equals_our_recomputation(entry: Entry) -> None:
    """Every row's GLUE score, recomputed by gluebench.metrics.glue_score from its own per-task numbers.

    Both are rounded to 0.1 in print, so "equal" means: the published score is the rounding of a true score
    that the rounded per-task numbers allow (|difference| <= 0.1). The one row where the paper's own table
    is inconsistent is flagged in the data, and the flag must be earned.
    """
    score = glue_score(entry.results)
    assert not score.missing and score.value is not None
    difference = abs(score.value - entry.published_score)
    if entry.score_discrepancy:
        assert difference > ROUNDING_SLACK
    else:
        assert difference <= ROUNDING_SLACK + 1e-9, f"{entry.name}: recomputed {score.value:.3f}"
        assert entry.matches_published()


def test_most_rows_match_to_the_printed_digit() -> None:
    exact = [e.name for e in published() if round(e.recomputed, 1) == e.published_score]
    assert len(exact) >= len(published()) - 5
    assert {"BERT-large", "BERT-base", "BERT-Medium", "CBoW (GloVe sentence vectors)"} <= set(exact)
    assert [e.name for e in published() if e.score_discrepancy] == ["BiLSTM (single-task)"]


def test_the_rows_the_issue_asks_for_are_there_with_sources() -> None:
    names = {e.name for e in published()}
    wanted = {"Human baseline", "BERT-base", "BERT-large", "BERT-Tiny", "BERT-Mini", "BERT-Small", "BERT-Medium",
              "CBoW (GloVe sentence vectors)"}
    for variant in ("BiLSTM", "BiLSTM+ELMo", "BiLSTM+CoVe", "BiLSTM+Attn"):
        wanted |= {f"{variant} (single-task)", f"{variant} (multi-task)"}
    assert wanted <= names
    for entry in published():
        assert entry.split == "test" and entry.sources and all(key in sources() for key in entry.sources)
        for task in GLUE_TASKS:
            assert set(entry.results[task]) == set(TASKS[task].metric_keys), (entry.name, task)
            assert all(-100 <= v <= 100 for v in entry.results[task].values())
    assert "AX" not in human_baseline().results


def test_bert_large_and_human_rows_are_the_published_numbers() -> None:
    large = _row("BERT-large")
    assert large.results["MRPC"] == {"f1": 89.3, "accuracy": 85.4}
    assert large.results["STS-B"] == {"pearson": 87.6, "spearman": 86.5}
    assert large.results["QQP"] == {"f1": 72.1, "accuracy": 89.3}
    assert large.results["MNLI"] == {"accuracy_matched": 86.7, "accuracy_mismatched": 85.9}
    assert [large.cell(t) for t in ("CoLA", "SST-2", "QNLI", "RTE", "WNLI", "AX")] == [
        "60.5", "94.9", "92.7", "70.1", "65.1", "39.6"]
    assert (large.published_score, round(large.recomputed, 1)) == (80.5, 80.5)
    human = human_baseline()
    assert [human.cell(t) for t in (*GLUE_TASKS, "AX")] == [
        "66.4", "97.8", "86.3/80.8", "92.7/92.6", "59.5/80.4", "92.0/92.8", "91.2", "93.6", "95.9", "—"]
    assert human.published_score == 87.1


def test_leaderboard_json_is_package_data_that_parses() -> None:
    path = Path(__file__).resolve().parents[1] / "src" / "gluebench" / "resources" / "leaderboard.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["rows"]) == len(published()) and set(data["sources"]) == set(sources())


def test_standing_ranks_per_task_and_marks_beating_humans() -> None:
    """A hand-made dev entry with BERT-large's QQP and half of RTE: above human on QQP only, partial 2/9."""
    entry = Entry("mine", "dev", {"QQP": {"f1": 72.1, "accuracy": 89.3}, "RTE": {"accuracy": 50.0}},
                  run_dir=Path("x"))
    where = standing(entry)
    qqp, rte = where.tasks["QQP"], where.tasks["RTE"]
    assert qqp.beats_human and not rte.beats_human
    assert qqp.rank == 1 + sum(1 for e in published() if e.task_score("QQP") > task_score("QQP", entry.results["QQP"]))
    assert rte.rank == 1 + sum(1 for e in published() if e.task_score("RTE") > 50.0)
    assert entry.score_label == f"{glue_score(entry.results).value:.1f} dev, partial 2/9"
    assert where.compared_on == ("QQP", "RTE")
    assert where.human_on_same_tasks == pytest.approx((69.95 + 93.6) / 2)
    mine = entry.mean_over(("QQP", "RTE"))
    assert where.rank == 1 + sum(1 for e in published() if e.mean_over(("QQP", "RTE")) > mine)


def test_real_run_on_the_board_is_dev_and_partial(cbow_run: Path) -> None:  # noqa: F811
    entry = entry_from_run(cbow_run)
    summary = read_json(RunPaths(cbow_run).summary)
    assert entry.split == "dev" and entry.is_partial and entry.tasks_done == RUN_TASKS
    assert entry.results["CoLA"] == summary["tasks"]["CoLA"]["mean"]
    assert entry.score_label.endswith("dev, partial 3/9")
    rows = board([entry])
    assert len(rows) == len(published()) + 1
    placed = [rank for rank, e in rows if e is entry]
    assert placed == [standing(entry).rank]
    mine = entry.mean_over(RUN_TASKS)
    above = [e for _, e in rows[: [e for _, e in rows].index(entry)]]
    assert all(e.mean_over(RUN_TASKS) >= mine for e in above)  # placed among rows on the same three tasks


def test_cli_leaderboard_marks_dev_partial_and_human(
    cbow_run: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(results_cli, "console", Console(width=250))  # the whole board on one screen width
    run_id = register_run({"run_dir": str(cbow_run), "model": "glove-cbow", "tasks": list(RUN_TASKS),
                           "seeds": [1, 2], "score": None, "score_label": "", "date": "now"})
    result = CliRunner().invoke(app, ["leaderboard", run_id])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    assert "published rows are test-set results; your runs are dev-set results" in out
    assert f"glove-cbow ({run_id})" in out and "dev, partial 3/9" in out
    assert "Human baseline" in out and "87.1 test" in out and "BERT-Tiny" in out
    assert "89.3/85.4 ★" in out  # BERT-large's MRPC is above the human baseline's
    assert "overall rank compares the mean over the run's 3/9 tasks (CoLA, STS-B, RTE)" in out
    assert "[wang2019] Wang, Singh, Michael" in out
