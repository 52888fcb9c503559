"""GLUE server submissions: write the eleven prediction files from a run, and check any submission.

The server (gluebenchmark.com) takes one zip with eleven flat TSV files named as in
`gluebench.tasks.TaskSpec.test_files`, each with the header ``index<TAB>prediction``, the test file's own
index column, one row per official test example, and the label strings of the task (STS-B: a score in
[0, 5]). A mistake costs one of the few submissions the server allows, so `validate_submission` checks all
of that locally and names every problem with its file and line.
"""

from __future__ import annotations

import io
import math
import statistics
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gluebench.data.locate import find_data_dir, has_split
from gluebench.data.read import iter_rows, read_split
from gluebench.errors import GluebenchError
from gluebench.metrics import task_score
from gluebench.runs import RunPaths, atomic_write_bytes, read_json
from gluebench.tasks import TASKS, RegistryView, TaskSpec

HEADER = ("index", "prediction")
FILL_STRATEGIES = ("majority",)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same predictions give the same zip bytes


@dataclass(frozen=True)
class ServerFile:
    """One of the eleven files the GLUE server expects: its name, task and the test split it predicts."""

    name: str
    task: TaskSpec
    split: str

    @property
    def rows(self) -> int:
        return self.task.split(self.split).rows

    def format(self, value: object) -> str:
        """A prediction as the server wants it: the label string, or the STS-B score with 3 decimals."""
        if self.task.is_regression:
            low, high = self.task.label_range or (-math.inf, math.inf)
            return f"{min(max(float(str(value)), low), high):.3f}"
        text = str(value).strip()
        if text not in (self.task.labels or ()):
            raise GluebenchError(f"{self.name}: prediction {text!r} is not one of {list(self.task.labels or ())}")
        return text


SERVER_FILES: RegistryView[ServerFile] = RegistryView(lambda: tuple(
    ServerFile(name, spec, split) for spec in TASKS.values() for split, name in spec.test_files.items()
))
SERVER_FILE_NAMES: RegistryView[str] = RegistryView(lambda: tuple(f.name for f in SERVER_FILES))


# ---- writing a submission ------------------------------------------------------------------------


@dataclass
class Submission:
    """What `write_submission` wrote: where each file came from, and which tasks were filled."""

    path: Path
    sources: dict[str, str] = field(default_factory=dict)  # file name -> "CoLA seed 2 (best dev)" etc.
    filled: dict[str, str] = field(default_factory=dict)  # file name -> how it was filled


