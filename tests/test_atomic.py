"""Nothing is half-written: a submission or a report whose write fails midway leaves the earlier file whole.

The failure is real and lands inside write(): under a file-size limit (RLIMIT_FSIZE) the kernel accepts the
first ``limit`` bytes of the new temporary file, then refuses the rest with EFBIG. The earlier file must keep
its exact bytes, no temporary file may stay, and the command says so on one line with exit code 2. The run
they are made from is the session's real glove-cbow run (tests/test_submission.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CliRun
from tests.faults import file_size_limit, one_error_line, snapshot, temp_files
from tests.test_submission import cbow_run  # noqa: F401  (the shared real run)


def test_submission_failing_midway_keeps_the_earlier_zip(cbow_run: Path, glue_dir: Path,  # noqa: F811
                                                         tmp_path: Path, cli: CliRun) -> None:
    output = tmp_path / "submit" / "glue_submission.zip"

    def submit(seed: int) -> tuple[int, str]:
        code, _, err = cli("submit", str(cbow_run), "-o", str(output), "--fill", "majority", "--seed", str(seed),
                           "--data-dir", str(glue_dir))
        return code, err

    assert submit(1) == (0, "")
    earlier = output.read_bytes()
    with file_size_limit(len(earlier) // 2):
        code, err = submit(2)
    assert code == 2
    assert f"{output}: cannot write file (File too large)" in one_error_line(err)
    assert output.read_bytes() == earlier
    assert [p.name for p in output.parent.iterdir()] == [output.name]
    assert submit(2) == (0, "")  # with room: seed 2's zip differs, so the failed write would have changed the file
    assert output.read_bytes() != earlier


def _report(cli: CliRun, run: Path, output: Path) -> tuple[int, str]:
    code, _, err = cli("report", str(run), "-o", str(output))
    return code, err


def test_report_failing_midway_keeps_the_earlier_page_and_figures(cbow_run: Path, tmp_path: Path,  # noqa: F811
                                                                  cli: CliRun) -> None:
    output = tmp_path / "report" / "report.html"
    assert _report(cli, cbow_run, output) == (0, "")
    earlier = snapshot(output.parent)
    sizes = {p.name: p.stat().st_size for p in output.parent.rglob("*") if p.is_file()}
    figures = max(size for name, size in sizes.items() if name.endswith(".png"))
    assert figures < sizes["report.html"]  # the page embeds every figure
    # the figures fit under the limit and are rewritten; the page does not and fails after `limit` bytes
    with file_size_limit((figures + sizes["report.html"]) // 2):
        code, err = _report(cli, cbow_run, output)
    assert code == 2
    assert f"{output}: cannot write file (File too large)" in one_error_line(err)
    assert snapshot(output.parent) == earlier
    assert temp_files(output.parent) == []
    # a figure fails instead: the page is never reached, every figure and the page stay as they were
    with file_size_limit(figures // 2):
        code, err = _report(cli, cbow_run, output)
    assert code == 2
    assert "_figures/" in one_error_line(err) and "(File too large)" in err
    assert snapshot(output.parent) == earlier
    assert temp_files(output.parent) == []
