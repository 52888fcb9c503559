"""Finished (task, seed) pairs are never retrained: `gluebench run --resume` keeps them byte for byte.

A copy of the session's real glove-cbow run (CoLA, STS-B, RTE x seeds 1, 2; tests/test_submission.py) with one
pair left unfinished (its result.json removed, as a run killed while finishing it leaves it) is resumed: only
that pair trains again; every file of the five finished pairs keeps its bytes and its modification time.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from gluebench.runs import RunPaths, read_json
from tests.conftest import CliRun
from tests.test_submission import RUN_SEEDS, RUN_TASKS, cbow_run  # noqa: F401  (the shared real run)

UNFINISHED = ("RTE", 2)


def _files(paths: RunPaths, pairs: list[tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """``{file: (sha256, mtime_ns)}`` of every file of the given pairs."""
    return {str(p.relative_to(paths.root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for task, seed in pairs for p in sorted(paths.seed_dir(task, seed).rglob("*")) if p.is_file()}


def test_resume_keeps_finished_pairs_and_trains_only_the_unfinished_one(cbow_run: Path, tmp_path: Path,  # noqa: F811
                                                                         cli: CliRun) -> None:
    paths = RunPaths(tmp_path / "run")
    shutil.copytree(cbow_run, paths.root)  # copy2: contents and modification times
    finished = [(task, seed) for task in RUN_TASKS for seed in RUN_SEEDS if (task, seed) != UNFINISHED]
    assert len(finished) == 5
    paths.result(*UNFINISHED).unlink()
    retrained_weights = paths.weights(*UNFINISHED).stat().st_mtime_ns
    before = _files(paths, finished)

    code, out, err = cli("run", "--resume", "--no-progress", "-o", str(paths.root))
    assert code == 0, err
    for task, seed in finished:
        assert f"{task} seed {seed}: already done, kept" in out
    assert f"{UNFINISHED[0]} seed {UNFINISHED[1]}: training glove-cbow" in out
    assert out.count("training glove-cbow") == 1
    assert _files(paths, finished) == before
    # the unfinished pair did train: a new result and new weights (so an unchanged file above means kept)
    assert read_json(paths.result(*UNFINISHED))["metrics"]
    assert paths.weights(*UNFINISHED).stat().st_mtime_ns != retrained_weights
    summary = read_json(paths.summary)
    assert {task: info["seeds"] for task, info in summary["tasks"].items()} == {t: list(RUN_SEEDS) for t in RUN_TASKS}
