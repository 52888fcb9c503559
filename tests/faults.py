"""Real faults for the tests: a file-size limit that fails write() part-way, killed runs, file snapshots.

RLIMIT_FSIZE makes the kernel refuse any write past ``limit`` bytes of a file with EFBIG (Python ignores
SIGXFSZ, so the write raises instead of killing the process): a file bigger than the limit gets its first
``limit`` bytes written, then fails — the failure lands after the temporary file was created and part of the
data is in it, as a disk that fills up does. Unlike a full disk it needs no mount and no privileges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

# names the writers use for work in progress: atomic_write_bytes' ".NAME.XXXX.tmp", a checkpoint's ".step-N-PID.partial"
TEMP_SUFFIXES = (".tmp", ".partial")


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Within the block, every write past ``limit`` bytes of any file of this process fails with EFBIG."""
    assert limit > 0
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN, "SIGXFSZ would kill the process, not fail write()"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[str]:
    """Work in progress left under ``root`` (files or directories with a temporary name)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIXES))


def one_error_line(stderr: str) -> str:
    """The single ``gluebench: error:`` line of ``stderr``; fails if there is a traceback or more lines."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("gluebench: error: "), stderr
    return lines[0]


def kill_after_first_checkpoint(args: list[str], checkpoint_dir: Path, env: dict[str, str] | None = None,
                                timeout: float = 300) -> dict[str, object]:
    """Start ``args`` (a ``gluebench run``), SIGKILL it once ``checkpoint_dir/state.json`` exists; the saved state.

    Give the run far more epochs than it can finish before the kill lands, so it is always killed mid-run.
    """
    proc = subprocess.Popen(args, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = checkpoint_dir / "state.json"
    deadline = time.monotonic() + timeout
    try:
        while not state_file.is_file():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended (rc {proc.returncode}) before a checkpoint: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint within {timeout}s")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"rc {proc.returncode}: the run was not killed mid-run"
    state: dict[str, object] = json.loads(state_file.read_text(encoding="utf-8"))
    return state
