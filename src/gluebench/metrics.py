"""Official GLUE metrics and the GLUE score: pure functions, no I/O.

Every metric is reported x100, as the leaderboard shows it. The GLUE score is the leaderboard's: the mean
over the nine tasks of each task's own mean over its metrics (so MRPC counts as the mean of F1 and accuracy,
MNLI once as the mean of matched and mismatched accuracy); WNLI counts, AX does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from gluebench.data.read import Example
from gluebench.errors import GluebenchError
from gluebench.tasks import GLUE_TASKS, DiagnosticSpec, TaskSpec, diagnostic_tasks, get_task

MetricFn = Callable[[np.ndarray, np.ndarray, TaskSpec], float]


def _mcc(pred: np.ndarray, gold: np.ndarray, task: TaskSpec) -> float:
    return float(matthews_corrcoef(gold, pred))


def _accuracy(pred: np.ndarray, gold: np.ndarray, task: TaskSpec) -> float:
    return float(accuracy_score(gold, pred))


def _f1(pred: np.ndarray, gold: np.ndarray, task: TaskSpec) -> float:
    """F1 of the task's positive class (MRPC: paraphrase, QQP: duplicate), as the leaderboard reports it."""
    return float(f1_score(gold, pred, pos_label=task.positive_label, average="binary", zero_division=0.0))


def _constant_safe(stat: Callable[..., object], pred: np.ndarray, gold: np.ndarray) -> float:
    if np.ptp(pred) == 0 or np.ptp(gold) == 0:
        return 0.0  # correlation with a constant is undefined; count it as no correlation
    return float(stat(pred, gold)[0])  # type: ignore[index]


def _pearson(pred: np.ndarray, gold: np.ndarray, task: TaskSpec) -> float:
    return _constant_safe(pearsonr, pred.astype(float), gold.astype(float))


def _spearman(pred: np.ndarray, gold: np.ndarray, task: TaskSpec) -> float:
    return _constant_safe(spearmanr, pred.astype(float), gold.astype(float))


METRICS: dict[str, MetricFn] = {
    "mcc": _mcc,
    "r3": _mcc,  # AX: Matthews correlation over the three NLI classes (R3 in the GLUE paper)
    "accuracy": _accuracy,
    "f1": _f1,
    "pearson": _pearson,
    "spearman": _spearman,
}


def compute_metrics(
    task: TaskSpec | str, predictions: Sequence[object], gold: Sequence[object], suffix: str = ""
) -> dict[str, float]:
    """The task's official metrics (x100) of predictions against gold labels (label strings or scores)."""
    spec = get_task(task) if isinstance(task, str) else task
    if len(predictions) != len(gold):
        raise GluebenchError(f"{spec.name}: {len(predictions)} predictions for {len(gold)} gold labels")
    if len(gold) == 0:
        raise GluebenchError(f"{spec.name}: no examples to score")
    kind: Callable[[object], float | str] = (lambda v: float(str(v))) if spec.is_regression else str
    pred = np.asarray([kind(p) for p in predictions])
    ref = np.asarray([kind(g) for g in gold])
    return {
        (f"{name}_{suffix}" if suffix else name): 100.0 * METRICS[name](pred, ref, spec) for name in spec.metrics
    }


