"""`gluebench predict`: a trained task model on new text.

The input is TSV, CSV or JSON Lines (by extension: .tsv, .csv, .jsonl/.json) whose columns are the task's
text fields as the Hub's GLUE copy names them (``sentence``; ``sentence1``/``sentence2``;
``question``/``sentence``; ``premise``/``hypothesis``; ...). The output has one row per input row: the
label and each label's probability, or the score. A missing column, an empty or non-UTF-8 file or a ragged
row is one line naming ``FILE:LINE``, and nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch

from gluebench.artifacts import best_seed, load_task_model
from gluebench.data.read import Example
from gluebench.errors import DataFormatError, GluebenchError
from gluebench.runs import RunPaths, atomic_write_text, read_json
from gluebench.tasks import TaskSpec, get_task
from gluebench.training import make_accelerator, outputs_to_labels, predict_outputs


def text_columns(spec: TaskSpec) -> tuple[str, ...]:
    """The input columns a task's model reads."""
    if spec.hub is not None:
        return (spec.hub.text_a,) if spec.hub.text_b is None else (spec.hub.text_a, spec.hub.text_b)
    return ("sentence1", "sentence2") if spec.is_pair else ("sentence",)


def read_inputs(path: Path, spec: TaskSpec) -> list[Example]:
    """The rows of ``path`` as examples (index = row number); every problem names the file and line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise GluebenchError("input file not found", path=path) from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"not UTF-8 text (byte {exc.start})", path=path, line=line) from exc
    rows = _json_lines(path, text) if path.suffix in (".jsonl", ".json") else _delimited(path, text)
    if not rows:
        raise DataFormatError("no rows to predict", path=path)
    columns = text_columns(spec)
    examples = []
    for index, (line, row) in enumerate(rows):
        missing = [c for c in columns if not isinstance(row.get(c), str)]
        if missing:
            raise DataFormatError(f"no text in column {missing[0]!r} ({spec.name} reads "
                                  f"{', '.join(columns)})", path=path, line=line)
        examples.append(Example(index, row[columns[0]], row[columns[1]] if len(columns) > 1 else None, None))
    return examples


def _delimited(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError("empty file", path=path) from None
    rows = []
    for values in reader:
        if not values:
            continue
        if len(values) != len(header):
            raise DataFormatError(f"{len(values)} fields where the header has {len(header)}", path=path,
                                  line=reader.line_num)
        rows.append((reader.line_num, dict(zip(header, values, strict=True))))
    return rows


def _json_lines(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"not a JSON object ({exc.msg})", path=path, line=line) from exc
        if not isinstance(row, dict):
            raise DataFormatError("not a JSON object", path=path, line=line)
        rows.append((line, row))
    return rows


def predict_file(run_dir: Path, task: str, input_path: Path, output_path: Path, seed: int | None = None,
                 batch_size: int = 128) -> int:
    """Predict every row of ``input_path`` with the run's ``task`` model; write ``output_path``; the row count."""
    spec = get_task(task)
    examples = read_inputs(Path(input_path), spec)
    paths = RunPaths(Path(run_dir))
    info = read_json(paths.summary)["tasks"].get(spec.name)
    if info is None:
        raise GluebenchError(f"the run has no {spec.name} model", path=paths.root)
    model, _ = load_task_model(paths.root, spec.name, seed if seed is not None else best_seed(info, spec.main_metric))
    accelerator = make_accelerator()
    model.module.to(accelerator.device)
    outputs = predict_outputs(model, spec, model.encode(examples), accelerator, batch_size)
    labels = outputs_to_labels(spec, outputs)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    if spec.is_regression:
        writer.writerow(["index", "score"])
        writer.writerows((e.index, f"{score:.4f}") for e, score in zip(examples, labels, strict=True))
    else:
        names = spec.class_names or spec.labels or ()
        probabilities = torch.softmax(outputs.float(), dim=-1).tolist()
        writer.writerow(["index", "label", *(f"p_{name}" for name in names)])
        for example, label, row in zip(examples, labels, probabilities, strict=True):
            writer.writerow([example.index, names[spec.label_index(str(label))], *(f"{p:.4f}" for p in row)])
    atomic_write_text(Path(output_path), buffer.getvalue())
    return len(examples)
