"""The Python API on a model of the user's own (a callable), through metrics, submission and report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

import gluebench
from gluebench.errors import GluebenchError
from gluebench.runs import RunPaths

POSITIVE = {"good", "great", "best", "love", "fun", "beautiful", "funny", "moving", "wonderful", "fine"}
NEGATIVE = {"bad", "worst", "dull", "boring", "fails", "mess", "stupid", "flat", "no", "never"}


def lexicon(texts: list[str]) -> np.ndarray:
    words = [set(text.lower().split()) for text in texts]
    balance = np.array([len(w & POSITIVE) - len(w & NEGATIVE) for w in words], dtype=float)
    return np.stack([-balance, balance + 0.1], axis=1)


def test_a_callable_gets_metrics_test_predictions_a_valid_submission_and_a_report(
        tmp_path: Path, glue_dir: Path) -> None:
    summary = gluebench.evaluate(lexicon, tasks=["SST-2"], data_dir=glue_dir, output_dir=tmp_path / "run")
    dev = gluebench.read_split("SST-2", "dev", glue_dir)
    predicted = ["1" if row[1] > row[0] else "0" for row in lexicon([e.text_a for e in dev])]
    expected = 100 * accuracy_score([e.label for e in dev], predicted)  # computed here, independently
    assert summary.metrics["SST-2"]["accuracy"] == pytest.approx(expected)
    majority = 100 * max(np.mean([e.label == "1" for e in dev]), np.mean([e.label == "0" for e in dev]))
    assert expected > majority + 5  # a real (if simple) model, not a constant
    test_file = RunPaths(tmp_path / "run").predictions("SST-2", 1, "test")
    assert len(test_file.read_text().splitlines()) == 1 + len(gluebench.read_split("SST-2", "test", glue_dir))
    submission, validation = gluebench.submit(summary, tmp_path / "sub.zip", fill="majority")
    assert validation.ok and submission.path.is_file()
    report = gluebench.report(summary, tmp_path / "report.html")
    page = report.html.read_text()
    assert "SST-2" in page and "± 0.0" not in page  # one seed: no spread to show
    row = re.search(r"<tr><td>SST-2</td><td><span class=.metric.*?</tr>", page, flags=re.DOTALL)
    assert row is not None and re.search(r"<td>-\d+\.\d</td></tr>$", row.group(0)), row  # points below human
    assert gluebench.score(summary).task_scores["SST-2"] == pytest.approx(round(expected, 1), abs=0.05)


def test_a_callable_of_the_wrong_shape_is_one_clear_error(tmp_path: Path, glue_dir: Path) -> None:
    with pytest.raises(GluebenchError, match=r"returned shape \(\d+, 3\) for \d+ examples; expected \(\d+, 2\)"):
        gluebench.evaluate(lambda texts: np.zeros((len(texts), 3)), tasks=["SST-2"], data_dir=glue_dir,
                           output_dir=tmp_path / "run")
