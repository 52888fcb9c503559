"""Shared fixtures: the real GLUE files in ../shared, and an isolated cache per test session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ["COLUMNS"] = "250"  # before any rich Console is made: tables are not folded in captured output


def _shared(name: str) -> Path:
    env = os.environ.get("GLUE_DIR") if name == "glue_data" else None
    path = Path(env) if env else REPO.parent / "shared" / name
    if not path.is_dir():
        pytest.exit(f"the real GLUE files are expected at {path} (set GLUE_DIR)", returncode=2)
    return path


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The official GLUE files (CoLA, SST-2, MRPC, STS-B, RTE, WNLI, QNLI dev/test, AX)."""
    return _shared("glue_data")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Small real slices of MNLI, QQP and QNLI train in their official column layout."""
    return _shared("glue_samples")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's ~/.cache/gluebench: each test gets its own cache root."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GLUEBENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache / "huggingface"))  # a user's cached Hub copy of GLUE is not found
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return cache


CliResult = tuple[int, str, str]
CliRun = Callable[..., CliResult]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRun:
    """Run ``gluebench ARGS`` in this process through the real entry point; returns (exit code, stdout, stderr)."""
    import sys

    from gluebench.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["gluebench", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """On a 2-core CPU shared with other jobs, two torch threads spin-wait far more than they compute."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
