"""Bad data (issue 7): faults applied to copies of the real files, each caught with a one-line error naming the
file and line (or read correctly where the official files themselves do it), through the library and the CLI."""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gluebench.data.check import check_file
from gluebench.data.read import read_split
from gluebench.errors import GluebenchError
from gluebench.tasks import TASKS
from tests.conftest import CliRun

Mutation = Callable[[Path], None]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def edit_line(number: int, change: Callable[[bytes], bytes]) -> Mutation:
    """Replace line ``number`` (1-based, as in the error messages) with ``change(line)``."""

    def mutate(path: Path) -> None:
        lines = lines_of(path)
        lines[number - 1] = change(lines[number - 1])
        path.write_bytes(b"\n".join(lines))

    return mutate


def set_field(number: int, column: int, value: bytes) -> Mutation:
    def change(line: bytes) -> bytes:
        fields = line.split(b"\t")
        fields[column] = value
        return b"\t".join(fields)

    return edit_line(number, change)


def insert_line(number: int, content: bytes | Callable[[list[bytes]], bytes]) -> Mutation:
    """Insert a line so that it becomes line ``number``."""

    def mutate(path: Path) -> None:
        lines = lines_of(path)
        lines.insert(number - 1, content(lines) if callable(content) else content)
        path.write_bytes(b"\n".join(lines))

    return mutate


def rewrite(change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(path: Path) -> None:
        path.write_bytes(change(path.read_bytes()))

    return mutate


def replace_with(relative: str, source: str = "glue") -> Callable[[Path, Path, Path], None]:
    """Put another real file (of another task) in this file's place."""

    def mutate(path: Path, glue_dir: Path, samples_dir: Path) -> None:
        shutil.copyfile((glue_dir if source == "glue" else samples_dir) / relative, path)

    return mutate


def make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def make_broken_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("gone.tsv"))


def cut_inside_first_multibyte_char(path: Path) -> None:
    data = path.read_bytes()
    cut = next(i for i, byte in enumerate(data) if byte >= 0xC0) + 1  # after the lead byte
    path.write_bytes(data[:cut])


def multibyte_line(path: Path) -> int:
    data = path.read_bytes()
    return data[: next(i for i, byte in enumerate(data) if byte >= 0xC0)].count(b"\n") + 1


@dataclass(frozen=True)
class Fault:
    name: str
    task: str
    split: str
    mutate: Callable[..., None]
    message: str  # regex the message must contain after "PATH:LINE: "
    line: int | Callable[[Path], int] | None  # expected line; None: the message names the file only
    source: str = "glue"


def _cuts(path: Path, count: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - count])


