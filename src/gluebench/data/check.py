"""Validate a GLUE data directory file by file: present, row count, field counts, rows readable, checksum.

`gluebench data check` prints the result as a table. A file that is present but wrong is *corrupt* (an
error); a file that is absent is only *missing*, which is an error just for the tasks the user asked for.
A split held as the Hub's parquet is checked by reading it whole (schema, class ids, indices) and counting
its rows; its checksum is "unknown", the registry pins the official TSVs only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gluebench.data.locate import split_file
from gluebench.data.read import iter_rows, label_column, read_split
from gluebench.errors import GluebenchError
from gluebench.tasks import SplitSpec, TaskSpec, resolve_tasks

ChecksumStatus = Literal["ok", "mismatch", "unknown"]
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """The id ``git hash-object`` gives the file: sha1 of ``b"blob <size>\\0"`` + content.

    Some official files are only fingerprinted this way (a public git copy of them), so we verify them so too.
    """
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_status(path: Path, spec: SplitSpec) -> tuple[ChecksumStatus, str]:
    """Compare a file with the digest pinned in the registry; returns the status and a one-line reason."""
    if spec.sha256:
        actual = sha256_file(path)
        if actual == spec.sha256:
            return "ok", ""
        return "mismatch", f"sha256 {actual[:16]}… is not the official {spec.sha256[:16]}…"
    if spec.git_blob:
        actual = git_blob_id(path)
        if actual == spec.git_blob:
            return "ok", ""
        return "mismatch", f"git blob id {actual[:16]}… is not the official {spec.git_blob[:16]}…"
    return "unknown", ""


@dataclass
class FileCheck:
    """What `check_file` found about one official file."""

    task: str
    split: str
    path: Path
    expected_rows: int
    present: bool = False
    rows: int | None = None
    bad_field_rows: int = 0
    first_bad_line: int | None = None
    checksum: ChecksumStatus | None = None
    problems: list[str] = field(default_factory=list)  # one-line messages naming the file (and line)
    note: str = ""  # why a missing file is missing (the Hub's copy has no such split)

    @property
    def status(self) -> Literal["ok", "missing", "corrupt"]:
        if not self.present:
            return "missing"
        return "corrupt" if self.problems else "ok"


def _count_rows(spec: SplitSpec, check: FileCheck) -> None:
    """Count rows and rows with the wrong number of fields; a row the reader cannot split stops the count."""
    rows = 0
    try:
        label = label_column(spec, check.path)
        needed = max(c for c in (spec.text_a, spec.text_b, label, spec.index, 0) if c is not None) + 1
        for number, fields in iter_rows(check.path, header=spec.header):
            rows += 1
            wrong = len(fields) != spec.fields if spec.fields is not None else len(fields) < needed
            if wrong:
                check.bad_field_rows += 1
                if check.first_bad_line is None:
                    check.first_bad_line = number
                    expected = spec.fields if spec.fields is not None else f"at least {needed}"
                    check.problems.append(
                        f"{check.path}:{number}: expected {expected} tab-separated fields, found {len(fields)}"
                    )
    except GluebenchError as exc:
        check.problems.append(str(exc))
    check.rows = rows


def _check_count(spec: SplitSpec, check: FileCheck) -> None:
    if check.rows is not None and not check.problems and check.rows != spec.rows:
        check.problems.append(f"{check.path}: {check.rows:,} rows, the official file has {spec.rows:,}")


def _check_tsv(task: TaskSpec, spec: SplitSpec, data_dir: Path, check: FileCheck) -> None:
    _count_rows(spec, check)
    if not check.problems:
        try:
            read_split(task, spec, data_dir)  # labels, indices, header: everything training would trip over
        except GluebenchError as exc:
            check.problems.append(str(exc))
    _check_count(spec, check)
    check.checksum, reason = checksum_status(check.path, spec)
    if reason:
        check.problems.append(f"{check.path}: {reason}")


def _check_parquet(task: TaskSpec, spec: SplitSpec, data_dir: Path, check: FileCheck) -> None:
    """Read whole (schema, class ids, indices) and counted; "unknown" checksum: no digest of it is pinned."""
    try:
        check.rows = len(read_split(task, spec, data_dir))
    except GluebenchError as exc:
        check.problems.append(str(exc))
    _check_count(spec, check)
    check.checksum = "unknown"


def check_file(task: TaskSpec, spec: SplitSpec, data_dir: Path) -> FileCheck:
    """Check one split file of a task (official TSV or Hub parquet); never raises for a bad file, it reports it."""
    source = split_file(task, spec, data_dir)
    check = FileCheck(task=task.name, split=spec.name, path=source.path, expected_rows=spec.rows)
    if not source.path.exists() and not source.path.is_symlink():
        check.note = source.note
        return check
    check.present = True
    if not source.path.is_file():
        check.problems.append(f"{source.path}: not a regular file")
        return check
    (_check_parquet if source.format == "parquet" else _check_tsv)(task, spec, data_dir, check)
    return check


@dataclass
class CheckReport:
    """Every official file of the checked tasks, and which tasks the user asked for by name."""

    data_dir: Path
    files: list[FileCheck]
    named: frozenset[str]

    @property
    def corrupt(self) -> list[FileCheck]:
        return [f for f in self.files if f.status == "corrupt"]

    @property
    def missing(self) -> list[FileCheck]:
        return [f for f in self.files if f.status == "missing"]

    @property
    def missing_named(self) -> list[FileCheck]:
        """Missing files of tasks the user asked for: those are errors, other missing tasks are just reported."""
        return [f for f in self.missing if f.task in self.named]

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing_named


def check_data(data_dir: Path, tasks: Sequence[str] | str | None = None) -> CheckReport:
    """Check every official file of ``tasks`` (default: all tasks and the diagnostic set) in ``data_dir``."""
    specs = resolve_tasks(tasks, include_ax=True)
    named = frozenset() if tasks is None else frozenset(t.name for t in specs)
    files = [check_file(task, split, data_dir) for task in specs for split in task.splits]
    return CheckReport(data_dir=Path(data_dir), files=files, named=named)
