"""`gluebench sweep --launch`: each trial trains data-parallel under a real ``accelerate launch`` (2 CPU processes
over gloo, as in tests/test_engine.py) while the worker relays every epoch to the pruner; bad input is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gluebench.runs import read_json
from tests.conftest import CliRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LAUNCH = (f"{sys.executable} -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 "
          "--mixed_precision no --dynamo_backend no")


@pytest.fixture
def cpu_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU visible: ``--multi_gpu`` starts 2 CPU processes; one thread each on a shared CPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _cbow(glue_dir: Path, out: Path, grid: str, epochs: int, *extra: str) -> list[str]:
    return ["sweep", "--model", "glove-cbow", "--tasks", "RTE", "--data-dir", str(glue_dir), "--max-train-examples",
            "300", "--epochs", str(epochs), "--no-progress", "--grid", grid, "--launch", LAUNCH, "-o", str(out),
            *extra]


@pytest.mark.usefixtures("cpu_launch")
def test_launched_trials_run_data_parallel_and_the_pruner_stops_a_bad_one(glue_dir: Path, tmp_path: Path,
                                                                          cli: CliRun) -> None:
    out = tmp_path / "sweep"
    # 12 epochs: the pruned run would take seconds more than the relay's 1 s look to finish, so the stop lands
    # first (a run that finishes before it counts as complete)
    code, stdout, err = cli(*_cbow(glue_dir, out, "lr=3e-3,1e-2,1e-7", 12), "--patience", "99", "--pruner",
                            "median", "--startup-trials", "2")
    assert code == 0, stdout + err
    record = read_json(out / "sweep.json")
    assert record["settings"]["launch"] == LAUNCH
    trials = {t["params"]["lr"]: t for t in record["trials"]}
    finished = [t for lr, t in trials.items() if lr != 1e-7]
    assert all(t["state"] == "COMPLETE" for t in finished)
    for trial in finished:
        run = read_json(Path(trial["run_dir"]) / "run.json")
        assert run["processes"] == 2
        assert [h["epoch"] for h in trial["history"]] == list(range(1, 13))
        assert list(trial["intermediate_values"].values()) == [h["accuracy"] for h in trial["history"]]
    best = max(finished, key=lambda t: t["value"])
    assert record["best"]["RTE"]["trial"] == best["name"] and record["best"]["RTE"]["value"] == best["value"]
    pruned = trials[1e-7]
    epochs = [h["epoch"] for h in pruned["history"]]
    assert pruned["state"] == "PRUNED" and epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 12
    assert pruned["value"] == pruned["history"][-1]["accuracy"] == pruned["intermediate_values"][str(epochs[-1])]
    run_dir = Path(pruned["run_dir"])
    assert (run_dir / "config.yaml").is_file() and not (run_dir / "run.json").exists()  # stopped, resumable
    assert read_json(run_dir / "trial.json")["state"] == "PRUNED"


@pytest.mark.usefixtures("cpu_launch")
def test_a_launch_that_fails_fails_its_trial_with_the_reason(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    out = tmp_path / "sweep"
    code, stdout, err = cli(*_cbow(glue_dir, out, "lr=3e-3", 1)[:-4], "--launch", f"{sys.executable} -c 'import sys; "
                            "sys.exit(\"error: no such launcher\")'", "-o", str(out))
    assert code == 0, stdout + err
    (trial,) = read_json(out / "sweep.json")["trials"]
    assert trial["state"] == "FAIL"
    assert "ended with 1: error: no such launcher" in stdout


@pytest.mark.parametrize(("launch", "message"), [
    ("", "--launch must not be empty"),
    ("accelerate launch 'unclosed", "--launch \"accelerate launch 'unclosed\": No closing quotation"),
])
def test_a_bad_launch_is_one_line(launch: str, message: str, glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    code, stdout, err = cli(*_cbow(glue_dir, tmp_path / "sweep", "lr=3e-3", 1)[:-4], "--launch", launch,
                            "-o", str(tmp_path / "sweep"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, stdout + err
