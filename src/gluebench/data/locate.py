"""Where the GLUE files are: an explicit directory, ``$GLUE_DIR``, the cache, the Hugging Face cache, a
checkout's ``../shared``; and which file holds a split there: the official TSV, or the Hub's parquet copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gluebench.errors import DataMissingError
from gluebench.tasks import HUB_REPO, TASKS, SplitSpec, TaskSpec

Format = Literal["tsv", "parquet"]


@dataclass(frozen=True)
class SplitFile:
    """The file one split of a task is read from, in a data directory of either layout."""

    path: Path
    format: Format
    note: str = ""  # why nothing can be found there: a split the Hub's copy does not have


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is there, and reported as broken


def is_hub_snapshot(directory: Path) -> bool:
    """True when the directory holds a file of the Hub's parquet copy of GLUE (any task, any split)."""
    return any(
        (directory / hub_path).is_file()
        for task in TASKS.values() if task.hub is not None
        for split in task.splits if (hub_path := task.hub.path(split.name)) is not None
    )


def split_file(task: TaskSpec, split: str | SplitSpec, data_dir: Path) -> SplitFile:
    """Where ``split`` of ``task`` is in ``data_dir``: the official TSV where it is there, else the Hub's parquet.

    Per split, so a snapshot of the Hub's copy and official files can share a directory (the labeled AX set
    exists as a TSV only). Where neither is there, the path of the layout the directory has is returned.
    """
    spec = task.split(split) if isinstance(split, str) else split
    data_dir = Path(data_dir)
    tsv = data_dir / spec.path
    if _exists(tsv):
        return SplitFile(tsv, "tsv")
    hub_path = task.hub.path(spec.name) if task.hub is not None else None
    if hub_path is not None and (_exists(data_dir / hub_path) or is_hub_snapshot(data_dir)):
        return SplitFile(data_dir / hub_path, "parquet")
    if task.hub is not None and hub_path is None and is_hub_snapshot(data_dir):
        return SplitFile(tsv, "tsv", f"{HUB_REPO} has no copy of {task.name} {spec.name}; get the official file "
                                     f"with `gluebench download --tasks {task.name}`")
    return SplitFile(tsv, "tsv")


def cache_dir() -> Path:
    """gluebench's cache root: ``$GLUEBENCH_CACHE`` or ``~/.cache/gluebench``."""
    root = os.environ.get("GLUEBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "gluebench"


def default_glue_cache() -> Path:
    return cache_dir() / "glue"


def has_any_task(directory: Path) -> bool:
    """True when at least one split file of any task (official TSV or Hub parquet) is in the directory."""
    official = any((directory / split.path).is_file() for task in TASKS.values() for split in task.splits)
    return official or is_hub_snapshot(directory)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub resolves it: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    if explicit := os.environ.get("HF_HUB_CACHE"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    default = Path(xdg).expanduser() / "huggingface" if xdg else Path.home() / ".cache" / "huggingface"
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else default) / "hub"


def hub_cache_snapshot() -> Path | None:
    """The snapshot of the Hub's GLUE in the Hugging Face cache that holds data: the one ``refs/main`` names,
    else the newest; None when there is none."""
    repo = hf_hub_cache() / f"datasets--{HUB_REPO.replace('/', '--')}"
    main = repo / "refs" / "main"
    try:
        current = main.read_text(encoding="utf-8").strip() if main.is_file() else None
    except OSError:
        current = None
    snapshots = [path for path in (repo / "snapshots").glob("*") if path.is_dir()]
    snapshots.sort(key=lambda path: (path.name != current, -path.stat().st_mtime))
    return next((path for path in snapshots if has_any_task(path)), None)


def _shared_candidates() -> list[Path]:
    """``../shared/glue_data`` beside the working directory or beside this source checkout."""
    places = [Path.cwd(), *Path.cwd().parents[:2], *Path(__file__).resolve().parents[2:5]]
    return [place / ".." / "shared" / "glue_data" for place in places] + [
        place / "shared" / "glue_data" for place in places
    ]


def find_data_dir(explicit: Path | str | None = None) -> tuple[Path | None, str]:
    """Resolve the GLUE data directory and say where it came from.

    Order: ``explicit`` (must exist), ``$GLUE_DIR`` (must exist), the cache when it holds data, a snapshot of
    the Hub's copy in the Hugging Face cache, a ``shared/glue_data`` next to the checkout. Either layout (official
    TSVs or the Hub's parquet) counts. Returns ``(None, "download")`` when nothing is found, so the caller can
    download into the cache.
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
    snapshot = hub_cache_snapshot()
    if snapshot is not None:
        return snapshot, "Hugging Face cache"
    for candidate in _shared_candidates():
        if candidate.is_dir() and has_any_task(candidate):
            return candidate.resolve(), "shared/glue_data"
    return None, "download"


def split_path(task: TaskSpec, split: str, data_dir: Path) -> Path:
    """The file ``split`` is read from (see `split_file`)."""
    return split_file(task, split, data_dir).path


def has_split(task: TaskSpec, split: str, data_dir: Path) -> bool:
    return split_path(task, split, data_dir).is_file()


def missing_for_training(task: TaskSpec, data_dir: Path) -> list[str]:
    """The splits a task needs to be trained and evaluated that are not in ``data_dir``."""
    needed = ["train", *task.dev_splits] if task.has_train else list(task.dev_splits)
    return [split for split in needed if not has_split(task, split, data_dir)]
