"""Faults during a run (issue 7): Ctrl-C, a full disk, an unwritable output directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gluebench.runs import RunPaths
from tests.conftest import CliRun

RUN = [sys.executable, "-m", "gluebench", "run", "--model", "glove-cbow", "--no-progress"]


def _no_temp_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path: Path, glue_dir: Path) -> None:
    out = tmp_path / "run"
    # far more epochs than the interrupt lets run: a busy CI machine cannot finish the run before SIGINT lands
    args = [*RUN, "--tasks", "SST-2", "--epochs", "40", "--patience", "40",
            "--max-train-examples", "4000", "--data-dir", str(glue_dir), "-o", str(out)]
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


def test_full_disk_is_a_clear_error_and_earlier_results_stay(tmp_path: Path, glue_dir: Path) -> None:
    """A 300 KiB tmpfs (in a private mount namespace) fills up when the first model's weights are written."""
    mount = tmp_path / "small"
    mount.mkdir()
    out = mount / "run"
    script = (
        f"mount -t tmpfs -o size=300k tmpfs {mount} && "
        f"{' '.join(RUN)} --tasks RTE --epochs 1 --max-train-examples 200 --data-dir {glue_dir} -o {out}; "
        f"code=$?; ls -a {out} {out}/tasks/RTE/seed-1 >&2; exit $code"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gluebench: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "config.yaml" in result.stderr  # the run's config, written before training, is still there
    assert ".tmp" not in result.stderr  # and no half-written file


def test_unwritable_output_dir_is_a_clear_error(tmp_path: Path, glue_dir: Path, cli: CliRun) -> None:
    code, _, err = cli("run", "--model", "glove-cbow", "--tasks", "RTE", "--data-dir", str(glue_dir),
                       "-o", "/proc/gluebench-run")
    assert code == 2
    assert err.startswith("gluebench: error: ") and "/proc" in err and len(err.strip().splitlines()) == 1
