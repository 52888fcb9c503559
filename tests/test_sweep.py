"""`gluebench sweep` on Optuna with real components: glove models on real GLUE slices, worker processes sharing
a journal-file study, a worker killed with SIGKILL mid-trial, a trial the median pruner stops, the winner's
final seeds as an ordinary run directory, and bad input as one line. (The PostgreSQL storage is
tests/test_sweep_postgres.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from gluebench.runs import read_json
from gluebench.sweep import TICKET
from tests.conftest import CliRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2"]


def _cbow(glue_dir: Path, task: str = "RTE", examples: int = 300, epochs: int = 2) -> list[str]:
    return ["sweep", "--model", "glove-cbow", "--tasks", task, "--data-dir", str(glue_dir), "--max-train-examples",
            str(examples), "--epochs", str(epochs), "--no-progress"]


def _study(storage: str | Path, name: str = "gluebench.RTE") -> optuna.Study:
    path = str(storage)
    opened = path if "://" in path else JournalStorage(JournalFileBackend(path))
    return optuna.load_study(study_name=name, storage=opened)


def _ticketed(study: optuna.Study) -> list[FrozenTrial]:
    """The trials of the budget (a worker that asked after the last ticket was taken gets an unrun one)."""
    trials = study.get_trials()
    assert all("run_dir" not in t.user_attrs for t in trials if TICKET not in t.user_attrs)
    return [t for t in trials if TICKET in t.user_attrs]


def assert_every_trial_once_and_the_best_reported(study: optuna.Study, out: Path, budget: int) -> None:
    """Shared with the PostgreSQL test: the budget finished, each trial once, by both workers; what sweep.json
    says is what the study holds."""
    trials = _ticketed(study)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * budget
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == budget
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both worker processes ran trials"
    assert sorted(p.name for p in (out / "trials").iterdir()) == sorted(Path(t.user_attrs["run_dir"]).name
                                                                        for t in trials)
    for trial in trials:
        run = read_json(Path(trial.user_attrs["run_dir"]) / "run.json")
        assert {k: run["config"][k] for k in trial.params} == trial.params
        assert run["tasks"]["RTE"]["mean"]["accuracy"] == trial.value
    record = read_json(out / "sweep.json")
    assert [(t["number"], t["state"], t["value"]) for t in record["trials"]] == [
        (t.number, "COMPLETE", t.value) for t in trials]
    best = study.best_trial
    assert record["best"]["RTE"]["value"] == best.value and record["best"]["RTE"]["params"] == best.params
    assert record["best"]["RTE"]["trial"] == Path(best.user_attrs["run_dir"]).name


def test_two_workers_on_one_journal_study_run_each_trial_once(glue_dir: Path, tmp_path: Path, cli: CliRun,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the second worker is a process of its own
    out = tmp_path / "sweep"
    code, stdout, err = cli(*_cbow(glue_dir), "--grid", "lr=" + ",".join(GRID), "--workers", "2", "-o", str(out))
    assert code == 0, stdout + err
    study = _study(out / "study.journal")
    assert_every_trial_once_and_the_best_reported(study, out, len(GRID))
    assert sorted(t.params["lr"] for t in _ticketed(study)) == sorted(map(float, GRID))
    assert (out / "workers" / "worker-2.log").is_file()
    again = cli(*_cbow(glue_dir), "--grid", "lr=" + ",".join(GRID), "--workers", "2", "-o", str(out))
    assert again[0] == 0 and len(_study(out / "study.journal").get_trials()) == len(study.get_trials())


def _running_elsewhere(journal: Path, leader: int, epochs: int) -> tuple[FrozenTrial, int] | None:
    """A trial the other worker runs, past its first epoch's checkpoint and not yet at its last epoch."""
    if not journal.is_file():
        return None
    try:
        study = _study(journal)
    except KeyError:  # the study is not created yet
        return None
    for trial in study.get_trials(states=(TrialState.RUNNING,)):
        pid = int(trial.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
        steps = trial.intermediate_values
        checkpoint = Path(trial.user_attrs.get("run_dir", "")) / "tasks" / "RTE" / "seed-1" / "checkpoint"
        if pid not in (0, leader) and steps and max(steps) < epochs and (checkpoint / "state.json").is_file():
            return trial, pid
    return None


def test_a_worker_killed_mid_trial_is_retried_and_the_budget_completes(glue_dir: Path, tmp_path: Path) -> None:
    out, epochs, grid = tmp_path / "sweep", 3, ["1e-3", "2e-3", "3e-3", "5e-3"]
    log_path = tmp_path / "sweep.log"
    with open(log_path, "wb") as log:
        leader = subprocess.Popen(
            [sys.executable, "-m", "gluebench", *_cbow(glue_dir, examples=500, epochs=epochs), "--batch-size", "1",
             "--patience", "9", "--grid", "lr=" + ",".join(grid), "--workers", "2", "--heartbeat", "1", "-o", str(out)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 300
        while (found := _running_elsewhere(out / "study.journal", leader.pid, epochs)) is None:
            assert leader.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        victim, pid = found
        os.kill(pid, signal.SIGKILL)
        assert leader.wait(timeout=400) == 0, log_path.read_text()
    finally:
        leader.kill()
    trials = _ticketed(_study(out / "study.journal"))
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [victim.number]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["run_dir"] == victim.user_attrs["run_dir"]
    result = read_json(Path(retry.user_attrs["run_dir"]) / "tasks" / "RTE" / "seed-1" / "result.json")
    assert result["resumed_from"]["epoch"] >= 1  # continued from the dead worker's checkpoint: nothing lost
    assert sorted(t.params["lr"] for t in trials if t.state == TrialState.COMPLETE) == sorted(map(float, grid))
    assert [h["epoch"] for h in retry.user_attrs["history"]] == list(range(1, epochs + 1))
    record = read_json(out / "sweep.json")
    assert [t["state"] for t in record["trials"]].count("COMPLETE") == len(grid)
    assert f"ended with signal {signal.SIGKILL.value}" in log_path.read_text()


def test_a_pruned_trial_stops_early_and_keeps_what_it_measured(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    out = tmp_path / "sweep"
    code, stdout, err = cli(*_cbow(glue_dir, "SST-2", 1000, 3), "--patience", "9", "--grid", "lr=3e-3,5e-3,1e-7",
                            "--pruner", "median", "--startup-trials", "2", "-o", str(out))
    assert code == 0, stdout + err
    trials = {t["params"]["lr"]: t for t in read_json(out / "sweep.json")["trials"]}
    pruned = trials[1e-7]
    assert pruned["state"] == "PRUNED" and [h["epoch"] for h in pruned["history"]] == [1]  # of 3 epochs
    assert pruned["value"] == pruned["history"][0]["accuracy"] == pruned["intermediate_values"]["1"]
    assert all(t["state"] == "COMPLETE" and len(t["history"]) == 3 for lr, t in trials.items() if lr != 1e-7)
    run_dir = Path(pruned["run_dir"])
    assert (run_dir / "config.yaml").is_file() and not (run_dir / "run.json").exists()
    saved = read_json(run_dir / "trial.json")
    assert saved["state"] == "PRUNED" and saved["history"] == pruned["history"]
    assert "| pruned |" in (out / "sweep.md").read_text()


def test_final_seeds_rerun_the_winner_as_an_ordinary_run(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    out = tmp_path / "sweep"
    code, stdout, err = cli(*_cbow(glue_dir, epochs=1), "--grid", "lr=1e-4,3e-3", "--final-seeds", "1,2,3",
                            "-o", str(out))
    assert code == 0, stdout + err
    record = read_json(out / "sweep.json")
    final_dir = out / "final" / "RTE"
    run = read_json(final_dir / "run.json")
    assert run["seeds"] == [1, 2, 3] and run["config"]["lr"] == record["best"]["RTE"]["params"]["lr"]
    assert record["final"]["RTE"]["tasks"]["RTE"]["std"] == run["tasks"]["RTE"]["std"]
    assert f"{run['tasks']['RTE']['mean']['accuracy']:.2f} ± {run['tasks']['RTE']['std']['accuracy']:.2f}" in stdout
    assert cli("score", str(final_dir))[0] == 0
    assert cli("submit", str(final_dir), "-o", str(tmp_path / "submission.zip"), "--fill", "majority")[0] == 0
    code, stdout, err = cli("report", str(out), "-o", str(tmp_path / "report.html"))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert 'id="sweep1"' in page and page.count('class="best"') == 1 and "final run (seeds 1, 2, 3" in page
    assert {"sweep1_study1_history.png", "sweep1_study1_parallel.png"} <= {
        p.name for p in (tmp_path / "report_figures").iterdir()}
    again = cli(*_cbow(glue_dir, epochs=1), "--grid", "lr=1e-4,3e-3", "--final-seeds", "1,2,3", "-o", str(out))
    assert again[0] == 0 and read_json(final_dir / "run.json") == run  # the same command again: kept


def _one_error_line(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert "Traceback" not in out + err and len(lines) == 1 and lines[0].startswith("gluebench: error: "), err
    return lines[0]


BAD_SPACES = [
    ("lrr: [1e-3]\n", "'lrr' cannot be swept (allowed: "),
    ("batch_size: []\n", "'batch_size' has no values"),
    ("lr: {low: 1e-3, high: 1e-5, log: true}\n", "'lr': the range [0.001, 1e-05] is empty or inverted"),
    ("epochs: {low: 3, high: 3}\n", "'epochs': the range [3, 3] is empty or inverted"),
    ("lr: {low: 0, high: 1e-3}\n", "'lr' must be positive, got 0.0"),
    ("lr: {low: 1e-5, hi: 1e-3}\n", "'lr': a range is {low: L, high: H}"),
    ("lr: {low: 1e-5, high: 1e-3}\n", "--sampler grid: 'lr' is a range of floats"),
]


@pytest.mark.parametrize(("content", "message"), BAD_SPACES, ids=[m[:30] for _, m in BAD_SPACES])
def test_a_bad_space_is_one_line(content: str, message: str, glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(content)
    line = _one_error_line(cli(*_cbow(glue_dir), "--space", str(space), "-o", str(tmp_path / "out")))
    assert message in line, line
    assert not (tmp_path / "out").exists()


BAD_OPTIONS = [
    (["--grid", "lr=abc"], "--grid: 'lr' must be float, got 'abc'"),
    (["--final-seeds", "1,x"], "--final-seeds must be seeds such as 1,2,3"),
    (["--storage", "postgresql://gluebench:secret@127.0.0.1:1/optuna"],
     "--storage postgresql://gluebench:***@127.0.0.1:1/optuna: cannot open it ("),
    (["--storage", "postgresql://gluebench@127.0.0.1:port/optuna"], "--storage postgresql://gluebench@127.0.0.1:port"),
    (["--storage", "nosuchdb://host/optuna"], "--storage nosuchdb://host/optuna: cannot open it ("),
]


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS, ids=[" ".join(a)[:40] for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line(args: list[str], message: str, glue_dir: Path, tmp_path: Path,
                                  cli: CliRun) -> None:
    line = _one_error_line(cli(*_cbow(glue_dir), *args, "-o", str(tmp_path / "out")))
    assert message in line and "secret" not in line, line
    assert not (tmp_path / "out").exists()


def test_a_study_with_another_space_is_one_line(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    journal = tmp_path / "shared.journal"
    tiny = [*_cbow(glue_dir, examples=50, epochs=1), "--storage", str(journal), "--study", "s"]
    assert cli(*tiny, "--grid", "lr=1e-3", "-o", str(tmp_path / "one"))[0] == 0
    line = _one_error_line(cli(*tiny, "--grid", "lr=2e-3", "-o", str(tmp_path / "two")))
    assert line == (f"gluebench: error: --study s: 's.RTE' in {journal} was made with another search space "
                    "(lr: [0.001] there, [0.002] here); give another --study")
    line = _one_error_line(cli(*tiny, "--grid", "lr=1e-3", "--epochs", "2", "-o", str(tmp_path / "two")))
    assert "was made with other fixed run options (epochs: 1 there, 2 here)" in line
    assert not (tmp_path / "two").exists()
    assert "--study other: no such sweep in" in _one_error_line(
        cli("sweep", "worker", "--storage", str(journal), "--study", "other"))
    assert "no such journal file" in _one_error_line(
        cli("sweep", "worker", "--storage", str(tmp_path / "missing.journal")))


def test_a_seeded_random_sweep_draws_the_same_points_again(glue_dir: Path, tmp_path: Path, cli: CliRun) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 1e-4, high: 3e-2, log: true}\nbatch_size: [16, 32, 64]\n")

    def drawn(seed: str, name: str) -> list[dict]:
        out = tmp_path / name
        code, stdout, err = cli(*_cbow(glue_dir, examples=200, epochs=1), "--space", str(space), "--sampler",
                                "random", "--trials", "3", "--sampler-seed", seed, "-o", str(out))
        assert code == 0, stdout + err
        return [t["params"] for t in read_json(out / "sweep.json")["trials"]]

    first = drawn("7", "a")
    assert drawn("7", "b") == first and len({json.dumps(p, sort_keys=True) for p in first}) == 3
    assert drawn("8", "c") != first
