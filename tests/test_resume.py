"""kill -9 in the middle of training, then resume: the run ends exactly where an uninterrupted one ends.

Every run here is a real subprocess on real GLUE slices. The killed run is stopped with SIGKILL (no chance to
clean up) right after a checkpoint appears; the resumed run must reproduce the uninterrupted run's per-epoch
losses and dev metrics, its final metrics and its prediction files, bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gluebench.runs import RunPaths
from tests.conftest import CliRun
from tests.faults import kill_after_first_checkpoint, one_error_line

RUN = [sys.executable, "-m", "gluebench", "run", "--no-progress", "--patience", "9"]
# one thread everywhere: the same arithmetic in every process, and two runs can share the CPU
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _env() -> dict[str, str]:
    return {**os.environ, **ENV}


def _wait_for(path: Path, proc: subprocess.Popen[str], ready: Any, timeout: float = 300) -> dict[str, Any]:
    """Poll ``path`` (a JSON file written atomically) until ``ready(content)``; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            content = json.loads(path.read_text(encoding="utf-8"))
            if ready(content):
                return content
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) before {path} was ready: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail(f"{path} was not ready within {timeout}s")


def _kill_9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _run_outputs(root: Path, task: str) -> dict[str, Any]:
    """What a finished run produced, minus timings."""
    paths = RunPaths(root)
    history = json.loads(paths.history(task, 1).read_text())
    seed_dir = paths.seed_dir(task, 1)
    return {
        "metrics": json.loads(paths.metrics.read_text()),
        "history": [{k: v for k, v in h.items() if k not in ("seconds", "examples_per_second")} for h in history],
        "predictions": {p.name: p.read_text() for p in sorted(seed_dir.glob("*_predictions.tsv"))},
        "weights": hashlib.sha256(paths.weights(task, 1).read_bytes()).hexdigest(),
    }


