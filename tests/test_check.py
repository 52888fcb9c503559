"""`check_data` and `gluebench data check` on the real files and on corrupted copies of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gluebench.data.check import check_data, git_blob_id
from gluebench.tasks import TASKS
from tests.conftest import CliRun


def copy_tasks(glue_dir: Path, dest: Path, *dirs: str) -> Path:
    for name in dirs:
        shutil.copytree(glue_dir / name, dest / name)
    return dest


def test_real_directory_passes_with_official_counts(glue_dir: Path) -> None:
    report = check_data(glue_dir)
    assert report.ok
    present = [f for f in report.files if f.present]
    assert len(present) == 22  # every official file in ../shared/glue_data (README)
    for check in present:
        assert check.rows == check.expected_rows == TASKS[check.task].split(check.split).rows
        assert check.bad_field_rows == 0 and check.checksum == "ok" and check.status == "ok"
    assert {(f.task, f.split) for f in report.missing} == {
        ("QQP", "train"), ("QQP", "dev"), ("QQP", "test"), ("QNLI", "train"),
        *(("MNLI", s.name) for s in TASKS["MNLI"].splits),
    }


def test_cli_real_directory_exits_zero(glue_dir: Path, cli: CliRun) -> None:
    code, out, err = cli("data", "check", "--data-dir", str(glue_dir))
    assert code == 0, err
    assert "22 ok, 9 missing, 0 corrupt" in out
    assert "8,551 / 8,551" in out  # CoLA train rows against the official count


def test_git_blob_id_is_what_git_computes(glue_dir: Path) -> None:
    path = glue_dir / "WNLI/dev.tsv"
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert git_blob_id(path) == expected.stdout.strip()


def test_samples_are_checked_against_git_blob_ids(samples_dir: Path) -> None:
    """The samples are not the official files: blob ids expose that, MNLI train (no digest) stays unknown."""
    report = check_data(samples_dir, "QQP,MNLI")
    by_file = {(f.task, f.split): f for f in report.files}
    assert by_file["QQP", "dev"].checksum == "mismatch"
    assert by_file["MNLI", "train"].checksum == "unknown"
    assert by_file["MNLI", "train"].rows == 48 and by_file["MNLI", "train"].status == "corrupt"


def test_corrupted_copy_fails_naming_the_file(tmp_path: Path, glue_dir: Path, cli: CliRun) -> None:
    data = copy_tasks(glue_dir, tmp_path, "CoLA", "RTE")
    dev = data / "RTE/dev.tsv"
    dev.write_bytes(dev.read_bytes().replace(b"not_entailment\n", b"entailment\n", 1))  # still well-formed
    report = check_data(data, "CoLA,RTE")
    (bad,) = report.corrupt
    assert (bad.task, bad.split, bad.checksum, bad.rows) == ("RTE", "dev", "mismatch", 277)
    code, out, err = cli("data", "check", "--data-dir", str(data), "--tasks", "CoLA,RTE")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gluebench: error: corrupt: ")
    assert f"{dev}: sha256" in err
    assert "mismatch" in out


def test_field_count_problems_are_counted_per_row(tmp_path: Path, glue_dir: Path) -> None:
    data = copy_tasks(glue_dir, tmp_path, "CoLA")
    train = data / "CoLA/train.tsv"
    lines = train.read_bytes().split(b"\n")
    for number in (10, 20, 30):
        lines[number - 1] = lines[number - 1].rsplit(b"\t", 1)[0]  # drop the sentence
    train.write_bytes(b"\n".join(lines))
    (bad,) = check_data(data, "CoLA").corrupt
    assert (bad.split, bad.bad_field_rows, bad.first_bad_line, bad.rows) == ("train", 3, 10, 8551)
    assert bad.problems[0] == f"{train}:10: expected 4 tab-separated fields, found 3"


def test_dropped_row_is_a_row_count_problem(tmp_path: Path, glue_dir: Path) -> None:
    data = copy_tasks(glue_dir, tmp_path, "WNLI")
    dev = data / "WNLI/dev.tsv"
    dev.write_bytes(b"\n".join(dev.read_bytes().split(b"\n")[:-2]) + b"\n")
    (bad,) = check_data(data, "WNLI").corrupt
    assert bad.rows == 70 and bad.problems[0] == f"{dev}: 70 rows, the official file has 71"


def test_another_tasks_file_in_the_wrong_place(tmp_path: Path, glue_dir: Path) -> None:
    """QNLI dev has RTE's exact layout and labels; only counts and digests can tell them apart."""
    data = copy_tasks(glue_dir, tmp_path, "RTE")
    shutil.copyfile(glue_dir / "QNLI/dev.tsv", data / "RTE/dev.tsv")
    (bad,) = check_data(data, "RTE").corrupt
    assert bad.split == "dev" and bad.rows == 5463 and bad.checksum == "mismatch"


def test_missing_task_is_reported_not_an_error_unless_asked_for(
    tmp_path: Path, glue_dir: Path, cli: CliRun
) -> None:
    data = copy_tasks(glue_dir, tmp_path, "CoLA")
    report = check_data(data)
    assert report.ok and len(report.missing) == len([s for t in TASKS.values() for s in t.splits]) - 3
    code, out, _ = cli("data", "check", "--data-dir", str(data))
    assert code == 0 and "missing" in out

    code, _, err = cli("data", "check", "--data-dir", str(data), "--tasks", "CoLA,RTE")
    assert code == 2
    assert err.strip() == (f"gluebench: error: missing files of the tasks asked for in {data}: "
                           "RTE/train.tsv, RTE/dev.tsv, RTE/test.tsv")


def test_unreadable_entries_are_corrupt(tmp_path: Path, glue_dir: Path) -> None:
    data = copy_tasks(glue_dir, tmp_path, "WNLI")
    (data / "WNLI/dev.tsv").unlink()
    (data / "WNLI/dev.tsv").mkdir()
    (data / "WNLI/test.tsv").unlink()
    (data / "WNLI/test.tsv").symlink_to(tmp_path / "nowhere.tsv")
    report = check_data(data, "WNLI")
    assert [(f.split, f.status) for f in report.files] == [("train", "ok"), ("dev", "corrupt"), ("test", "corrupt")]
