"""Readers for the official GLUE TSV files, quirks included, and for the Hub's parquet copy of them.

The real files are not CSV: quotes inside fields are literal (read with quoting off), CoLA train/dev have
no header, some files end without a final newline, MRPC carries a UTF-8 BOM and diagnostic-full.tsv uses
CRLF line ends. Everything here splits lines on tabs itself, so none of that can mis-parse a row.

The Hub's parquet files (``nyu-mll/glue``) hold class ids, float32 scores and row numbers instead; they are
turned back into the official label strings, scores and indices, so both layouts give the same `Example`s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gluebench.data.locate import split_file
from gluebench.errors import DataFormatError, DataMissingError
from gluebench.tasks import HubSpec, SplitSpec, TaskSpec

Label = str | float


@dataclass(frozen=True)
class Example:
    """One GLUE example: the official index, one or two texts, and the gold label (None on test)."""

    index: int
    text_a: str
    text_b: str | None = None
    label: Label | None = None
    extras: dict[str, str] = field(default_factory=dict)


MAX_LINE_BYTES = 1 << 20  # the longest official row is a few KiB; a megabyte means the file is not a GLUE file


def _short(value: str, limit: int = 40) -> str:
    """A field quoted for an error message, cut so that one bad field cannot flood the terminal."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read() if limit < 0 else handle.readline(limit)
    except FileNotFoundError as exc:
        raise DataMissingError("file not found", path=path) from exc
    except OSError as exc:
        raise DataMissingError(f"cannot read file ({exc.strerror})", path=path) from exc


