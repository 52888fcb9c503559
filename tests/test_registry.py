"""Adding a task is one `register_task` call: a task made of real SST-2 rows goes through run, score and submit.

The extra task renames SST-2's labels to ``negative``/``positive`` and declares ``positive`` as the class F1 is
computed for, so a module that still assumed ``"1"`` (or any other task's layout) would fail here.
"""

from __future__ import annotations

import csv
import dataclasses
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, f1_score

from gluebench.errors import GluebenchError
from gluebench.leaderboard import BOARD_TASKS
from gluebench.runs import RunPaths, read_json
from gluebench.submission import SERVER_FILE_NAMES, validate_submission
from gluebench.tasks import (
    GLUE_TASKS,
    TASKS,
    SplitSpec,
    TaskSpec,
    get_task,
    register_task,
    resolve_tasks,
    unregister_task,
)
from tests.conftest import CliRun

NAME = "SST-lite"
LABELS = {"0": "negative", "1": "positive"}
TRAIN_ROWS, TEST_ROWS = 2000, 400


def _sst2_rows(glue_dir: Path, split: str) -> list[list[str]]:
    lines = (glue_dir / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:]]


def _write(path: Path, header: str, rows: list[str]) -> int:
    path.write_text(header + "\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return len(rows)


def _spec(train: int, dev: int, test: int) -> TaskSpec:
    return TaskSpec(
        name=NAME,
        description="Is the movie-review sentence positive? (real SST-2 rows, labels renamed)",
        domain="movie reviews",
        labels=("negative", "positive"),
        positive_label="positive",
        metrics=("f1", "accuracy"),
        test_files={"test": f"{NAME}.tsv"},
        splits=(
            SplitSpec("train", f"{NAME}/train.tsv", train, text_a=0, label=1, fields=2),
            SplitSpec("dev", f"{NAME}/dev.tsv", dev, text_a=0, label=1, fields=2),
            SplitSpec("test", f"{NAME}/test.tsv", test, text_a=1, index=0, fields=2),
        ),
    )


@pytest.fixture
def extra_task(glue_dir: Path, tmp_path: Path) -> Iterator[tuple[TaskSpec, Path]]:
    """The task registered with its GLUE-style directory; unregistered afterwards, so others see the nine."""
    data = tmp_path / "glue"
    (data / NAME).mkdir(parents=True)
    labeled = {split: [f"{text}\t{LABELS[label]}" for text, label in _sst2_rows(glue_dir, split)]
               for split in ("train", "dev")}
    train = _write(data / NAME / "train.tsv", "sentence\tlabel", labeled["train"][:TRAIN_ROWS])
    dev = _write(data / NAME / "dev.tsv", "sentence\tlabel", labeled["dev"])
    test = _write(data / NAME / "test.tsv", "index\tsentence",
                  [f"{index}\t{text}" for index, text in _sst2_rows(glue_dir, "test")[:TEST_ROWS]])
    spec = register_task(_spec(train, dev, test))
    yield spec, data
    unregister_task(NAME)


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_registered_task_runs_scores_and_submits(extra_task: tuple[TaskSpec, Path], tmp_path: Path,
                                                 cli: CliRun) -> None:
    spec, data = extra_task
    run_dir = tmp_path / "run"
    code, out, err = cli("run", "--model", "glove-cbow", "--tasks", "sst-lite", "--seeds", "1", "--epochs", "4",
                         "--data-dir", str(data), "--output-dir", str(run_dir), "--no-progress")
    assert code == 0, out + err
    paths = RunPaths(run_dir)
    summary = read_json(paths.summary)
    assert list(summary["tasks"]) == [NAME]
    metrics = summary["tasks"][NAME]["mean"]

    dev = _tsv(paths.predictions(NAME, 1, "dev"))
    gold, predicted = [r["gold"] for r in dev], [r["prediction"] for r in dev]
    assert len(dev) == spec.split("dev").rows == 872
    assert set(predicted) <= set(LABELS.values())
    # the registry's positive label is the one F1 is computed for
    assert metrics["f1"] == pytest.approx(100 * f1_score(gold, predicted, pos_label="positive"))
    assert metrics["accuracy"] == pytest.approx(100 * accuracy_score(gold, predicted))
    majority = max(Counter(gold).values()) / len(gold)
    assert metrics["accuracy"] > 100 * majority + 5, metrics  # it learned from the rows, not the prior

    code, out, err = cli("score", str(run_dir))
    assert code == 0, out + err
    assert NAME in out and f"f1 {metrics['f1']:.1f}" in out
    assert f"(partial, 1/{len(GLUE_TASKS)} tasks)" in out and len(GLUE_TASKS) == 10

    archive = tmp_path / "submission.zip"
    code, out, err = cli("submit", str(run_dir), "-o", str(archive), "--fill", "majority", "--data-dir", str(data))
    assert code == 0, out + err
    with zipfile.ZipFile(archive) as zf:
        members = {name: zf.read(name).decode() for name in zf.namelist()}
    assert list(members) == list(SERVER_FILE_NAMES) and list(members)[-1] == f"{NAME}.tsv"
    written = members[f"{NAME}.tsv"]
    assert written == paths.predictions(NAME, 1, "test").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in written.splitlines()[1:]]
    assert [int(index) for index, _ in rows] == list(range(TEST_ROWS))
    assert {label for _, label in rows} <= set(LABELS.values())

    code, out, err = cli("validate-submission", str(archive), "--data-dir", str(data))
    assert code == 0, out + err
    assert validate_submission(archive, data).index_checked[f"{NAME}.tsv"]