def _run_summary(run_dir: Path) -> dict[str, Any]:
    summary_path = RunPaths(run_dir).summary
    if not summary_path.is_file():
        raise GluebenchError("not a finished gluebench run (no run.json); finish or resume it first", path=run_dir)
    summary = read_json(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise GluebenchError("run.json has no 'tasks' table", path=summary_path)
    return summary


def best_dev_seed(task: TaskSpec, info: dict[str, Any]) -> int:
    """The seed whose dev results score best on the task (the usual pick for a test submission)."""
    seeds: list[int] = info["seeds"]
    if task.in_glue_score:
        scores = [task_score(task, metrics) for metrics in info["per_seed"]]
        return seeds[max(range(len(seeds)), key=lambda i: scores[i])]
    return seeds[0]


def _chosen_seeds(summary: dict[str, Any], seed: int | None) -> dict[str, int]:
    """task -> the seed whose test predictions go into the submission."""
    chosen: dict[str, int] = {}
    for name, info in summary["tasks"].items():
        if name not in TASKS:
            continue
        if seed is not None:
            if seed not in info["seeds"]:
                raise GluebenchError(f"--seed {seed}: the run trained {name} with seeds {info['seeds']} only")
            chosen[name] = seed
        else:
            chosen[name] = best_dev_seed(TASKS[name], info)
    for name, spec in TASKS.items():  # AX is predicted by the MNLI model: follow that model's seed
        if spec.predicted_by and name in chosen and spec.predicted_by in chosen:
            chosen[name] = chosen[spec.predicted_by]
    return chosen


def _read_predictions(server_file: ServerFile, path: Path) -> list[tuple[int, str]]:
    rows = []
    for number, fields in iter_rows(path, header=True):
        try:
            index = int(fields[0])
        except ValueError as exc:
            raise GluebenchError(f"index {fields[0]!r} is not an integer", path=path, line=number) from exc
        if len(fields) < 2:
            raise GluebenchError("expected index and prediction columns", path=path, line=number)
        rows.append((index, server_file.format(fields[1])))
    if len(rows) != server_file.rows:
        raise GluebenchError(
            f"{len(rows)} test predictions, but the official {server_file.task.name} {server_file.split} file has "
            f"{server_file.rows} rows (was the run made on a partial test file?)", path=path)
    return rows


def _test_index(server_file: ServerFile, data_dir: Path | None) -> list[int]:
    """The official test index: from the test file when present, else 0..n-1 as every official file numbers it."""
    if data_dir is not None and has_split(server_file.task, server_file.split, data_dir):
        return [e.index for e in read_split(server_file.task, server_file.split, data_dir)]
    return list(range(server_file.rows))


def majority_prediction(task: TaskSpec, data_dir: Path | None) -> tuple[str, str]:
    """The constant prediction for a task without a model, and a sentence saying where it came from.

    Majority class of the task's training set (STS-B: its mean score); AX uses the training set of the task
    that predicts it (MNLI). Without training data: the registry's first label (STS-B: the middle of [0, 5]).
    """
    source = TASKS[task.predicted_by] if task.predicted_by else task
    if data_dir is not None and source.has_train and has_split(source, "train", data_dir):
        gold = [e.label for e in read_split(source, "train", data_dir)]
        if task.is_regression:
            mean = statistics.fmean(float(str(g)) for g in gold)
            return f"{mean:.3f}", f"mean score of {source.name} train ({len(gold):,} examples)"
        counts = Counter(str(g) for g in gold)
        label = max(task.labels or (), key=lambda lab: counts[lab])  # ties: the registry's order
        return label, f"majority class {label!r} of {source.name} train ({counts[label]:,}/{len(gold):,})"
    if task.label_range is not None:
        low, high = task.label_range
        return f"{(low + high) / 2:.3f}", f"middle of the score range ({source.name} train not found)"
    label = (task.labels or ("",))[0]
    return label, f"first label {label!r} ({source.name} train not found)"


def _resolve_data_dir(data_dir: Path | str | None, summary: dict[str, Any]) -> Path | None:
    """The GLUE directory for test indices and majority classes: the option, the run's own, or the usual places."""
    if data_dir is not None:
        return find_data_dir(data_dir)[0]
    configured = (summary.get("config") or {}).get("data_dir")
    if configured and Path(configured).is_dir():
        return Path(configured)
    return find_data_dir(None)[0]


def submission_files(
    run_dir: Path, *, fill: str | None = None, seed: int | None = None, data_dir: Path | str | None = None
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The eleven files' text from a run: ``(contents, sources, filled)``, keyed by server file name."""
    if fill is not None and fill not in FILL_STRATEGIES:
        raise GluebenchError(f"--fill {fill!r}: choose from {', '.join(FILL_STRATEGIES)}")
    run_dir = Path(run_dir)
    summary = _run_summary(run_dir)
    paths = RunPaths(run_dir)
    chosen = _chosen_seeds(summary, seed)
    contents: dict[str, str] = {}
    sources: dict[str, str] = {}
    filled: dict[str, str] = {}
    missing: list[str] = []
    directory: Path | None = None
    for server_file in SERVER_FILES:
        task = server_file.task.name
        rows: Sequence[tuple[int, str]] | None = None
        if task in chosen:
            predictions = paths.predictions(task, chosen[task], server_file.split)
            if predictions.is_file():
                rows = _read_predictions(server_file, predictions)
                how = "best dev seed" if seed is None else "--seed"
                sources[server_file.name] = f"{task} seed {chosen[task]} ({how})"
        if rows is None:
            if fill is None:
                missing.append(server_file.name)
                continue
            directory = directory or _resolve_data_dir(data_dir, summary)
            value, why = majority_prediction(server_file.task, directory)
            rows = [(index, value) for index in _test_index(server_file, directory)]
            filled[server_file.name] = why
            sources[server_file.name] = f"filled: {why}"
        body = "".join(f"{index}\t{prediction}\n" for index, prediction in rows)
        contents[server_file.name] = "\t".join(HEADER) + "\n" + body
    if missing:
        raise GluebenchError(
            f"{run_dir}: no test predictions for {', '.join(missing)} (task not trained in this run, or its test "
            "file was missing); pass --fill majority to fill them with the majority class")
    return contents, sources, filled


def write_submission(
    run_dir: Path, output: Path, *, fill: str | None = None, seed: int | None = None,
    data_dir: Path | str | None = None,
) -> Submission:
    """Write the run's test predictions as one flat zip for the GLUE server (atomically)."""
    contents, sources, filled = submission_files(run_dir, fill=fill, seed=seed, data_dir=data_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in SERVER_FILE_NAMES:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, contents[name])
    atomic_write_bytes(Path(output), buffer.getvalue())
    return Submission(Path(output), sources, filled)


# ---- validating any submission -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing the server would reject or mis-score, located by file and (1-based) line."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line is not None else f"{self.file}: {self.message}"


@dataclass
class Validation:
    """The outcome of `validate_submission`: every problem, and which files were checked against the index."""

    source: Path
    problems: list[Problem] = field(default_factory=list)
    index_checked: dict[str, bool] = field(default_factory=dict)  # file -> compared with the official test index

    @property
    def ok(self) -> bool:
        return not self.problems


def _read_members(path: Path) -> tuple[dict[str, bytes], list[Problem]]:
    """File name -> bytes of a zip or a directory, with problems about the container itself."""
    problems: list[Problem] = []
    members: dict[str, bytes] = {}
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                members[entry.name] = entry.read_bytes()
        return members, problems
    if not path.is_file():
        raise GluebenchError("no such submission zip or directory", path=path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                base = info.filename.rsplit("/", 1)[-1]
                if info.filename.startswith("__MACOSX/") or base.startswith("."):
                    problems.append(Problem(info.filename, None, "unexpected file in the zip (remove it)"))
                    continue
                if "/" in info.filename:
                    problems.append(Problem(info.filename, None,
                                            "inside a folder; the server wants the eleven files flat at the top"))
                if base in members:
                    problems.append(Problem(base, None, "appears twice in the zip"))
                members[base] = archive.read(info)
    except zipfile.BadZipFile as exc:
        raise GluebenchError(f"not a valid zip file ({exc})", path=path) from exc
    return members, problems


def _check_value(server_file: ServerFile, value: str) -> str | None:
    """Why a prediction string is not what the server accepts, or None when it is fine."""
    task = server_file.task
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            return f"{task.name} prediction {value!r} is not a number"
        low, high = task.label_range or (-math.inf, math.inf)
        if not math.isfinite(score) or not low <= score <= high:
            return f"{task.name} prediction {value} is outside [{low:g}, {high:g}]"
        return None
    if value not in (task.labels or ()):
        return f"label {value!r} is not one of {' '.join(task.labels or ())} (the strings the server expects)"
    return None


def check_file(server_file: ServerFile, data: bytes, official_index: Iterable[int] | None = None) -> list[Problem]:
    """Every problem of one prediction file: header, fields, labels, duplicates, row count, index set."""
    name = server_file.name
    problems: list[Problem] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [Problem(name, None, f"not valid UTF-8 (byte {exc.start})")]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return [Problem(name, None, f"file is empty; expected a header and {server_file.rows} rows")]
    header_line = lines[0].rstrip("\r")
    first = header_line.split("\t")
    start = 1
    if first != list(HEADER):
        if len(first) == 2 and first[0].strip().lstrip("-").isdigit():
            problems.append(Problem(name, 1, "missing header line 'index<TAB>prediction'"))
            start = 0
        else:
            problems.append(Problem(name, 1, f"header is {header_line!r}, expected 'index<TAB>prediction'"))
    seen: dict[int, int] = {}
    rows = 0
    for number, raw in enumerate(lines[start:], start=start + 1):
        line = raw.rstrip("\r")
        if not line.strip():
            problems.append(Problem(name, number, "empty line"))
            continue
        rows += 1
        fields = line.split("\t")
        if len(fields) != 2:
            problems.append(Problem(name, number, f"expected 2 tab-separated fields, found {len(fields)}"))
            continue
        index_text, value = fields
        try:
            index = int(index_text)
        except ValueError:
            problems.append(Problem(name, number, f"index {index_text!r} is not an integer"))
        else:
            if index in seen:
                problems.append(Problem(name, number, f"duplicate index {index} (first on line {seen[index]})"))
            else:
                seen[index] = number
        why = _check_value(server_file, value)
        if why:
            problems.append(Problem(name, number, why))
    if rows != server_file.rows:
        problems.append(Problem(name, None, f"{rows} prediction rows, the official test set has {server_file.rows}"))
    if official_index is not None:
        official = set(official_index)
        for index, number in seen.items():
            if index not in official:
                problems.append(Problem(name, number, f"index {index} is not in the official test file"))
        absent = sorted(official - seen.keys())
        if absent:
            shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
            problems.append(Problem(name, None, f"{len(absent)} official test indices have no prediction: {shown}"))
    return problems


def validate_submission(path: Path | str, data_dir: Path | str | None = None) -> Validation:
    """Check a submission zip or directory against the server's rules; never raises for a bad file's content.

    The index column is compared with the official test files when they are found (``data_dir``, else the
    usual places); otherwise only integers and duplicates are checked, and `Validation.index_checked` says so.
    """
    path = Path(path)
    members, problems = _read_members(path)
    directory, _ = find_data_dir(data_dir)
    result = Validation(path, problems)
    expected = {f.name: f for f in SERVER_FILES}
    for name in members:
        if name not in expected:
            result.problems.append(Problem(name, None, f"unexpected file; the server wants exactly: "
                                                       f"{', '.join(SERVER_FILE_NAMES)}"))
    for server_file in SERVER_FILES:
        if server_file.name not in members:
            result.problems.append(Problem(server_file.name, None, "missing file"))
            continue
        official = None
        if directory is not None and has_split(server_file.task, server_file.split, directory):
            official = [e.index for e in read_split(server_file.task, server_file.split, directory)]
        result.index_checked[server_file.name] = official is not None
        result.problems.extend(check_file(server_file, members[server_file.name], official))
    return result