@dataclass(frozen=True)
class GlueScore:
    """The GLUE score of a set of per-task results; partial when some of the nine tasks are missing."""

    value: float | None
    task_scores: dict[str, float]
    missing: tuple[str, ...]

    @property
    def is_partial(self) -> bool:
        return bool(self.missing)

    @property
    def rounded(self) -> float | None:
        """One decimal, half up, as the leaderboard shows it (87.05 -> 87.1, whatever float error says)."""
        if self.value is None:
            return None
        return float(Decimal(f"{self.value:.6f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))

    @property
    def label(self) -> str:
        """How to show the score: never present a partial mean as a GLUE score."""
        if self.value is None:
            return f"no GLUE score (0/{len(GLUE_TASKS)} tasks)"
        done = len(self.task_scores)
        if self.is_partial:
            return f"{self.rounded:.1f} (partial, {done}/{len(GLUE_TASKS)} tasks)"
        return f"{self.rounded:.1f}"


def task_score(task: TaskSpec | str, metrics: Mapping[str, float]) -> float:
    """A task's contribution to the GLUE score: the mean of its official metrics."""
    spec = get_task(task) if isinstance(task, str) else task
    missing = [key for key in spec.metric_keys if key not in metrics]
    if missing:
        raise GluebenchError(f"{spec.name}: results lack metric(s) {', '.join(missing)}")
    return float(np.mean([float(metrics[key]) for key in spec.metric_keys]))


def glue_score(results: Mapping[str, Mapping[str, float]]) -> GlueScore:
    """The leaderboard's GLUE score from ``{task: {metric: value}}`` (values x100)."""
    scores: dict[str, float] = {}
    for name, metrics in results.items():
        spec = get_task(name)
        if spec.in_glue_score:
            scores[spec.name] = task_score(spec, metrics)
    missing = tuple(t for t in GLUE_TASKS if t not in scores)
    value = float(np.mean(list(scores.values()))) if scores else None
    return GlueScore(value=value, task_scores=scores, missing=missing)


# ---- the diagnostic set: R3 per linguistic category ---------------------------------------------------


NOT_ENTAILMENT = "not_entailment"


def diagnostic_task(task: TaskSpec | None = None) -> tuple[TaskSpec, DiagnosticSpec]:
    """``task`` (default: the registry's first diagnostic set) with its diagnostic declaration."""
    task = task or next(iter(diagnostic_tasks()), None)
    if task is None or task.diagnostic is None:
        raise GluebenchError(f"{task.name if task else 'the registry'}: no diagnostic set declared")
    return task, task.diagnostic


@dataclass(frozen=True)
class Slice:
    """One row of an analysis table: which examples, and their R3."""

    group: str  # "all", "coarse", "fine" or "domain"
    name: str  # e.g. "Logic", "Logic / Negation", "Reddit"
    count: int
    r3: float

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "count": self.count, "r3": self.r3}


def fine_tags(example: Example, category: str) -> list[str]:
    """The fine tags of one coarse category on one example (``"Negation;Conditionals"`` -> two tags)."""
    return [tag.strip() for tag in example.extras.get(category, "").split(";") if tag.strip()]


def coarse_categories(example: Example, task: TaskSpec | None = None) -> list[str]:
    """The coarse categories an example is tagged with (possibly none, possibly several)."""
    return [category for category in diagnostic_task(task)[1].categories if fine_tags(example, category)]


def r3(predictions: Sequence[str], gold: Sequence[str]) -> float:
    """Matthews correlation x100 (R3 when the labels are the three NLI classes); 0 where undefined."""
    if len(predictions) != len(gold):
        raise GluebenchError(f"R3: {len(predictions)} predictions for {len(gold)} gold labels")
    if not gold:
        return float("nan")
    return 100.0 * float(matthews_corrcoef(list(gold), list(predictions)))


def collapse_to_binary(label: str) -> str:
    """Three-way NLI label -> the stand-in models' two-way labels."""
    return label if label == "entailment" else NOT_ENTAILMENT


def breakdown(examples: Sequence[Example], predictions: Sequence[str], *, binary: bool = False,
              task: TaskSpec | None = None) -> list[Slice]:
    """R3 overall, per coarse category, per (category, fine tag) and per domain, with counts.

    ``binary``: gold labels are collapsed to entailment / not_entailment first (stand-in models).
    """
    _, diagnostic = diagnostic_task(task)
    gold = [collapse_to_binary(str(e.label)) if binary else str(e.label) for e in examples]
    preds = list(predictions)
    members: dict[tuple[str, str], list[int]] = {}
    for i, example in enumerate(examples):
        members.setdefault(("all", "all"), []).append(i)
        for category in diagnostic.categories:
            tags = fine_tags(example, category)
            if tags:
                members.setdefault(("coarse", category), []).append(i)
            for tag in dict.fromkeys(tags):
                members.setdefault(("fine", f"{category} / {tag}"), []).append(i)
        if diagnostic.domain_column and (domain := example.extras.get(diagnostic.domain_column)):
            members.setdefault(("domain", domain), []).append(i)
    coarse_rank = {c: k for k, c in enumerate(diagnostic.categories)}

    def sort_key(key: tuple[str, str]) -> tuple[int, int, int, str]:
        """All, then each coarse category followed by its fine tags, then the domains."""
        group, name = key
        if group in ("coarse", "fine"):
            return 1, coarse_rank[name.split(" / ")[0]], int(group == "fine"), name
        return (0 if group == "all" else 2), 0, 0, name

    return [
        Slice(group, name, len(idx), r3([preds[i] for i in idx], [gold[i] for i in idx]))
        for (group, name), idx in sorted(members.items(), key=lambda item: sort_key(item[0]))
    ]