FAULTS = [
    Fault("missing file", "CoLA", "dev", lambda p: p.unlink(), "file not found", None),
    Fault("empty file", "CoLA", "dev", rewrite(lambda _: b""), "file is empty", None),
    Fault("only line breaks", "RTE", "dev", rewrite(lambda _: b"\n\r\n\n"), "file is empty", None),
    Fault("header only", "RTE", "dev", rewrite(lambda d: d.split(b"\n")[0] + b"\n"), "header but no data rows", None),
    Fault("header missing", "RTE", "dev", rewrite(lambda d: d.split(b"\n", 1)[1]), "header row is missing", 1),
    Fault("header repeated in the middle", "RTE", "dev", insert_line(100, lambda ls: ls[0]),
          "index 'index' is not an integer", 100),
    Fault("a field missing on one line", "RTE", "dev", edit_line(10, lambda ln: ln.rsplit(b"\t", 1)[0]),
          "expected 4 tab-separated fields, found 3", 10),
    Fault("an extra field on one line", "SST-2", "dev", edit_line(5, lambda ln: ln + b"\textra"),
          "expected 2 tab-separated fields, found 3", 5),
    Fault("a tab inside a sentence", "STS-B", "dev", set_field(7, 7, b"A man\tis playing"),
          "expected 10 tab-separated fields, found 11", 7),
    Fault("label not in the label set", "RTE", "dev", set_field(3, 3, b"maybe"),
          r"label 'maybe' is not one of RTE's labels \['entailment', 'not_entailment'\]", 3),
    Fault("label in the wrong case", "QNLI", "dev", set_field(12, 3, b"Entailment"), "label 'Entailment'", 12),
    Fault("label of another task", "RTE", "train", set_field(100, 3, b"1"), "label '1' is not one of RTE", 100),
    Fault("label as a word", "SST-2", "dev", set_field(2, 1, b"positive"), "label 'positive'", 2),
    Fault("STS-B score not a number", "STS-B", "dev", set_field(4, 9, b"high"),
          "STS-B score 'high' is not a number", 4),
    Fault("STS-B score with a decimal comma", "STS-B", "train", set_field(8, 9, b"3,8"),
          "score '3,8' is not a number", 8),
    Fault("STS-B score above 5", "STS-B", "train", set_field(6, 9, b"5.5"), r"score 5\.5 is outside \[0, 5\]", 6),
    Fault("STS-B score below 0", "STS-B", "dev", set_field(9, 9, b"-0.2"), r"score -0\.2 is outside \[0, 5\]", 9),
    Fault("STS-B score NaN", "STS-B", "dev", set_field(11, 9, b"nan"), r"score nan is outside", 11),
    Fault("Latin-1 byte", "RTE", "dev", edit_line(20, lambda ln: ln.replace(b"e", b"\xe9", 1)), "not valid UTF-8", 20),
    Fault("UTF-16 file", "CoLA", "test", rewrite(lambda d: d.decode().encode("utf-16")), "NUL byte", 2),
    Fault("NUL byte", "WNLI", "train", edit_line(8, lambda ln: ln.replace(b" ", b" \x00", 1)), "NUL byte", 8),
    Fault("gzip file in place", "CoLA", "train", rewrite(gzip.compress), "not valid UTF-8", 1),
    Fault("truncated inside the last label", "RTE", "dev", lambda p: _cuts(p, 6),
          "label 'not_entai' is not one of RTE's labels", 278),
    Fault("truncated inside a UTF-8 character", "STS-B", "train", cut_inside_first_multibyte_char,
          "not valid UTF-8", multibyte_line),
    Fault("line cut after two fields", "CoLA", "train", edit_line(40, lambda ln: b"\t".join(ln.split(b"\t")[:2])),
          "expected 4 tab-separated fields, found 2", 40),
    Fault("blank line in the middle", "RTE", "train", insert_line(51, b""), "empty line", 51),
    Fault("whitespace line in the middle", "WNLI", "dev", insert_line(30, b"  \t \r"), "empty line", 30),
    Fault("duplicate index in a test file", "RTE", "test", set_field(6, 0, b"3"), "duplicate index 3", 6),
    Fault("non-integer index", "QNLI", "test", set_field(9, 0, b"x7"), "index 'x7' is not an integer", 9),
    Fault("huge line", "RTE", "dev", set_field(5, 1, b"word " * 400_000), r"line is 2,000,\d+ bytes long", 5),
    Fault("CR-only line ends", "WNLI", "dev", rewrite(lambda d: d.replace(b"\n", b"\r")), "CR only", None),
    Fault("directory instead of file", "CoLA", "dev", make_directory, r"cannot read file \(Is a directory\)", None),
    Fault("broken symlink", "WNLI", "test", make_broken_link, "file not found", None),
    Fault("SST-2 dev in CoLA's place", "CoLA", "dev", replace_with("SST-2/dev.tsv"),
          "expected 4 tab-separated fields, found 2", 1),
    Fault("CoLA dev in SST-2's place", "SST-2", "dev", replace_with("CoLA/dev.tsv"),
          "expected 2 tab-separated fields, found 4", 2),
    Fault("WNLI dev in RTE's place", "RTE", "dev", replace_with("WNLI/dev.tsv"), "label '[01]' is not one of RTE", 2),
    Fault("MRPC train in STS-B's place", "STS-B", "train", replace_with("MRPC/train.tsv"),
          "expected 10 tab-separated fields, found 5", 2),
    Fault("AX row without its label", "AX", "full", edit_line(10, lambda ln: ln.rsplit(b"\t", 1)[0]),
          "expected 8 tab-separated fields, found 7", 10),
    Fault("MNLI no-consensus gold label", "MNLI", "train", edit_line(3, lambda ln: ln.rsplit(b"\t", 1)[0] + b"\t-"),
          "label '-' is not one of MNLI's labels", 3, source="samples"),
    Fault("MNLI row cut short", "MNLI", "dev_matched", edit_line(4, lambda ln: b"\t".join(ln.split(b"\t")[:5])),
          "expected at least 12 tab-separated fields, found 5", 4, source="samples"),
    Fault("MNLI row without its gold label", "MNLI", "dev_matched", edit_line(6, lambda ln: ln.rsplit(b"\t", 1)[0]),
          "expected at least 12 tab-separated fields, found 11", 6, source="samples"),
    Fault("MNLI header without gold_label", "MNLI", "train", set_field(1, 11, b"label"),
          "the header has no 'gold_label' column", 1, source="samples"),
    Fault("QQP label 2", "QQP", "train", set_field(4, 5, b"2"), "label '2' is not one of QQP's labels", 4,
          source="samples"),
]


def fault_copy(fault: Fault, tmp_path: Path, glue_dir: Path, samples_dir: Path) -> tuple[Path, Path]:
    """Copy the task's real directory into tmp and apply the fault; returns (data dir, faulty file)."""
    spec = TASKS[fault.task].split(fault.split)
    root = glue_dir if fault.source == "glue" else samples_dir
    task_dir = spec.path.split("/")[0]
    shutil.copytree(root / task_dir, tmp_path / task_dir)
    path = tmp_path / spec.path
    try:
        fault.mutate(path)
    except TypeError:
        fault.mutate(path, glue_dir, samples_dir)
    return tmp_path, path


def expected_prefix(fault: Fault, path: Path) -> str:
    line = fault.line(path) if callable(fault.line) else fault.line
    return f"{path}:{line}: " if line is not None else f"{path}: "




