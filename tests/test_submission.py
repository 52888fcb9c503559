"""GLUE server submissions: a real glove-cbow run -> zip -> validator, and every corruption is reported.

The session fixture `cbow_run` trains glove-cbow on slices of CoLA, STS-B and RTE (two seeds, two epochs) with
`gluebench.runner.run`; test_leaderboard.py and test_report.py import it. The run directory is written once per
session (under xdist, once for all workers) and reused by every module.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import statistics
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gluebench.cli  # noqa: F401  (registers every command)
from gluebench.cli.app import app
from gluebench.config import RunConfig
from gluebench.data.read import read_split
from gluebench.errors import GluebenchError
from gluebench.runner import run
from gluebench.runs import RunPaths, read_json, register_run
from gluebench.submission import (
    SERVER_FILE_NAMES,
    SERVER_FILES,
    check_file,
    majority_prediction,
    validate_submission,
    write_submission,
)
from gluebench.tasks import TASKS

RUN_TASKS = ("CoLA", "STS-B", "RTE")
RUN_SEEDS = (1, 2)
BY_NAME = {f.name: f for f in SERVER_FILES}


def _train_cbow_run(directory: Path, glue_dir: Path, cache: Path) -> Path:
    """One real run for the whole session; a finished one (another xdist worker's) is reused as it is."""
    if RunPaths(directory).summary.is_file():
        return directory
    shutil.rmtree(directory, ignore_errors=True)  # an interrupted attempt
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLUEBENCH_CACHE", str(cache))  # session fixtures run before the per-test cache is set
        run(RunConfig(model="glove-cbow", tasks=list(RUN_TASKS), seeds=list(RUN_SEEDS), epochs=2,
                      max_train_examples=300, output_dir=str(directory), data_dir=str(glue_dir), progress=False))
    return directory


@pytest.fixture(scope="session")
def cbow_run(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this session's directory, shared by its xdist workers: train once for all
    with open(base / "glove-cbow-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _train_cbow_run(base / "glove-cbow-run", glue_dir, base / "glove-cbow-cache")


@pytest.fixture(scope="session")
def cbow_zip(cbow_run: Path, glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("submission") / "glue_submission.zip"
    write_submission(cbow_run, output, fill="majority", data_dir=glue_dir)
    return output


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _edit_line(data: bytes, line: int, new: str | None) -> bytes:
    """Replace (or with None, delete) the 1-based ``line`` of a file."""
    lines = data.decode().split("\n")
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines).encode()


# ---- the real run end to end -----------------------------------------------------------------------


def test_run_to_submission_passes_the_validator(cbow_run: Path, cbow_zip: Path, glue_dir: Path) -> None:
    members = _members(cbow_zip)
    assert list(members) == list(SERVER_FILE_NAMES)  # eleven files, flat, in registry order
    result = validate_submission(cbow_zip, glue_dir)
    assert result.ok, [str(p) for p in result.problems]
    assert result.index_checked["CoLA.tsv"] and result.index_checked["AX.tsv"]
    assert not result.index_checked["QQP.tsv"]  # QQP test is not among the shared files
    for name, data in members.items():
        lines = data.decode().splitlines()
        assert lines[0] == "index\tprediction"
        assert len(lines) - 1 == BY_NAME[name].rows


def test_trained_tasks_carry_the_best_dev_seeds_test_predictions(cbow_run: Path, cbow_zip: Path) -> None:
    summary = read_json(RunPaths(cbow_run).summary)
    members = _members(cbow_zip)
    for task in ("CoLA", "RTE"):
        per_seed = summary["tasks"][task]["per_seed"]
        key = TASKS[task].main_metric
        best = RUN_SEEDS[max(range(len(RUN_SEEDS)), key=lambda i: per_seed[i][key])]
        written = RunPaths(cbow_run).predictions(task, best, "test").read_text()
        assert members[f"{task}.tsv"].decode() == written  # labels and index exactly as predicted
    rte_labels = {line.split("\t")[1] for line in members["RTE.tsv"].decode().splitlines()[1:]}
    assert rte_labels <= {"entailment", "not_entailment"}
    scores = [line.split("\t")[1] for line in members["STS-B.tsv"].decode().splitlines()[1:]]
    assert all(len(s.split(".")[1]) == 3 and 0.0 <= float(s) <= 5.0 for s in scores)


def test_fill_majority_uses_the_train_majority_and_says_so(cbow_run: Path, glue_dir: Path, tmp_path: Path) -> None:
    result = write_submission(cbow_run, tmp_path / "s.zip", fill="majority", data_dir=glue_dir)
    assert set(result.filled) == {"SST-2.tsv", "MRPC.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv",
                                  "WNLI.tsv", "AX.tsv"}
    members = _members(result.path)
    for task in ("SST-2", "MRPC", "WNLI"):
        counts = Counter(str(e.label) for e in read_split(TASKS[task], "train", glue_dir))
        majority = counts.most_common(1)[0][0]
        values = {line.split("\t")[1] for line in members[f"{task}.tsv"].decode().splitlines()[1:]}
        assert values == {majority}
        assert f"majority class {majority!r} of {task} train" in result.filled[f"{task}.tsv"]
    assert "QNLI train not found" in result.filled["QNLI.tsv"]  # QNLI ships without its train file here
    qqp = members["QQP.tsv"].decode().splitlines()
    assert len(qqp) - 1 == 390965 and qqp[1] == "0\t0" and qqp[-1] == "390964\t0"


def test_missing_tasks_without_fill_is_an_error_naming_them(cbow_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "s.zip"
    with pytest.raises(GluebenchError, match=r"no test predictions for SST-2.tsv, MRPC.tsv, QQP.tsv.*--fill majority"):
        write_submission(cbow_run, target)
    assert not target.exists()  # nothing half-written


def test_seed_option_picks_that_seeds_predictions(cbow_run: Path, glue_dir: Path, tmp_path: Path) -> None:
    result = write_submission(cbow_run, tmp_path / "s.zip", fill="majority", seed=2, data_dir=glue_dir)
    assert _members(result.path)["CoLA.tsv"].decode() == RunPaths(cbow_run).predictions("CoLA", 2, "test").read_text()
    assert result.sources["CoLA.tsv"] == "CoLA seed 2 (--seed)"
    with pytest.raises(GluebenchError, match="--seed 7: the run trained CoLA with seeds"):
        write_submission(cbow_run, tmp_path / "t.zip", fill="majority", seed=7)


def test_cli_submit_by_run_id_then_validate(cbow_run: Path, glue_dir: Path, tmp_path: Path) -> None:
    run_id = register_run({"run_dir": str(cbow_run), "model": "glove-cbow", "tasks": list(RUN_TASKS),
                           "seeds": list(RUN_SEEDS), "score": None, "score_label": "", "date": "now"})
    output = tmp_path / "sub.zip"
    runner = CliRunner()
    result = runner.invoke(app, ["submit", run_id, "-o", str(output), "--fill", "majority",
                                 "--data-dir", str(glue_dir)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "filled without a model (8 files)" in result.output and "passes validate-submission" in result.output
    result = runner.invoke(app, ["validate-submission", str(output), "--data-dir", str(glue_dir)])
    assert result.exit_code == 0 and "valid" in result.output
    bad = _zip(tmp_path / "bad.zip", {k: v for k, v in _members(output).items() if k != "WNLI.tsv"})
    result = runner.invoke(app, ["validate-submission", str(bad), "--data-dir", str(glue_dir)])
    assert result.exit_code == 1
    assert "WNLI.tsv: missing file" in result.output and "invalid: 1 problem(s)" in result.output


# ---- corruptions: each one found, with file and line ---------------------------------------------


CORRUPTIONS = {
    "missing file": ("QNLI.tsv", None, "QNLI.tsv: missing file"),
    "wrong label string": ("RTE.tsv", (5, "3\tentailed"), "RTE.tsv:5: label 'entailed' is not one of"),
    "numeric label for an NLI task": ("MNLI-m.tsv", (2, "0\t0"), "MNLI-m.tsv:2: label '0' is not one of"),
    "wrong row count": ("CoLA.tsv", (10, None), "CoLA.tsv: 1062 prediction rows, the official test set has 1063"),
    "bad header": ("SST-2.tsv", (1, "id\tlabel"), "SST-2.tsv:1: header is 'id\\tlabel'"),
    "missing header": ("WNLI.tsv", (1, None), "WNLI.tsv:1: missing header line"),
    "index mismatch": ("MRPC.tsv", (8, "99999\t1"), "MRPC.tsv:8: index 99999 is not in the official test file"),
    "duplicate index": ("AX.tsv", (4, "1\tneutral"), "AX.tsv:4: duplicate index 1 (first on line 3)"),
    "STS-B not a number": ("STS-B.tsv", (3, "1\tsimilar"), "STS-B.tsv:3: STS-B prediction 'similar' is not a number"),
    "STS-B out of range": ("STS-B.tsv", (6, "4\t5.200"), "STS-B.tsv:6: STS-B prediction 5.200 is outside [0, 5]"),
    "three fields": ("QQP.tsv", (2, "0\t0\t1"), "QQP.tsv:2: expected 2 tab-separated fields, found 3"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_corruption_is_reported(kind: str, cbow_zip: Path, glue_dir: Path, tmp_path: Path) -> None:
    name, edit, expected = CORRUPTIONS[kind]
    members = _members(cbow_zip)
    if edit is None:
        del members[name]
    else:
        members[name] = _edit_line(members[name], *edit)
    result = validate_submission(_zip(tmp_path / "bad.zip", members), glue_dir)
    messages = [str(p) for p in result.problems]
    assert not result.ok
    assert any(m.startswith(expected) for m in messages), messages


def test_index_mismatch_also_reports_the_uncovered_official_index(cbow_zip: Path, glue_dir: Path,
                                                                   tmp_path: Path) -> None:
    members = _members(cbow_zip)
    members["MRPC.tsv"] = _edit_line(members["MRPC.tsv"], 8, "99999\t1")  # line 8 held index 6
    messages = [str(p) for p in validate_submission(_zip(tmp_path / "bad.zip", members), glue_dir).problems]
    assert messages == ["MRPC.tsv:8: index 99999 is not in the official test file",
                        "MRPC.tsv: 1 official test indices have no prediction: 6"]


def test_every_problem_is_listed_not_just_the_first(cbow_zip: Path, glue_dir: Path, tmp_path: Path) -> None:
    members = _members(cbow_zip)
    lines = members["RTE.tsv"].decode().split("\n")
    for number in (2, 50, 3001):
        index = lines[number - 1].split("\t")[0]
        lines[number - 1] = f"{index}\tcontradiction"
    members["RTE.tsv"] = "\n".join(lines).encode()
    del members["AX.tsv"]
    members["notes.txt"] = b"hello"
    problems = validate_submission(_zip(tmp_path / "bad.zip", members), glue_dir).problems
    assert [(p.file, p.line) for p in problems if p.file == "RTE.tsv"] == [("RTE.tsv", 2), ("RTE.tsv", 50),
                                                                           ("RTE.tsv", 3001)]
    assert {str(p).split(":")[0] for p in problems} == {"RTE.tsv", "AX.tsv", "notes.txt"}


def test_directory_and_nested_zip_layouts(cbow_zip: Path, glue_dir: Path, tmp_path: Path) -> None:
    members = _members(cbow_zip)
    directory = tmp_path / "flat"
    directory.mkdir()
    for name, data in members.items():
        (directory / name).write_bytes(data)
    assert validate_submission(directory, glue_dir).ok
    nested = _zip(tmp_path / "nested.zip", {f"glue/{name}": data for name, data in members.items()})
    problems = [str(p) for p in validate_submission(nested, glue_dir).problems]
    assert len(problems) == 11 and all("inside a folder" in p for p in problems)


def test_validator_refuses_what_is_not_a_submission(tmp_path: Path) -> None:
    with pytest.raises(GluebenchError, match="no such submission zip or directory"):
        validate_submission(tmp_path / "absent.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(GluebenchError, match="not a valid zip file"):
        validate_submission(tmp_path / "junk.zip")


def test_check_file_without_official_index_still_checks_duplicates() -> None:
    qqp = BY_NAME["QQP.tsv"]
    rows = "".join(f"{i}\t{i % 2}\n" for i in range(qqp.rows - 1)) + "5\t1\n"
    problems = [str(p) for p in check_file(qqp, ("index\tprediction\n" + rows).encode(), None)]
    assert problems == [f"QQP.tsv:{qqp.rows + 1}: duplicate index 5 (first on line 7)"]


def test_stsb_fill_is_the_train_mean_and_ax_without_data_the_first_label(glue_dir: Path) -> None:
    value, why = majority_prediction(TASKS["STS-B"], glue_dir)
    mean = statistics.fmean(float(str(e.label)) for e in read_split(TASKS["STS-B"], "train", glue_dir))
    assert value == f"{mean:.3f}" and "mean score of STS-B train (5,749 examples)" in why
    value, why = majority_prediction(TASKS["AX"], None)
    assert (value, why) == ("entailment", "first label 'entailment' (MNLI train not found)")


def test_zip_is_deterministic(cbow_run: Path, glue_dir: Path, tmp_path: Path) -> None:
    first = write_submission(cbow_run, tmp_path / "a.zip", fill="majority", data_dir=glue_dir).path.read_bytes()
    second = write_submission(cbow_run, tmp_path / "b.zip", fill="majority", data_dir=glue_dir).path.read_bytes()
    assert first == second and zipfile.ZipFile(io.BytesIO(first)).testzip() is None
