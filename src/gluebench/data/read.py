"""Readers for the official GLUE TSV files, quirks included.

The real files are not CSV: quotes inside fields are literal (read with quoting off), CoLA train/dev have
no header, some files end without a final newline, MRPC carries a UTF-8 BOM and diagnostic-full.tsv uses
CRLF line ends. Everything here splits lines on tabs itself, so none of that can mis-parse a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gluebench.errors import DataFormatError, DataMissingError
from gluebench.tasks import SplitSpec, TaskSpec

Label = str | float


@dataclass(frozen=True)
class Example:
    """One GLUE example: the official index, one or two texts, and the gold label (None on test)."""

    index: int
    text_a: str
    text_b: str | None = None
    label: Label | None = None
    extras: dict[str, str] = field(default_factory=dict)


def iter_rows(path: Path, *, header: bool) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every data row; line numbers are 1-based, as editors show them."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataMissingError("file not found", path=path) from exc
    except OSError as exc:
        raise DataMissingError(f"cannot read file ({exc.strerror})", path=path) from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline, where the file has one
    if not lines:
        raise DataFormatError("file is empty", path=path)
    start = 1 if header else 0
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"not valid UTF-8 (byte {exc.start})", path=path, line=number) from exc
        if not text.strip():
            raise DataFormatError("empty line", path=path, line=number)
        yield number, text.split("\t")


def read_header(path: Path) -> list[str]:
    """The header fields of a file, BOM and CR stripped."""
    with path.open("rb") as handle:
        first = handle.readline()
    return first.decode("utf-8-sig", errors="replace").rstrip("\r\n").split("\t")


def _parse_label(task: TaskSpec, value: str, path: Path, line: int) -> Label:
    value = value.strip()
    if task.labels is not None:
        if value not in task.labels:
            raise DataFormatError(
                f"label {value!r} is not one of {task.name}'s labels {list(task.labels)}", path=path, line=line
            )
        return value
    try:
        score = float(value)
    except ValueError as exc:
        raise DataFormatError(f"{task.name} score {value!r} is not a number", path=path, line=line) from exc
    low, high = task.label_range or (-math.inf, math.inf)
    if not low <= score <= high:
        raise DataFormatError(f"{task.name} score {score} is outside [{low:g}, {high:g}]", path=path, line=line)
    return score


def read_split(task: TaskSpec, split: str | SplitSpec, data_dir: Path) -> list[Example]:
    """Read one split of a task from a GLUE data directory into typed examples."""
    spec = task.split(split) if isinstance(split, str) else split
    path = Path(data_dir) / spec.path
    needed = max(c for c in (spec.text_a, spec.text_b, spec.label, spec.index, 0) if c is not None) + 1
    extras = task.extra_columns if spec.labeled and task.extra_columns else ()
    examples: list[Example] = []
    seen: set[int] = set()
    for number, fields in iter_rows(path, header=spec.header):
        if spec.fields is not None and len(fields) != spec.fields:
            raise DataFormatError(
                f"expected {spec.fields} tab-separated fields, found {len(fields)}", path=path, line=number
            )
        if len(fields) < needed:
            raise DataFormatError(
                f"expected at least {needed} tab-separated fields, found {len(fields)}", path=path, line=number
            )
        if spec.index is None:
            index = len(examples)
        else:
            try:
                index = int(fields[spec.index])
            except ValueError as exc:
                raise DataFormatError(
                    f"index {fields[spec.index]!r} is not an integer", path=path, line=number
                ) from exc
            if index in seen:
                raise DataFormatError(f"duplicate index {index}", path=path, line=number)
            seen.add(index)
        label = None if spec.label is None else _parse_label(task, fields[spec.label], path, number)
        examples.append(
            Example(
                index=index,
                text_a=fields[spec.text_a].strip(),
                text_b=None if spec.text_b is None else fields[spec.text_b].strip(),
                label=label,
                extras={name: fields[i].strip() for i, name in enumerate(extras)},
            )
        )
    return examples
