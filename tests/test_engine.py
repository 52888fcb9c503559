"""The one training loop end to end: multitask resume after kill -9, and `gluebench run` under
``accelerate launch`` with 2 CPU processes (gloo) for a static, a Transformer and a multitask model.

Launches use ``accelerate launch --multi_gpu --num_processes 2`` with no GPU visible, which starts 2 CPU
processes over gloo (accelerate's ``--cpu`` flag alone starts a single process unless MPI is set up). Which
process writes which file is recorded by a Python audit hook (``sitecustomize`` on the subprocesses' path),
so "every file written once, by the main process" is observed, not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gluebench.runs import RunPaths
from tests.test_resume import _kill_9, _wait_for

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

AUDIT_HOOK = '''
import os, sys, json
_log = os.environ.get("GLUEBENCH_WRITE_LOG")
if _log:
    def _hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.fsdecode(args[0]) != _log:
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing:
                with open(_log, "a", encoding="utf-8") as handle:  # opened for append: seen by this hook too
                    handle.write(json.dumps(["open", os.getpid(), os.fsdecode(args[0])]) + "\\n")
        elif event == "os.rename":
            with open(_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(["rename", os.getpid(), os.fsdecode(args[0]), os.fsdecode(args[1])]) + "\\n")
    sys.addaudithook(_hook)
'''


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    hook_dir = tmp_path / "audit"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    path = os.pathsep.join([str(hook_dir), *sys.path])
    return {**os.environ, **ENV, "PYTHONPATH": path, "GLUEBENCH_CACHE": str(tmp_path / "cache"), **extra}


def _launch(tmp_path: Path, args: list[str], processes: int, name: str) -> tuple[Path, list[list[Any]]]:
    """``gluebench run ARGS -o DIR`` in ``processes`` processes; the run dir and every write it made."""
    out = tmp_path / name
    log = tmp_path / f"{name}-writes.jsonl"
    env = _env(tmp_path, GLUEBENCH_WRITE_LOG=str(log))
    if processes == 1:
        command = [sys.executable, "-m", "gluebench", "run", *args, "-o", str(out)]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "-m", "gluebench", "run", *args, "-o", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    writes = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return out, writes


def _writers(writes: list[list[Any]], root: Path) -> dict[str, list[int]]:
    """Final file (relative to ``root``) -> pid of every write that ended in it (temp file + rename counted once)."""
    result: dict[str, list[int]] = {}
    for event in writes:
        if event[0] == "rename":
            _, pid, _, target = event
        else:
            _, pid, target = event
            if target.endswith(".tmp") or ".partial" in target:
                continue  # a temporary name; the rename into place counts
        path = Path(target)
        if path.is_relative_to(root.resolve()) or path.is_relative_to(root):
            relative = os.path.relpath(path, root.resolve() if path.is_relative_to(root.resolve()) else root)
            result.setdefault(relative, []).append(pid)
    return result


def _metrics(root: Path) -> dict[str, dict[str, float]]:
    return json.loads((root / "metrics.json").read_text())


def _index_entries(tmp_path: Path, root: Path) -> list[dict[str, Any]]:
    index = tmp_path / "cache" / "runs.json"
    return [e for e in json.loads(index.read_text()) if e["run_dir"] == str(root.resolve())]


@pytest.mark.parametrize(("name", "args", "tolerance"), [
    ("static", ["--model", "glove-cbow", "--tasks", "RTE", "--epochs", "2", "--max-train-examples", "400",
                "--dropout", "0"], 1.5),
    ("transformer", ["--model", "minilm", "--tasks", "WNLI", "--epochs", "1", "--max-train-examples", "32",
                     "--max-length", "48", "--batch-size", "8", "--dropout", "0", "--lr", "1e-4"], 1.5),
    ("multitask", ["--model", "glove-cbow", "--tasks", "RTE,MRPC", "--multitask", "--epochs", "2",
                   "--max-train-examples", "300", "--dropout", "0"], 1.5),
])
def test_accelerate_launch_two_processes_one_run_dir_written_once(
        tmp_path: Path, glue_dir: Path, name: str, args: list[str], tolerance: float) -> None:
    common = [*args, "--no-progress", "--patience", "9", "--data-dir", str(glue_dir)]
    single, _ = _launch(tmp_path, common, 1, "single")
    double, writes = _launch(tmp_path, common, 2, "double")

    assert json.loads((double / "run.json").read_text())["processes"] == 2
    assert json.loads((single / "run.json").read_text())["processes"] == 1
    pids = {event[1] for event in writes if str(double.resolve()) in json.dumps(event)}
    writers = _writers(writes, double)
    assert len(pids) == 1, f"files of the run were written by {len(pids)} processes"
    for relative in ("config.yaml", "metrics.json", "run.json"):
        assert len(writers[relative]) == 1, (relative, writers[relative])
    outputs = [r for r in writers if r.endswith(("_predictions.tsv", "result.json", "history.json"))]
    assert outputs and all(len(writers[r]) == 1 for r in outputs), {r: writers[r] for r in outputs}
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())
    assert len(_index_entries(tmp_path, double)) == 1
    log_lines = (double / "run.log").read_text().splitlines()
    assert len([line for line in log_lines if "epoch 1:" in line]) == len(_metrics(single))  # logged once

    one, two = _metrics(single), _metrics(double)
    assert one.keys() == two.keys()
    for task in one:
        for key, value in one[task].items():
            assert two[task][key] == pytest.approx(value, abs=tolerance), (task, key)  # same run, summed otherwise


def test_multitask_kill_9_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path: Path, glue_dir: Path) -> None:
    config = {"model": "glove-bilstm", "tasks": ["WNLI", "MRPC"], "multitask": True, "epochs": 2, "patience": 9,
              "max_train_examples": 400, "batch_size": 32, "checkpoint_steps": 4, "progress": False,
              "data_dir": str(glue_dir)}
    config_file = tmp_path / "multitask.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = _env(tmp_path)
    run = [sys.executable, "-m", "gluebench", "run", "--config", str(config_file)]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen([*run, "-o", str(reference_dir)], env=env, text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = subprocess.Popen([*run, "-o", str(killed_dir)], env=env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = RunPaths(killed_dir).multitask_checkpoint(1) / "state.json"
    _wait_for(state_file, killed, lambda state: state["epoch"] >= 2 and state["in_epoch"] is not None)
    _kill_9(killed)
    at_kill = json.loads(state_file.read_text())
    assert at_kill["in_epoch"] is not None and not RunPaths(killed_dir).result("WNLI", 1).exists()  # mid-epoch

    resumed = subprocess.run([sys.executable, "-m", "gluebench", "run", "--resume", "-o", str(killed_dir)],
                             env=env, text=True, capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=600) == 0, reference.stderr.read()

    assert _metrics(killed_dir) == _metrics(reference_dir)
    for task in ("WNLI", "MRPC"):
        paths_ref, paths_got = RunPaths(reference_dir), RunPaths(killed_dir)
        expected = json.loads(paths_ref.history(task, 1).read_text())
        got = json.loads(paths_got.history(task, 1).read_text())
        strip = ("seconds", "examples_per_second")
        assert [{k: v for k, v in h.items() if k not in strip} for h in got] == \
               [{k: v for k, v in h.items() if k not in strip} for h in expected]
        for split in ("dev", "test"):
            expected_file, got_file = paths_ref.predictions(task, 1, split), paths_got.predictions(task, 1, split)
            assert got_file.read_text() == expected_file.read_text()
        assert paths_got.weights(task, 1).read_bytes() == paths_ref.weights(task, 1).read_bytes()
        result = json.loads(paths_got.result(task, 1).read_text())
        assert result["resumed_from"] == {"epoch": at_kill["epoch"], "global_step": at_kill["global_step"]}
        assert result["multitask"] == ["MRPC", "WNLI"]  # registry order
    assert not RunPaths(killed_dir).multitask_checkpoint(1).exists()  # cleaned up once the seed finished


def _glue_copy(tmp_path: Path, glue_dir: Path, tasks: tuple[str, ...]) -> Path:
    """A GLUE directory holding only ``tasks`` (links to the real files)."""
    root = tmp_path / "glue"
    for task in tasks:
        (root / task).mkdir(parents=True)
        for source in (glue_dir / task).iterdir():
            (root / task / source.name).symlink_to(source)
    return root


@pytest.mark.parametrize("damage", ["missing", "directory", "dangling link", "looping link"])
def test_a_named_task_that_cannot_run_is_one_line_before_training(
        tmp_path: Path, glue_dir: Path, cli: Any, damage: str) -> None:
    data = _glue_copy(tmp_path, glue_dir, ("RTE", "WNLI"))
    train = data / "RTE" / "train.tsv"
    train.unlink()
    if damage == "directory":
        train.mkdir()
    elif damage == "dangling link":
        train.symlink_to(data / "RTE" / "nowhere.tsv")
    elif damage == "looping link":
        train.symlink_to(train)
    out = tmp_path / "run"
    code, _, err = cli("run", "--model", "glove-cbow", "--tasks", "WNLI,RTE", "--data-dir", str(data), "-o", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluebench: error: ") and str(train) in lines[0], err
    assert "gluebench download --tasks RTE" in lines[0]
    assert not list(out.glob("tasks/*"))  # WNLI, which could run, was not trained either


def test_tasks_all_skips_tasks_without_data_and_says_how_to_get_them(
        tmp_path: Path, glue_dir: Path, cli: Any) -> None:
    data = _glue_copy(tmp_path, glue_dir, ("WNLI",))
    out = tmp_path / "run"
    code, stdout, err = cli("run", "--model", "glove-cbow", "--tasks", "all", "--epochs", "1", "--no-progress",
                            "--data-dir", str(data), "-o", str(out))
    assert code == 0, err
    assert set(_metrics(out)) == {"WNLI"}
    flat = " ".join(stdout.split())
    assert "gluebench download --tasks CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE" in flat
    skipped = json.loads((out / "run.json").read_text())["skipped"]
    assert set(skipped) == {"CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "AX"}
