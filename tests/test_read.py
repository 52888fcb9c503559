"""The readers on every real file: official row counts, label sets, test indices, and the files' quirks."""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gluebench.data.read import read_split
from gluebench.tasks import TASKS, SplitSpec, TaskSpec

OFFICIAL_SPLITS = [
    (task, split) for task in TASKS.values() for split in task.splits
    if (task.name, split.name) not in {("QNLI", "train"), *((n, s.name) for n in ("MNLI", "QQP")
                                                              for s in TASKS[n].splits)}
]
SAMPLE_SPLITS = [("MNLI", "train"), ("MNLI", "dev_matched"), ("QQP", "train"), ("QQP", "dev"),
                 ("QNLI", "train"), ("QNLI", "dev")]


def assert_labels_valid(task: TaskSpec, split: SplitSpec, examples: list) -> None:
    if not split.labeled:
        assert all(e.label is None for e in examples)
    elif task.labels is None:
        low, high = task.label_range or (0.0, 5.0)
        assert all(isinstance(e.label, float) and low <= e.label <= high for e in examples)
    else:
        assert {e.label for e in examples} == set(task.labels)  # every label occurs, and nothing else
    assert all(e.text_a for e in examples)
    assert all((e.text_b is not None) == (split.text_b is not None) for e in examples)


@pytest.mark.parametrize(("task", "split"), OFFICIAL_SPLITS, ids=lambda v: getattr(v, "name", str(v)))
def test_official_split_reads_with_official_count(task: TaskSpec, split: SplitSpec, glue_dir: Path) -> None:
    examples = read_split(task, split.name, glue_dir)
    assert len(examples) == split.rows
    assert_labels_valid(task, split, examples)
    indices = [e.index for e in examples]
    if split.labeled:
        assert len(set(indices)) == len(indices)
    else:
        assert indices == list(range(split.rows))  # the test files' own index column, 0..n-1
    assert not any(e.text_a.endswith("\r") or (e.text_b or "").endswith("\r") for e in examples)


@pytest.mark.parametrize(("task_name", "split_name"), SAMPLE_SPLITS)
def test_samples_read_with_the_registry_column_layout(task_name: str, split_name: str, samples_dir: Path) -> None:
    task, split = TASKS[task_name], TASKS[task_name].split(split_name)
    examples = read_split(task, split_name, samples_dir)
    lines = (samples_dir / split.path).read_text(encoding="utf-8").splitlines()
    assert len(examples) == len(lines) - 1
    assert_labels_valid(task, split, examples)
    if split_name == "train":  # 16 examples per class (README of glue_samples)
        assert Counter(e.label for e in examples) == dict.fromkeys(task.labels or (), 16)
    first = lines[1].split("\t")
    assert (examples[0].index, examples[0].text_a, examples[0].text_b) == (
        int(first[split.index]), first[split.text_a].strip(), first[split.text_b].strip()
    )


def test_mnli_gold_label_found_by_header_in_the_16_column_dev_layout(samples_dir: Path, tmp_path: Path) -> None:
    """Official MNLI dev rows carry five annotator labels before gold_label (16 fields; the samples have 12)."""
    spec = TASKS["MNLI"].split("dev_matched")
    lines = (samples_dir / spec.path).read_text(encoding="utf-8").splitlines()
    gold = [line.split("\t")[-1] for line in lines[1:]]
    other = {"entailment": "neutral", "neutral": "contradiction", "contradiction": "entailment"}
    widened = ["\t".join([*lines[0].split("\t")[:-1], "label2", "label3", "label4", "label5", "gold_label"])]
    for line, label in zip(lines[1:], gold, strict=True):
        fields = line.split("\t")
        widened.append("\t".join([*fields[:-1], *[other[label]] * 4, label]))
    (tmp_path / "MNLI").mkdir()
    (tmp_path / spec.path).write_text("\n".join(widened) + "\n", encoding="utf-8")
    assert [e.label for e in read_split(TASKS["MNLI"], "dev_matched", tmp_path)] == gold


def test_cola_has_no_header_and_dev_no_final_newline(glue_dir: Path) -> None:
    train = read_split(TASKS["CoLA"], "train", glue_dir)
    assert train[0].text_a == "Our friends won't buy this analysis, let alone the next one we propose."
    assert train[0].label == "1" and train[0].index == 0
    dev_bytes = (glue_dir / "CoLA/dev.tsv").read_bytes()
    assert not dev_bytes.endswith(b"\n")
    assert read_split(TASKS["CoLA"], "dev", glue_dir)[-1].text_a == dev_bytes.decode().rsplit("\n", 1)[1].split("\t")[3]