def test_at_least_thirty_distinct_faults() -> None:
    assert len({f.name for f in FAULTS}) == len(FAULTS) >= 30


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_gives_one_line_error_naming_file_and_line(
    fault: Fault, tmp_path: Path, glue_dir: Path, samples_dir: Path,
    cli: CliRun,
) -> None:
    data, path = fault_copy(fault, tmp_path, glue_dir, samples_dir)
    prefix = expected_prefix(fault, path)
    with pytest.raises(GluebenchError) as caught:
        read_split(TASKS[fault.task], fault.split, data)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(prefix), message
    assert re.search(fault.message, message[len(prefix):]), message

    code, _, err = cli("show", fault.task, "--split", fault.split, "--data-dir", str(data))
    assert code == 2
    assert err == f"gluebench: error: {message}\n"

    code, out, err = cli("data", "check", "--data-dir", str(data), "--tasks", fault.task)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gluebench: error: "), err
    if fault.source == "glue":  # (the samples are no official files: the checker flags them all)
        assert str(path) in err or TASKS[fault.task].split(fault.split).path in err, err
    assert "Traceback" not in out + err


# Where the official files (or ordinary editors) do something odd, the reader must read the same examples.
TOLERATED = [
    ("CRLF line ends", "RTE", "dev", rewrite(lambda d: d.replace(b"\n", b"\r\n"))),
    ("LF instead of CRLF", "AX", "full", rewrite(lambda d: d.replace(b"\r\n", b"\n"))),
    ("mixed line ends", "WNLI", "train",
     rewrite(lambda d: b"".join(ln + (b"\r\n" if i % 2 else b"\n") for i, ln in enumerate(d.split(b"\n")[:-1])))),
    ("BOM added", "RTE", "dev", rewrite(lambda d: b"\xef\xbb\xbf" + d)),
    ("BOM added to a headerless file", "CoLA", "dev", rewrite(lambda d: b"\xef\xbb\xbf" + d)),
    ("BOM removed", "MRPC", "train", rewrite(lambda d: d.removeprefix(b"\xef\xbb\xbf"))),
    ("no final newline", "RTE", "dev", rewrite(lambda d: d.rstrip(b"\n"))),
    ("blank lines at the end", "STS-B", "dev", rewrite(lambda d: d + b"\n\r\n  \n")),
]


@pytest.mark.parametrize(("name", "task", "split", "mutate"), TOLERATED, ids=[t[0] for t in TOLERATED])
def test_tolerated_quirks_read_the_same_examples(name: str, task: str, split: str, mutate: Mutation,
                                                 tmp_path: Path, glue_dir: Path) -> None:
    fault = Fault(name, task, split, mutate, "", None)
    data, _ = fault_copy(fault, tmp_path, glue_dir, glue_dir)
    assert read_split(TASKS[task], split, data) == read_split(TASKS[task], split, glue_dir)


def test_unbalanced_quotes_are_literal_text(tmp_path: Path, glue_dir: Path) -> None:
    """Quotes are not CSV quoting in GLUE files: a stray one must not swallow the following lines."""
    fault = Fault("quote", "WNLI", "train", set_field(3, 1, b'He said "yes and left.'), "", None)
    data, _ = fault_copy(fault, tmp_path, glue_dir, glue_dir)
    examples = read_split(TASKS["WNLI"], "train", data)
    assert len(examples) == 635 and examples[1].text_a == 'He said "yes and left.'


# Property-based: whatever the bytes, the readers and the checker fail only with a GluebenchError.
LAYOUTS = [("CoLA", "train"), ("RTE", "test"), ("STS-B", "dev"), ("MNLI", "train"), ("AX", "full")]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(LAYOUTS), st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_raise_only_gluebench_errors(layout: tuple[str, str], data: bytes) -> None:
    task = TASKS[layout[0]]
    spec = task.split(layout[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / spec.path
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        try:
            read_split(task, spec, Path(tmp))
        except GluebenchError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
        check = check_file(task, spec, Path(tmp))
        assert check.present and all("\n" not in p for p in check.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 11_260), st.sampled_from(["insert", "delete", "replace"]),
                                st.binary(min_size=1, max_size=3)), min_size=1, max_size=4))
def test_random_edits_of_a_real_file_raise_only_gluebench_errors(
    edits: list[tuple[int, str, bytes]], glue_dir: Path
) -> None:
    data = bytearray((glue_dir / "WNLI/dev.tsv").read_bytes())
    for position, kind, payload in edits:
        position = min(position, len(data))
        if kind == "insert":
            data[position:position] = payload
        elif kind == "delete":
            del data[position:position + len(payload)]
        else:
            data[position:position + len(payload)] = payload
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "WNLI").mkdir()
        (Path(tmp) / "WNLI/dev.tsv").write_bytes(bytes(data))
        try:
            examples = read_split(TASKS["WNLI"], "dev", Path(tmp))
        except GluebenchError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(e.label in ("0", "1") for e in examples)
