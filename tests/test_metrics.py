"""Official metrics against independent computations, and the GLUE score against published rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gluebench.errors import GluebenchError
from gluebench.metrics import compute_metrics, glue_score
from gluebench.tasks import TASKS


def _mcc_by_hand(pred: list[str], gold: list[str]) -> float:
    """Gorodkin's multiclass Matthews correlation from the confusion matrix, written out."""
    labels = sorted(set(pred) | set(gold))
    c = np.array([[sum(1 for p, g in zip(pred, gold, strict=True) if g == a and p == b) for b in labels]
                  for a in labels], dtype=float)
    t, p, n = c.sum(axis=1), c.sum(axis=0), c.sum()
    correct = np.trace(c)
    num = correct * n - t @ p
    den = math.sqrt(n**2 - p @ p) * math.sqrt(n**2 - t @ t)
    return 0.0 if den == 0 else num / den


def _pearson_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    return float((xc * yc).sum() / math.sqrt((xc**2).sum() * (yc**2).sum()))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort()
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # average ranks of ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_cola_mcc_matches_hand_formula(rng: np.random.Generator) -> None:
    gold = list(rng.choice(["0", "1"], size=500, p=[0.3, 0.7]))
    pred = [g if rng.random() < 0.75 else ("1" if g == "0" else "0") for g in gold]
    assert compute_metrics("CoLA", pred, gold)["mcc"] == pytest.approx(100 * _mcc_by_hand(pred, gold))


def test_ax_r3_is_three_class_matthews(rng: np.random.Generator) -> None:
    labels = list(TASKS["AX"].labels or ())
    gold = list(rng.choice(labels, size=400))
    pred = [g if rng.random() < 0.6 else str(rng.choice(labels)) for g in gold]
    assert compute_metrics("AX", pred, gold)["r3"] == pytest.approx(100 * _mcc_by_hand(pred, gold))


@pytest.mark.parametrize("task", ["MRPC", "QQP"])
def test_f1_and_accuracy_on_positive_class(task: str, rng: np.random.Generator) -> None:
    gold = list(rng.choice(["0", "1"], size=300))
    pred = list(rng.choice(["0", "1"], size=300))
    tp = sum(p == g == "1" for p, g in zip(pred, gold, strict=True))
    fp = sum(p == "1" and g == "0" for p, g in zip(pred, gold, strict=True))
    fn = sum(p == "0" and g == "1" for p, g in zip(pred, gold, strict=True))
    result = compute_metrics(task, pred, gold)
    assert result["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn))
    assert result["accuracy"] == pytest.approx(100 * np.mean([p == g for p, g in zip(pred, gold, strict=True)]))


def test_stsb_pearson_and_spearman(rng: np.random.Generator) -> None:
    gold = np.round(rng.uniform(0, 5, size=200) * 5) / 5  # ties, like the real scores
    pred = np.clip(gold + rng.normal(0, 1, size=200), 0, 5)
    result = compute_metrics("STS-B", list(pred), list(gold))
    assert result["pearson"] == pytest.approx(100 * _pearson_by_hand(pred, gold))
    assert result["spearman"] == pytest.approx(100 * _pearson_by_hand(_ranks(pred), _ranks(gold)))


def test_mnli_metrics_carry_the_split_suffix() -> None:
    gold = ["entailment", "neutral", "contradiction", "neutral"]
    pred = ["entailment", "neutral", "neutral", "neutral"]
    assert compute_metrics("MNLI", pred, gold, "matched") == {"accuracy_matched": 75.0}


def test_length_mismatch_is_a_user_error() -> None:
    with pytest.raises(GluebenchError, match="3 predictions for 2 gold labels"):
        compute_metrics("SST-2", ["0", "1", "1"], ["0", "1"])


BERT_LARGE = {
    "CoLA": {"mcc": 60.5}, "SST-2": {"accuracy": 94.9}, "MRPC": {"f1": 89.3, "accuracy": 85.4},
    "STS-B": {"pearson": 87.6, "spearman": 86.5}, "QQP": {"f1": 72.1, "accuracy": 89.3},
    "MNLI": {"accuracy_matched": 86.7, "accuracy_mismatched": 85.9}, "QNLI": {"accuracy": 92.7},
    "RTE": {"accuracy": 70.1}, "WNLI": {"accuracy": 65.1},
}
HUMAN = {
    "CoLA": {"mcc": 66.4}, "SST-2": {"accuracy": 97.8}, "MRPC": {"f1": 86.3, "accuracy": 80.8},
    "STS-B": {"pearson": 92.7, "spearman": 92.6}, "QQP": {"f1": 59.5, "accuracy": 80.4},
    "MNLI": {"accuracy_matched": 92.0, "accuracy_mismatched": 92.8}, "QNLI": {"accuracy": 91.2},
    "RTE": {"accuracy": 93.6}, "WNLI": {"accuracy": 95.9},
}


@pytest.mark.parametrize(("row", "published"), [(BERT_LARGE, 80.5), (HUMAN, 87.1)])
def test_glue_score_reproduces_leaderboard(row: dict[str, dict[str, float]], published: float) -> None:
    score = glue_score(row)
    assert not score.is_partial
    assert score.rounded == published
    assert score.label == f"{published:.1f}"


def test_ax_does_not_count_and_partial_is_labeled() -> None:
    partial = {k: BERT_LARGE[k] for k in ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI")} | {"AX": {"r3": 40.0}}
    score = glue_score(partial)
    assert score.is_partial
    assert set(score.missing) == {"QQP", "MNLI", "QNLI"}
    assert score.label.endswith("(partial, 6/9 tasks)")
    assert "AX" not in score.task_scores


def test_task_with_missing_metric_is_rejected() -> None:
    with pytest.raises(GluebenchError, match="MRPC: results lack metric"):
        glue_score({"MRPC": {"f1": 80.0}})
