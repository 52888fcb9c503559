"""Registry, config validation, atomic writes, run index and the basic CLI commands."""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gluebench.config import RunConfig, config_from_mapping, load_config, parse_option
from gluebench.errors import ConfigError, GluebenchError
from gluebench.runs import atomic_write_json, list_runs, register_run, run_index_path
from gluebench.tasks import GLUE_TASKS, TASKS, get_task, resolve_tasks
from tests.conftest import CliRun
from tests.faults import file_size_limit

CLI = [sys.executable, "-m", "gluebench"]


def test_registry_has_the_nine_tasks_and_ax() -> None:
    assert GLUE_TASKS == ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI")
    assert not TASKS["AX"].in_glue_score
    assert TASKS["MNLI"].metric_keys == ("accuracy_matched", "accuracy_mismatched")
    assert TASKS["STS-B"].is_regression and TASKS["STS-B"].num_labels == 1
    server_files = [f for t in TASKS.values() for f in t.test_files.values()]
    assert len(server_files) == 11 and "MNLI-mm.tsv" in server_files


@pytest.mark.parametrize(("alias", "name"), [("sst2", "SST-2"), ("STS-B", "STS-B"), ("mnli", "MNLI"), ("ax", "AX")])
def test_task_aliases(alias: str, name: str) -> None:
    assert get_task(alias).name == name


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(GluebenchError, match=r"unknown task 'colaa'.*CoLA"):
        resolve_tasks("CoLA,colaa")


def test_config_file_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: glove-cbow\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'learning_rate' \(allowed: model, tasks"):
        load_config(path)
    path.write_text("lr: -0.1\n")
    with pytest.raises(ConfigError, match="'lr' must be positive"):
        load_config(path)
    path.write_text("epochs: three\n")
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        load_config(path)
    path.write_text("model: glove-cbow\ntasks: [RTE, WNLI]\nseeds: [1, 2]\nlr: 0.001\n")
    config = load_config(path, {"epochs": 2})
    assert (config.tasks, config.seeds, config.lr, config.epochs) == (["RTE", "WNLI"], [1, 2], 0.001, 2)


def test_config_coerces_cli_strings() -> None:
    config = config_from_mapping({"seeds": "1,2,3", "tasks": "CoLA,RTE"})
    assert config.seeds == [1, 2, 3] and config.tasks == ["CoLA", "RTE"]
    assert RunConfig().model == "glove-bilstm"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("epochs", True, "'epochs' must be int, got True"),
    ("epochs", 2.0, "'epochs' must be int, got 2.0"),
    ("epochs", "--5", "'epochs' must be int, got '--5'"),
    ("lr", "nan", "'lr' must be float, got 'nan'"),
    ("lr", float("inf"), "'lr' must be float, got inf"),
    ("weight_decay", None, "'weight_decay' must be float, got None"),
    ("model", 5, "'model' must be str, got 5"),
    ("seeds", 1, "'seeds' must be a list, got 1"),
    ("tasks", " , ", "'tasks' must name at least one value"),
    ("trackers", "wandb,wandb", "'trackers' repeats 'wandb'"),
])
def test_config_refuses_what_it_cannot_take_losslessly(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"run.yaml: {message}")):
        config_from_mapping({key: value}, "run.yaml")
    assert parse_option("lr", "3e-5") == 3e-5 and parse_option("epochs", " 3 ") == 3


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    earlier = target.read_bytes()
    with pytest.raises(TypeError):  # fails before any file is opened
        atomic_write_json(target, {"a": object()})
    assert target.read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    # fails in the middle of write(): the temporary file exists and holds the first 4 KiB of 1 MB
    bigger = {"a": 2, "rows": ["x" * 1000] * 1000}
    with file_size_limit(4096), pytest.raises(GluebenchError, match=r"out\.json: cannot write file \(File too large\)"):
        atomic_write_json(target, bigger)
    assert target.read_bytes() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    atomic_write_json(target, bigger)  # with room, the same write replaces the file whole
    assert json.loads(target.read_text()) == bigger


