"""`gluebench download` and `gluebench data check`: fetch the official files (or the Hub's parquet copy), and
validate a data directory of either layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gluebench.cli.app import app
from gluebench.data.check import CheckReport, FileCheck, check_data
from gluebench.data.download import SOURCES, download_glue
from gluebench.data.locate import default_glue_cache, find_data_dir, hub_cache_snapshot
from gluebench.errors import DataFormatError, DataMissingError, GluebenchError
from gluebench.tasks import TASKS, resolve_tasks

console = Console()
data_app = typer.Typer(help="Inspect and validate GLUE data directories.", no_args_is_help=True)
app.add_typer(data_app, name="data")

TasksOption = Annotated[
    str | None, typer.Option("--tasks", "-t", help=f"Comma-separated tasks ({', '.join(TASKS)}), or 'all'.")
]


@app.command("download")
def download_command(
    tasks: TasksOption = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where to put the files (default: the "
                                                  "gluebench cache, ~/.cache/gluebench/glue; with --source hub "
                                                  "the Hugging Face cache).")] = None,
    source: Annotated[str, typer.Option("--source", help=f"Where from: {' or '.join(SOURCES)} ('official': the "
                                        "GLUE authors' archives, with the Hub as fallback; 'hub': the Hugging "
                                        "Face Hub's parquet copy, nyu-mll/glue).")] = "official",
    mirror: Annotated[str | None, typer.Option("--mirror", help="A host serving the official paths "
                                               "(e.g. http://mirror.local); file digests are still checked.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Download the official GLUE files (all tasks and the diagnostic set by default), verified against pinned
    digests and installed atomically; tasks already present and intact are skipped. --source hub fetches the
    Hub's parquet copy instead, verified against the Hub's digests."""
    specs = resolve_tasks(tasks, include_ax=True)
    paths = download_glue(specs, data_dir, source=source, base_url=mirror, progress=not no_progress)
    where = data_dir or (hub_cache_snapshot() if source == "hub" else default_glue_cache())
    hub = sum(p.suffix == ".parquet" for p in paths)  # --source hub, or the fallback of a failed official host
    counts = ((len(paths) - hub, "official"), (hub, "Hub (parquet)"))
    counted = " and ".join(f"{n} {kind}" for n, kind in counts if n) or "0"
    console.print(f"{len(specs)} task(s), {counted} files verified in {where}")
    if os.environ.get("GLUE_DIR") and data_dir is None:
        console.print("[yellow]note:[/] $GLUE_DIR is set and is searched before the cache.")


def _rows_cell(check: FileCheck) -> str:
    if check.rows is None:
        return f"– / {check.expected_rows:,}"
    return f"{check.rows:,} / {check.expected_rows:,}"


def _fields_cell(check: FileCheck) -> str:
    if not check.present:
        return ""
    if check.bad_field_rows:
        return f"{check.bad_field_rows:,} bad (first line {check.first_bad_line})"
    return "ok"


def _without_path(problem: str, path: Path) -> str:
    """``PATH:LINE: message`` → ``line LINE: message`` for the table, where the file has its own column."""
    rest = problem.removeprefix(f"{path}:").lstrip()
    line, sep, message = rest.partition(": ")
    return f"line {line}: {message}" if sep and line.isdigit() else rest


def report_table(report: CheckReport) -> Table:
    """One row per official file: status, rows against the official count, field counts, checksum, problem."""
    table = Table(title=f"GLUE data in {report.data_dir}")
    for column in ("task", "file", "status", "rows / official", "fields", "checksum", "problem"):
        table.add_column(column, overflow="fold")
    colors = {"ok": "green", "missing": "yellow", "corrupt": "red"}
    for check in report.files:
        status: str = check.status
        if status == "missing" and check.task in report.named:
            status = "missing (asked for)"
        problem = _without_path(check.problems[0], check.path) if check.problems else check.note
        table.add_row(
            check.task, check.path.relative_to(report.data_dir).as_posix(),
            f"[{colors[check.status]}]{status}[/]", _rows_cell(check), _fields_cell(check),
            check.checksum or "", problem,
        )
    return table


@data_app.command("check")
def check_command(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="GLUE data directory, official TSVs or a "
                                                  "snapshot of the Hub's parquet copy (default: $GLUE_DIR, the "
                                                  "cache, the Hugging Face cache, ../shared).")] = None,
    tasks: TasksOption = None,
) -> None:
    """Check every official file: present, row count, fields per row, labels, checksum. Exits non-zero on a
    corrupt file, or on a missing file of a task named with --tasks."""
    directory, _ = find_data_dir(data_dir)
    if directory is None:
        raise GluebenchError("no GLUE data found: run `gluebench download` or pass --data-dir")
    report = check_data(directory, tasks)
    console.print(report_table(report))
    counts = {s: sum(f.status == s for f in report.files) for s in ("ok", "missing", "corrupt")}
    console.print(f"{counts['ok']} ok, {counts['missing']} missing, {counts['corrupt']} corrupt")
    if report.corrupt:
        first = report.corrupt[0]
        more = f" (and {len(report.corrupt) - 1} more corrupt files)" if len(report.corrupt) > 1 else ""
        raise DataFormatError(f"corrupt: {first.problems[0]}{more}")
    if report.missing_named:
        names = ", ".join(f.path.relative_to(directory).as_posix() for f in report.missing_named)
        raise DataMissingError(f"missing files of the tasks asked for in {directory}: {names}")