@pytest.mark.parametrize(("model", "task", "options"), [
    ("glove-cbow", "SST-2", ["--max-train-examples", "4000", "--epochs", "2"]),
    ("minilm", "WNLI", ["--max-train-examples", "16", "--epochs", "2", "--max-length", "32", "--lr", "1e-4",
                        "--batch-size", "4"]),
])
def test_kill_9_after_an_epoch_then_resume_equals_an_uninterrupted_run(
        tmp_path: Path, glue_dir: Path, model: str, task: str, options: list[str]) -> None:
    args = [*RUN, "--model", model, "--tasks", task, "--data-dir", str(glue_dir), *options]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen([*args, "-o", str(reference_dir)], env=_env(), text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = subprocess.Popen([*args, "-o", str(killed_dir)], env=_env(), text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = RunPaths(killed_dir).checkpoint(task, 1) / "state.json"
    _wait_for(state_file, killed, lambda state: state["epoch"] >= 1)
    _kill_9(killed)
    at_kill = json.loads(state_file.read_text())
    epochs = int(options[options.index("--epochs") + 1])
    assert at_kill["epoch"] < epochs and not RunPaths(killed_dir).result(task, 1).exists()  # really mid-run

    resumed = subprocess.run([*RUN, "--resume", "-o", str(killed_dir)], env=_env(), text=True,
                             capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected, got = _run_outputs(reference_dir, task), _run_outputs(killed_dir, task)
    assert len(got["history"]) == epochs
    assert got == expected
    # it continued from the checkpoint rather than starting over (which, deterministic, would also match):
    result = json.loads(RunPaths(killed_dir).result(task, 1).read_text())
    assert result["resumed_from"] == {"epoch": at_kill["epoch"], "global_step": at_kill["global_step"]}
    history = json.loads(RunPaths(killed_dir).history(task, 1).read_text())
    saved_history = at_kill["tasks"][task]["history"]
    assert [h["seconds"] for h in history[: len(saved_history)]] == [h["seconds"] for h in saved_history]
    assert f"resumed from epoch {at_kill['epoch']}" in (killed_dir / "run.log").read_text()
    assert not RunPaths(killed_dir).checkpoint(task, 1).exists()  # cleaned up once the task finished


# ---- mid-epoch (step) checkpoints, through the Python API ---------------------------------------------


def _fit_slice(glue_dir: Path, checkpoint_dir: Path, resume: bool) -> dict[str, Any]:
    """Fine-tune MiniLM on a WNLI slice with a checkpoint every 2 optimiser steps (4 steps per epoch)."""
    from gluebench.artifacts import subsample
    from gluebench.data.read import read_split
    from gluebench.models import FamilyOptions, get_family
    from gluebench.tasks import TASKS
    from gluebench.training import TrainConfig, save_weights, train

    task = TASKS["WNLI"]
    train_set = subsample(read_split(task, "train", glue_dir), 16)
    dev = read_split(task, "dev", glue_dir)[:16]
    model = get_family("minilm").build(task, train_set, FamilyOptions(max_length=32), seed=5)
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-4, warmup_ratio=0.1, seed=5, patience=9, progress=False,
                         checkpoint_steps=2)
    outcome = train(model, task, train_set, {"dev": dev}, config, checkpoint_dir=checkpoint_dir, resume=resume)
    weights = checkpoint_dir.parent / "final.safetensors"
    save_weights(model.module, weights)
    return {"history": [{k: v for k, v in h.items() if k not in ("seconds", "examples_per_second")}
                        for h in outcome.history],
            "weights": hashlib.sha256(weights.read_bytes()).hexdigest(), "resumed_from": outcome.resumed_from}


def _fit_in_subprocess(glue_dir: Path, work: Path, resume: bool) -> subprocess.Popen[str]:
    # as a module from the repository root, so this file's own `tests.` imports resolve
    return subprocess.Popen([sys.executable, "-m", "tests.test_resume", str(glue_dir), str(work),
                             "resume" if resume else "fresh"], cwd=Path(__file__).resolve().parents[1],
                            env=_env(), text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_9_inside_an_epoch_then_resume_from_the_step_checkpoint(tmp_path: Path, glue_dir: Path) -> None:
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = _fit_in_subprocess(glue_dir, reference_dir, resume=False)
    killed = _fit_in_subprocess(glue_dir, killed_dir, resume=False)
    state_file = killed_dir / "checkpoint" / "state.json"
    _wait_for(state_file, killed, lambda state: state["in_epoch"] is not None)
    _kill_9(killed)
    at_kill = json.loads(state_file.read_text())
    assert at_kill["in_epoch"] is not None, "the kill landed after an epoch end; not a mid-epoch resume"
    assert not (killed_dir / "result.json").exists()

    resumed = _fit_in_subprocess(glue_dir, killed_dir, resume=True)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected = json.loads((reference_dir / "result.json").read_text())
    got = json.loads((killed_dir / "result.json").read_text())
    assert len(got["history"]) == 2
    assert expected.pop("resumed_from") is None
    # continued inside the epoch from the step checkpoint, not from the start
    assert got.pop("resumed_from") == {"epoch": at_kill["epoch"], "global_step": at_kill["global_step"]}
    assert at_kill["global_step"] % 2 == 0 and at_kill["in_epoch"]["step"] > 0
    assert got == expected


class Payload:
    """Unpickling this runs code: it writes ``marker``. A checkpoint must never be loaded that way."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",))


def test_damaged_or_unsafe_checkpoints_are_refused_with_one_line(tmp_path: Path, glue_dir: Path, cli: CliRun) -> None:
    """``gluebench run --resume`` over a checkpoint whose optimizer.pt carries code, then other damage."""
    import torch

    from gluebench.training import latest_checkpoint

    run, marker = tmp_path / "run", tmp_path / "payload-ran"
    # WNLI for far more epochs than can pass before the kill lands: killed mid-run, after its first checkpoint
    kill_after_first_checkpoint([*RUN, "--model", "glove-cbow", "--tasks", "WNLI", "--epochs", "200", "--patience",
                                 "200", "--data-dir", str(glue_dir), "-o", str(run)],
                                RunPaths(run).checkpoint("WNLI", 1), env=_env())
    saved = latest_checkpoint(RunPaths(run).checkpoint("WNLI", 1))
    assert saved is not None

    def resume() -> str:  # each damage is found before any training step
        code, _, err = cli("run", "--resume", "--no-progress", "-o", str(run))
        assert code == 2, err
        assert not RunPaths(run).result("WNLI", 1).exists()
        return one_error_line(err)

    optimizer = (saved / "optimizer.pt").read_bytes()
    torch.save({"optimizer": Payload(marker), "scheduler": {}}, saved / "optimizer.pt")
    poisoned = (saved / "optimizer.pt").read_bytes()
    torch.load(io.BytesIO(poisoned), weights_only=False)  # the payload is live: plain unpickling runs it
    assert marker.read_text() == "unpickled"
    marker.unlink()
    error = resume()
    assert not marker.exists(), "resuming unpickled the checkpoint and ran its code"
    assert re.search(r"checkpoint is damaged \(UnpicklingError: Weights only load failed", error), error
    assert (saved / "optimizer.pt").read_bytes() == poisoned  # refused, not rewritten
    (saved / "optimizer.pt").write_bytes(optimizer)
    state = torch.load(saved / "optimizer.pt", weights_only=True)
    moments = next(iter(state["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(*moments["exp_avg"].shape[:-1], moments["exp_avg"].shape[-1] + 1)
    torch.save(state, saved / "optimizer.pt")  # as a checkpoint of another model layout would hold
    assert re.search(r"checkpoint is damaged \(ValueError: optimizer exp_avg of shape .* for a parameter of shape",
                     resume())
    (saved / "optimizer.pt").write_bytes(optimizer)
    weights = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    assert "not a valid safetensors" in resume()
    (saved / "model.safetensors").write_bytes(weights)
    (saved.parent / "state.json").write_text("{not json")
    assert "checkpoint state is damaged" in resume()


if __name__ == "__main__":  # one training process for the step-checkpoint test
    import torch

    torch.set_num_threads(1)
    glue, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    result = _fit_slice(glue, work / "checkpoint", resume=mode == "resume")
    (work / "result.json").write_text(json.dumps(result))