def test_mrpc_bom_header_is_skipped(glue_dir: Path) -> None:
    assert (glue_dir / "MRPC/train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality")
    first = read_split(TASKS["MRPC"], "train", glue_dir)[0]
    assert first.label == "1" and first.text_a.startswith("Amrozi accused his brother")
    assert first.text_b.startswith("Referring to him as only")


def test_diagnostic_files_crlf_and_categories(glue_dir: Path) -> None:
    assert (glue_dir / "diagnostic/diagnostic-full.tsv").read_bytes().count(b"\r\n") == 1105
    full = read_split(TASKS["AX"], "full", glue_dir)
    assert all(set(e.extras) == set(TASKS["AX"].extra_columns) for e in full)
    with (glue_dir / "diagnostic/diagnostic-full.tsv").open(newline="", encoding="utf-8") as handle:
        independent = [row[7] for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    assert [e.label for e in full] == independent
    assert not any(value.endswith("\r") for e in full for value in e.extras.values())
    unlabeled = read_split(TASKS["AX"], "test", glue_dir)  # no final newline
    assert [e.text_a for e in unlabeled] == [e.text_a for e in full]  # same pairs, in the same order


def test_stsb_scores_are_floats(glue_dir: Path) -> None:
    dev = read_split(TASKS["STS-B"], "dev", glue_dir)
    raw = (glue_dir / "STS-B/dev.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert dev[0].label == float(raw[9]) and dev[0].text_a == raw[7]
    assert min(e.label for e in dev) == 0.0 and max(e.label for e in dev) == 5.0


# Property-based: any text without tabs and line breaks survives a write/read round trip, whatever the line
# ends, BOM and final newline of the file.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\x00"), max_size=40)
FRAMING = st.tuples(st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())  # line end, BOM, final newline


def write_split(directory: Path, split: SplitSpec, header: str | None, rows: list[str],
                framing: tuple[str, bool, bool]) -> None:
    end, bom, final_newline = framing
    body = end.join(([header] if header is not None else []) + rows) + (end if final_newline else "")
    path = directory / split.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT, st.sampled_from(TASKS["RTE"].labels or ())), min_size=1, max_size=8),
       FRAMING)
def test_pair_rows_round_trip(rows: list[tuple[str, str, str]], framing: tuple[str, bool, bool]) -> None:
    task = TASKS["RTE"]
    lines = [f"{i}\t{a}\t{b}\t{label}" for i, (a, b, label) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), task.split("dev"), "index\tsentence1\tsentence2\tlabel", lines, framing)
        examples = read_split(task, "dev", Path(tmp))
    assert [(e.index, e.text_a, e.text_b, e.label) for e in examples] == [
        (i, a.strip(), b.strip(), label) for i, (a, b, label) in enumerate(rows)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT.filter(lambda t: t.strip()), st.sampled_from(["0", "1"])), min_size=1, max_size=8),
       FRAMING)
def test_headerless_cola_rows_round_trip(rows: list[tuple[str, str]], framing: tuple[str, bool, bool]) -> None:
    task = TASKS["CoLA"]
    lines = [f"src\t{label}\t\t{text}" for text, label in rows]
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), task.split("train"), None, lines, framing)
        examples = read_split(task, "train", Path(tmp))
    assert [(e.index, e.text_a, e.label) for e in examples] == [
        (i, text.strip(), label) for i, (text, label) in enumerate(rows)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, TEXT, st.floats(0.0, 5.0)), min_size=1, max_size=8), FRAMING)
def test_stsb_scores_round_trip(rows: list[tuple[str, str, float]], framing: tuple[str, bool, bool]) -> None:
    task = TASKS["STS-B"]
    lines = [f"{i}\tgenre\tfile\t2012\t{i}\tnone\tnone\t{a}\t{b}\t{score!r}" for i, (a, b, score) in enumerate(rows)]
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    with tempfile.TemporaryDirectory() as tmp:
        write_split(Path(tmp), task.split("dev"), header, lines, framing)
        examples = read_split(task, "dev", Path(tmp))
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [(a.strip(), b.strip(), s) for a, b, s in rows]
