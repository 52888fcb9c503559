"""Where the GLUE files are: an explicit directory, ``$GLUE_DIR``, the cache, a checkout's ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path

from gluebench.errors import DataMissingError
from gluebench.tasks import TASKS, TaskSpec


def cache_dir() -> Path:
    """gluebench's cache root: ``$GLUEBENCH_CACHE`` or ``~/.cache/gluebench``."""
    root = os.environ.get("GLUEBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "gluebench"


def default_glue_cache() -> Path:
    return cache_dir() / "glue"


def has_any_task(directory: Path) -> bool:
    """True when at least one official split file of any task is in the directory."""
    return any((directory / split.path).is_file() for task in TASKS.values() for split in task.splits)


def _shared_candidates() -> list[Path]:
    """``../shared/glue_data`` beside the working directory or beside this source checkout."""
    places = [Path.cwd(), *Path.cwd().parents[:2], *Path(__file__).resolve().parents[2:5]]
    return [place / ".." / "shared" / "glue_data" for place in places] + [
        place / "shared" / "glue_data" for place in places
    ]


def find_data_dir(explicit: Path | str | None = None) -> tuple[Path | None, str]:
    """Resolve the GLUE data directory and say where it came from.

    Order: ``explicit`` (must exist), ``$GLUE_DIR`` (must exist), the cache when it holds data, a
    ``shared/glue_data`` next to the checkout. Returns ``(None, "download")`` when nothing is found, so the
    caller can download into the cache.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise DataMissingError("--data-dir is not a directory", path=path)
        return path, "--data-dir"
    env = os.environ.get("GLUE_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataMissingError("$GLUE_DIR is not a directory", path=path)
        return path, "$GLUE_DIR"
    cached = default_glue_cache()
    if cached.is_dir() and has_any_task(cached):
        return cached, "cache"
    for candidate in _shared_candidates():
        if candidate.is_dir() and has_any_task(candidate):
            return candidate.resolve(), "shared/glue_data"
    return None, "download"


def split_path(task: TaskSpec, split: str, data_dir: Path) -> Path:
    return Path(data_dir) / task.split(split).path


def has_split(task: TaskSpec, split: str, data_dir: Path) -> bool:
    return split_path(task, split, data_dir).is_file()


def missing_for_training(task: TaskSpec, data_dir: Path) -> list[str]:
    """The splits a task needs to be trained and evaluated that are not in ``data_dir``."""
    needed = ["train", *task.dev_splits] if task.has_train else list(task.dev_splits)
    return [split for split in needed if not has_split(task, split, data_dir)]