def test_registering_and_unregistering_updates_every_view() -> None:
    nine, files, board = tuple(GLUE_TASKS), tuple(SERVER_FILE_NAMES), tuple(BOARD_TASKS)
    spec = register_task(_spec(10, 10, 10))
    try:
        assert get_task("sstlite") is spec and TASKS[NAME] is spec
        assert tuple(GLUE_TASKS) == (*nine, NAME) and tuple(SERVER_FILE_NAMES) == (*files, f"{NAME}.tsv")
        assert BOARD_TASKS[-1] != NAME and NAME in BOARD_TASKS
        assert resolve_tasks("all")[-1] is spec
    finally:
        unregister_task(NAME)
    assert (tuple(GLUE_TASKS), tuple(SERVER_FILE_NAMES), tuple(BOARD_TASKS)) == (nine, files, board)
    with pytest.raises(GluebenchError, match="unknown task 'sst-lite'"):
        get_task("sst-lite")


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "sst_2"}, "its name or an alias is taken by SST-2"),
    ({"name": "all"}, "not 'all'"),
    ({"name": "a,b"}, "a task name is letters"),
    ({"positive_label": "1"}, "positive_label '1' is not one of its labels"),
    ({"positive_label": None}, "the f1 metric needs a positive_label"),
    ({"test_files": {"test": "RTE.tsv"}}, "a server file name is taken by RTE"),
    ({"dev_splits": {"validation": ""}}, "name splits it does not have: validation"),
    ({"labels": None}, "labels .classification. or a label_range .regression."),
    ({"predicted_by": "SNLI"}, "predicted by unregistered task.s. SNLI"),
])
def test_a_task_that_cannot_work_is_refused_in_one_line(change: dict[str, object], message: str) -> None:
    spec = _spec(10, 10, 10)
    with pytest.raises(GluebenchError, match=message) as caught:
        register_task(dataclasses.replace(spec, **change))
    assert "\n" not in str(caught.value)
    assert NAME not in TASKS and len(GLUE_TASKS) == 9


def test_built_in_tasks_stay() -> None:
    with pytest.raises(GluebenchError, match="built-in GLUE task"):
        unregister_task("MNLI")
    with pytest.raises(GluebenchError, match="no registered task"):
        unregister_task(NAME)