def iter_rows(path: Path, *, header: bool) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every data row; line numbers are 1-based, as editors show them.

    Tolerated, because official files or ordinary editors do it: a UTF-8 BOM, CRLF line ends, a missing final
    newline, blank lines at the very end. Everything else that cannot be a GLUE row is a `DataFormatError`
    naming the line.
    """
    raw = _read_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\r" in raw and b"\n" not in raw:
        raise DataFormatError("lines end with CR only (old Mac line ends); convert them to LF", path=path)
    lines = raw.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()  # the final newline, where the file has one, and blank lines after the last row
    if not lines:
        raise DataFormatError("file is empty", path=path)
    start = 1 if header else 0
    if len(lines) <= start:
        raise DataFormatError("file has a header but no data rows", path=path)
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > MAX_LINE_BYTES:
            raise DataFormatError(
                f"line is {len(line):,} bytes long (limit {MAX_LINE_BYTES:,}): not a GLUE row", path=path, line=number
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"not valid UTF-8 (byte {exc.start})", path=path, line=number) from exc
        if "\x00" in text:
            raise DataFormatError("contains a NUL byte (a binary file?)", path=path, line=number)
        if not text.strip():
            raise DataFormatError("empty line", path=path, line=number)
        yield number, text.split("\t")


def read_header(path: Path) -> list[str]:
    """The header fields of a file, BOM and CR stripped."""
    first = _read_bytes(path, limit=MAX_LINE_BYTES)
    return first.decode("utf-8-sig", errors="replace").rstrip("\r\n").split("\t")


def _parse_label(task: TaskSpec, value: str, path: Path, line: int) -> Label:
    value = value.strip()
    if task.labels is not None:
        if value not in task.labels:
            raise DataFormatError(
                f"label {_short(value)} is not one of {task.name}'s labels {list(task.labels)}", path=path, line=line
            )
        return value
    try:
        score = float(value)
    except ValueError as exc:
        raise DataFormatError(f"{task.name} score {_short(value)} is not a number", path=path, line=line) from exc
    low, high = task.label_range or (-math.inf, math.inf)
    if not low <= score <= high:
        raise DataFormatError(f"{task.name} score {score} is outside [{low:g}, {high:g}]", path=path, line=line)
    return score


def label_column(spec: SplitSpec, path: Path) -> int | None:
    """The index of the split's label column; a column named by header (MNLI's ``gold_label``) is looked up.

    MNLI rows differ in width between files (train has 12 fields, dev 16: five annotator labels), so the
    gold label is found by its header name; a file without that column stops here, not as wrong labels.
    """
    if not isinstance(spec.label, str):
        return spec.label
    header = [name.strip() for name in read_header(path)]
    if spec.label not in header:
        raise DataFormatError(f"the header has no {spec.label!r} column", path=path, line=1)
    return header.index(spec.label)


def _looks_like_data(task: TaskSpec, spec: SplitSpec, label: int | None, fields: list[str]) -> bool:
    """True when a row that must be the header parses as an example: the header is missing and row 1 would be lost."""
    if spec.index is not None and len(fields) > spec.index:
        try:
            int(fields[spec.index])
            return True
        except ValueError:
            pass
    if label is None or len(fields) <= label:
        return False
    value = fields[label].strip()
    if task.labels is not None:
        return value in task.labels
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_split(task: TaskSpec, split: str | SplitSpec, data_dir: Path) -> list[Example]:
    """Read one split of a task from a GLUE data directory (official TSVs or the Hub's parquet) into examples."""
    spec = task.split(split) if isinstance(split, str) else split
    source = split_file(task, spec, data_dir)
    if source.format == "parquet":
        return read_parquet(task, spec, source.path)
    path = source.path
    if source.note and not path.exists():
        raise DataMissingError(f"file not found: {source.note}", path=path)
    label = label_column(spec, path)
    needed = max(c for c in (spec.text_a, spec.text_b, label, spec.index, 0) if c is not None) + 1
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
        if spec.header and not examples and _looks_like_data(task, spec, label, read_header(path)):
            raise DataFormatError("the header row is missing (line 1 is an example)", path=path, line=1)
        if spec.index is None:
            index = len(examples)
        else:
            try:
                index = int(fields[spec.index])
            except ValueError as exc:
                raise DataFormatError(
                    f"index {_short(fields[spec.index])} is not an integer", path=path, line=number
                ) from exc
            if index in seen:
                raise DataFormatError(f"duplicate index {index}", path=path, line=number)
            seen.add(index)
        examples.append(
            Example(
                index=index,
                text_a=fields[spec.text_a].strip(),
                text_b=None if spec.text_b is None else fields[spec.text_b].strip(),
                label=None if label is None else _parse_label(task, fields[label], path, number),
                extras={name: fields[i].strip() for i, name in enumerate(extras)},
            )
        )
    return examples


# ---- the Hub's parquet copy ----------------------------------------------------------------------------

_KINDS: dict[str, Callable[[pa.DataType], bool]] = {
    "text": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
    "integer": pa.types.is_integer,
    "float": pa.types.is_floating,
}


def _hub_columns(task: TaskSpec, hub: HubSpec) -> dict[str, str]:
    """Column -> kind of value, as every file of the task's Hub config has them."""
    texts = {name: "text" for name in (hub.text_a, hub.text_b) if name is not None}
    return {**texts, "label": "float" if task.is_regression else "integer", "idx": "integer"}


def _metadata_label_names(schema: pa.Schema) -> Any:
    """The class names the file's own Hugging Face metadata gives ``label``, where it carries any (else None)."""
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        return json.loads(raw)["info"]["features"]["label"]["names"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def _check_schema(task: TaskSpec, hub: HubSpec, schema: pa.Schema, path: Path) -> list[str]:
    """The columns to read; a missing column, a wrong type or other class names stop here, naming the file."""
    columns = _hub_columns(task, hub)
    for name, kind in columns.items():
        if name not in schema.names:
            raise DataFormatError(f"no column {name!r}: the Hub's {hub.config} files have {', '.join(columns)} "
                                  f"(this one: {', '.join(schema.names)})", path=path)
        if not _KINDS[kind](schema.field(name).type):
            raise DataFormatError(f"column {name!r} is {schema.field(name).type}, the Hub's {hub.config} has "
                                  f"{'an ' if kind == 'integer' else 'a '}{kind} there", path=path)
    names = _metadata_label_names(schema)
    if task.labels is not None and names is not None and list(names) != list(hub.label_names):
        raise DataFormatError(f"its label names {names} are not the Hub's {list(hub.label_names)} for "
                              f"{task.name}: the class ids would mean other labels", path=path)
    return list(columns)


def _read_table(task: TaskSpec, hub: HubSpec, path: Path) -> pa.Table:
    try:
        with pq.ParquetFile(path) as parquet:
            columns = _check_schema(task, hub, parquet.schema_arrow, path)
            return parquet.read(columns=columns)
    except FileNotFoundError as exc:
        raise DataMissingError("file not found", path=path) from exc
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataFormatError(f"not a readable parquet file ({reason})", path=path) from exc


def _hub_label(task: TaskSpec, spec: SplitSpec, value: Any, row: int, path: Path) -> Label:
    """A Hub class id as the official label string, a Hub score as the official number."""
    if task.labels is None:
        low, high = task.label_range or (-math.inf, math.inf)
        if not low <= value <= high:
            raise DataFormatError(f"row {row}: {task.name} score {value} is outside [{low:g}, {high:g}]", path=path)
        return float(value)
    labels = task.hub_labels
    if not 0 <= value < len(labels):
        unlabeled = " (-1: unlabeled)" if value == -1 else ""
        raise DataFormatError(f"row {row}: label {value}{unlabeled} is not a class id of {task.name} {spec.name} "
                              f"(0..{len(labels) - 1})", path=path)
    return labels[value]


def read_parquet(task: TaskSpec, spec: SplitSpec, path: Path) -> list[Example]:
    """Read one split from the Hub's parquet copy: the same examples as the official TSV of that split."""
    hub = task.hub
    if hub is None:
        raise DataFormatError(f"{task.name} has no Hub copy to read", path=path)
    table = _read_table(task, hub, path)
    if table.num_rows == 0:
        raise DataFormatError("file has no rows", path=path)
    for name in table.column_names:
        if table.column(name).null_count:
            row = table.column(name).to_pylist().index(None)
            raise DataFormatError(f"row {row}: {name} is empty (null)", path=path)
    texts_a = table.column(hub.text_a).to_pylist()
    texts_b = table.column(hub.text_b).to_pylist() if hub.text_b is not None else [None] * table.num_rows
    label = table.column("label")
    if task.is_regression:  # float32 3.8 is 3.7999999523…: its shortest decimal is the official "3.800"
        label = label.cast(pa.string())
    values = [float(v) for v in label.to_pylist()] if task.is_regression else label.to_pylist()
    examples: list[Example] = []
    seen: set[int] = set()
    for row, (index, text_a, text_b, value) in enumerate(
            zip(table.column("idx").to_pylist(), texts_a, texts_b, values, strict=True)):
        if index in seen:
            raise DataFormatError(f"row {row}: duplicate idx {index}", path=path)
        seen.add(index)
        examples.append(Example(
            index=index,
            text_a=text_a.strip(),
            text_b=None if text_b is None else text_b.strip(),
            label=_hub_label(task, spec, value, row, path) if spec.labeled else None,
        ))
    return examples
