"""Faults during a run (issue 7): Ctrl-C, a full disk, an unwritable output directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gluebench.runs import RunPaths
from gluebench.training import latest_checkpoint
from tests.conftest import CliRun
from tests.faults import kill_after_first_checkpoint, one_error_line, snapshot, temp_files

RUN = [sys.executable, "-m", "gluebench", "run", "--model", "glove-cbow", "--no-progress"]


def _no_temp_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path: Path, glue_dir: Path) -> None:
    out = tmp_path / "run"
    # far more epochs than the interrupt lets run: a busy CI machine cannot finish the run before SIGINT lands
    args = [*RUN, "--tasks", "SST-2", "--epochs", "40", "--patience", "40",
            "--max-train-examples", "1000", "--data-dir", str(glue_dir), "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = RunPaths(out).checkpoint("SST-2", 1) / "state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.is_file(), "no epoch checkpoint appeared"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"rc {proc.returncode}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}"
    assert f"gluebench run --resume --output-dir {out}" in stdout.replace("\n", " ")
    assert "Traceback" not in stderr
    assert state.is_file()
    _no_temp_files(out)

    resumed = subprocess.run([*RUN, "--resume", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert RunPaths(out).result("SST-2", 1).is_file()
    assert not RunPaths(out).checkpoint("SST-2", 1).exists()


def test_full_disk_mid_checkpoint_is_a_clear_error_and_earlier_results_stay(tmp_path: Path, glue_dir: Path) -> None:
    """A run killed after its first checkpoint resumes on a tmpfs with room for half a weights file.

    The learning rate is too small to change a prediction, so no later epoch beats the first and the first
    write after the resume is the next checkpoint's weights: its temporary file is created, fills the disk
    part-way and fails with ENOSPC. Every file the run had before (config, best weights, the checkpoint that
    state.json names: weights, best weights, optimiser state) must keep its exact bytes, no temporary file may
    stay behind, and the error is one line.
    """
    run = tmp_path / "run"
    # WNLI (the smallest task, all of it) for far more epochs than can pass before the kill lands
    args = [*RUN, "--tasks", "WNLI", "--epochs", "200", "--patience", "200", "--lr", "1e-12",
            "--data-dir", str(glue_dir), "-o", str(run)]
    saved = kill_after_first_checkpoint(args, RunPaths(run).checkpoint("WNLI", 1))
    before, log_before = snapshot(run), (run / "run.log").read_bytes()
    checkpoint = latest_checkpoint(RunPaths(run).checkpoint("WNLI", 1))
    assert checkpoint is not None and f"{checkpoint.relative_to(run)}/optimizer.pt" in before
    # tmpfs counts whole pages per inode (hard links once); leave room for half of the smallest weights file
    inodes = {p.stat().st_ino: p.stat().st_size for p in run.rglob("*") if p.is_file()}
    used = sum(-(-size // 4096) * 4096 for size in inodes.values())
    weights = min(p.stat().st_size for p in run.rglob("*.safetensors"))
    mount, after = tmp_path / "small", tmp_path / "after"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o size={(used + weights // 2) // 1024}k tmpfs {mount} && cp -a {run} {mount}/run && "
        f"{' '.join(RUN)} --resume -o {mount}/run; code=$?; cp -a {mount}/run {after}; exit $code"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    error = one_error_line(result.stderr)
    assert "No space left on device" in error and "safetensors" in error, error
    assert [name for name in temp_files(after) if name.endswith(".tmp")] == []  # the half-written file is gone
    now = snapshot(after)
    now.pop("run.log")
    assert (after / "run.log").read_bytes().startswith(log_before)  # the log is only appended to
    assert {name: now.get(name) for name in before if name != "run.log"} == \
        {name: digest for name, digest in before.items() if name != "run.log"}
    assert json.loads((after / checkpoint.relative_to(run).parent / "state.json").read_text()) == saved
    assert temp_files(after) == []  # the failed checkpoint's work directory is gone too


def test_unwritable_output_dir_is_a_clear_error(tmp_path: Path, glue_dir: Path, cli: CliRun) -> None:
    code, _, err = cli("run", "--model", "glove-cbow", "--tasks", "RTE", "--data-dir", str(glue_dir),
                       "-o", "/proc/gluebench-run")
    assert code == 2
    assert err.startswith("gluebench: error: ") and "/proc" in err and len(err.strip().splitlines()) == 1