def test_atomic_write_to_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    """/proc refuses new files even to root, like a read-only mount; a file as parent is another way to fail."""
    with pytest.raises(GluebenchError, match=r"^/proc/gluebench: cannot write here"):
        atomic_write_json(Path("/proc/gluebench/x.json"), {})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GluebenchError, match="cannot write here"):
        atomic_write_json(blocker / "x.json", {})


def _register_many(args: tuple[str, int]) -> None:
    cache, worker = args
    import os

    os.environ["GLUEBENCH_CACHE"] = cache
    for i in range(15):
        register_run({"run_dir": f"/tmp/run-{worker}-{i}", "model": "m", "tasks": [], "seeds": [1]})


def test_run_index_write_failing_midway_keeps_every_entry(isolated_cache: Path) -> None:
    ids = [register_run({"run_dir": f"/tmp/run-{i}", "model": "m", "tasks": ["RTE"], "seeds": [1]}) for i in range(3)]
    index = run_index_path()
    earlier = index.read_bytes()
    entry = {"run_dir": "/tmp/run-new", "model": "m", "tasks": ["RTE"], "seeds": [1]}
    # the new index is longer than the old one: its write fails after the old one's length in bytes
    too_large = r"runs\.json: cannot write file \(File too large"
    with file_size_limit(len(earlier)), pytest.raises(GluebenchError, match=too_large):
        register_run(entry)
    assert index.read_bytes() == earlier
    assert [p.name for p in index.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert [e["id"] for e in list_runs()] == ids == ["r1", "r2", "r3"]
    assert register_run(entry) == "r4"  # with room again, the index goes on where it was


def test_concurrent_runs_do_not_corrupt_the_index(isolated_cache: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_register_many, [(str(isolated_cache), w) for w in range(4)])
    entries = list_runs()
    assert len(entries) == 60
    assert len({e["id"] for e in entries}) == 60


def test_cli_tasks_lists_every_task(cli: CliRun) -> None:
    code, out, err = cli("tasks")
    assert code == 0, err
    for name in TASKS:
        assert name in out
    assert "392,702" in out  # MNLI train size


def test_cli_show_prints_real_examples(glue_dir: Path, cli: CliRun) -> None:
    code, out, err = cli("show", "CoLA", "-n", "3", "--data-dir", str(glue_dir))
    assert code == 0, err
    assert "The sailors rode the breeze clear of the rocks." in out


def test_cli_score_full_and_partial(tmp_path: Path, cli: CliRun) -> None:
    from tests.test_metrics import BERT_LARGE

    full = tmp_path / "full.json"
    full.write_text(json.dumps(BERT_LARGE))
    code, out, err = cli("score", str(full))
    assert code == 0, err
    assert "80.5" in out and "partial" not in out
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"CoLA": {"mcc": 30.0}, "RTE": {"accuracy": 60.0}}))
    assert "45.0 (partial, 2/9 tasks)" in cli("score", str(part))[1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "bad.json:1: not valid JSON"),
        ('{"CoLA": {"accuracy": 50}}', "CoLA has no metric 'accuracy'"),
        ('{"Cola2": {"mcc": 50}}', "unknown task 'Cola2'"),
    ],
)
def test_cli_score_bad_file_is_one_line_error(tmp_path: Path, content: str, message: str, cli: CliRun) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = cli("score", str(bad))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_real_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    """The installed `python -m gluebench` process itself: one line on stderr, exit 2."""
    result = subprocess.run([*CLI, "score", str(tmp_path / "absent.json")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"gluebench: error: {tmp_path / 'absent.json'}: file not found"


def test_cli_run_rejects_unknown_model_and_bad_option(tmp_path: Path, cli: CliRun) -> None:
    code, _, err = cli("run", "--model", "glove-xl", "-o", str(tmp_path / "r"))
    assert code == 2 and "unknown model 'glove-xl'" in err
    code, _, err = cli("run", "--lr", "-1", "-o", str(tmp_path / "r"))
    assert code == 2 and "'lr' must be positive" in err
    assert not (tmp_path / "r").exists()
