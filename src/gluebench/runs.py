"""Run directories, atomic writes and the run index.

A run directory holds everything a run produced, so reporting never retrains::

    RUN_DIR/
      config.yaml                 resolved configuration of the run
      metrics.json                {task: {metric: value}}  (mean over seeds; the schema `gluebench score` reads)
      run.json                    model, seeds, per-task mean/std/per-seed metrics, timing, GLUE score
      run.log                     the run's log
      tasks/TASK/seed-S/
        dev_predictions.tsv       index, prediction, gold   (one file per dev split, e.g. dev_matched)
        test_predictions.tsv      index, prediction         (one file per test split, e.g. test_matched)
        history.json              per-epoch train loss and dev metrics
        result.json               this seed's metrics, timing and examples/s
        model.safetensors         best checkpoint (weights only)
        checkpoint/               last epoch's resumable state (removed when the task finishes)
      multitask/seed-S/checkpoint/  a multitask seed's resumable state (removed when the seed finishes)

Every file is written to a temporary name beside its target, then renamed, so a crash never leaves half
a result behind.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gluebench.data.locate import cache_dir
from gluebench.errors import GluebenchError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename; clear error on a full or read-only disk."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GluebenchError(f"cannot write here ({exc.strerror})", path=path.parent) from exc
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise GluebenchError(f"cannot write file ({exc.strerror})", path=path) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def replace_directory(staged: Path, target: Path) -> None:
    """Put the finished directory ``staged`` at ``target`` (same file system).

    The old ``target`` is renamed aside before the new one is renamed in, and deleted only after: a kill
    in between leaves it whole beside ``target`` (``.NAME.old-PID``), never half deleted.
    """
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
    os.replace(staged, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GluebenchError("file not found", path=path) from exc
    except json.JSONDecodeError as exc:
        raise GluebenchError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from exc


@dataclass(frozen=True)
class RunPaths:
    """Names of the files inside a run directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.root / "run.json"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def seed_dir(self, task: str, seed: int) -> Path:
        return self.root / "tasks" / task / f"seed-{seed}"

    def predictions(self, task: str, seed: int, split: str) -> Path:
        return self.seed_dir(task, seed) / f"{split}_predictions.tsv"

    def history(self, task: str, seed: int) -> Path:
        return self.seed_dir(task, seed) / "history.json"

    def result(self, task: str, seed: int) -> Path:
        return self.seed_dir(task, seed) / "result.json"

    def weights(self, task: str, seed: int) -> Path:
        return self.seed_dir(task, seed) / "model.safetensors"

    def checkpoint(self, task: str, seed: int) -> Path:
        return self.seed_dir(task, seed) / "checkpoint"

    def multitask_checkpoint(self, seed: int) -> Path:
        """One checkpoint for all tasks of a multitask seed (they share an encoder)."""
        return self.root / "multitask" / f"seed-{seed}" / "checkpoint"


def default_run_dir(model: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe_model = model.replace("/", "_").replace(":", "_")
    return root / f"{stamp}-{safe_model}"


# ---- run index --------------------------------------------------------------------------------------


def run_index_path() -> Path:
    return cache_dir() / "runs.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock next to the index, so concurrent runs never lose each other's entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_index(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GluebenchError(f"run index is corrupt ({exc.msg}); move it away to start a new one", path=path) \
            from exc
    return entries if isinstance(entries, list) else []


def register_run(entry: dict[str, Any], index: Path | None = None) -> str:
    """Add or update a run in the index (keyed by its directory); returns the run's id."""
    index = index or run_index_path()
    with _locked(index):
        entries = _load_index(index)
        run_dir = str(Path(entry["run_dir"]).resolve())
        previous = next((e for e in entries if e["run_dir"] == run_dir), None)
        run_id = previous["id"] if previous else f"r{max((int(e['id'][1:]) for e in entries), default=0) + 1}"
        entries = [e for e in entries if e["run_dir"] != run_dir]
        entries.append({**entry, "id": run_id, "run_dir": run_dir})
        atomic_write_json(index, entries)
    return run_id


def list_runs(index: Path | None = None) -> list[dict[str, Any]]:
    index = index or run_index_path()
    with _locked(index):
        return _load_index(index)


def resolve_run(ref: str, index: Path | None = None) -> Path:
    """A run directory from a path or an index id such as ``r3``."""
    path = Path(ref)
    if path.is_dir():
        return path
    for entry in list_runs(index):
        if entry["id"] == ref:
            return Path(entry["run_dir"])
    raise GluebenchError(f"no run directory or run id {ref!r} (see `gluebench runs`)")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
