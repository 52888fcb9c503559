"""Every usage error of every command is one line ``gluebench: error: ...`` naming the option, exit 2.

The commands and their options are read from the app itself, so a command or option added later is walked
too. None of these errors may reach a command's body (the walk fails if one does) or training.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.core
from typer.main import get_command

from gluebench.cli import app
from gluebench.cli.options import Declared, flag_of
from gluebench.config import EVALUATE_ONLY, OPTION_NAMES, option_spec, run_options, value_type
from tests.conftest import CliRun

ROOT = get_command(app)
DECLARED = {f.name: f for f in run_options()}


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every group and command under ``command``, with the words that call it."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


# a group that takes options itself (`sweep`, beside its `sweep worker`) is walked as a command too
COMMANDS = [(path, command) for path, command in _walk(ROOT) if not hasattr(command, "commands") or command.params]
GROUPS = [path for path, command in _walk(ROOT) if hasattr(command, "commands")]


def _declared_name(param: Any) -> str | None:
    """The run option a parameter was generated from (`gluebench.cli.options`), if any."""
    parser = param.type_descriptor.parameter_info.parser  # typer keeps each parameter's parsed annotation here
    return parser.name if isinstance(parser, Declared) else None


def _bad_values(param: Any) -> list[str]:
    """Values of the wrong type or outside what the option allows; none for free text."""
    name = _declared_name(param)
    if name is not None:
        kind, _ = value_type(name)
        spec = option_spec(DECLARED[name])
        bad = ["abc"] if kind in (int, float) else []
        bad += ["1.5"] if kind is int else []
        bad += ["nonexistent"] if spec.choices else []
        bad += ["0"] if spec.positive else []
        bad += [f"{spec.minimum - 1:g}"] if spec.minimum is not None else []
        bad += [f"{spec.below:g}"] if spec.below is not None else []
        bad += [""] if spec.nonempty else []
        return bad
    descriptor = param.type_descriptor
    bad = ["nonexistent"] if descriptor.choices else []
    if descriptor.annotation in (int, float):
        bad.append("abc")
        if descriptor.parameter_info.min is not None:
            bad.append(f"{descriptor.parameter_info.min - 1:g}")
    return bad


def _required(command: Any) -> list[str]:
    """Placeholders for a command's required options and arguments, so the one under test is reached."""
    words: list[str] = []
    for param in command.params:
        if param.required:
            words += [param.opts[0], "x"] if param.param_type_name == "option" else ["x"]
    return words


def _takes_value(param: Any) -> bool:
    return param.param_type_name == "option" and not param.is_flag


BAD_VALUES = [(path, command, param, value) for path, command in COMMANDS for param in command.params
              if _takes_value(param) for value in _bad_values(param)]


@pytest.fixture
def parse_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line that parsed would run the command: these tests must fail instead."""

    def ran(self: Any, ctx: Any) -> None:
        raise AssertionError(f"{ctx.command_path} {ctx.params} was accepted and ran")

    monkeypatch.setattr(typer.core.TyperCommand, "invoke", ran)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run, but one that got past its config cannot import the training code (an ImportError fails
    the test), so the errors are proven to come before training, and before torch is even imported."""
    for module in ("gluebench.runner", "gluebench.sweep"):
        monkeypatch.setitem(sys.modules, module, None)


def _one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gluebench: error: "), err
    return lines[0]


def test_the_walk_covers_every_declared_option_of_run_and_sweep() -> None:
    """Not vacuous: each declared run option with a checkable value is walked on both commands."""
    walked = {(path, _declared_name(param)) for path, _, param, _ in BAD_VALUES}
    checkable = [name for name in OPTION_NAMES if value_type(name)[0] in (int, float)
                 or option_spec(DECLARED[name]).choices or option_spec(DECLARED[name]).nonempty]
    assert {"epochs", "lr", "seeds", "tasks", "mixed_precision", "trackers", "checkpoint_steps"} <= set(checkable)
    for name in checkable:
        assert (("run",), name) in walked
        assert (("sweep",), name) in walked
    assert len(COMMANDS) >= 15 and ("analyze", "representations") in dict(COMMANDS)


@pytest.mark.parametrize(("path", "command", "param", "value"), BAD_VALUES,
                         ids=[f"{' '.join(p)} {param.opts[0]} {v!r}" for p, _, param, v in BAD_VALUES])
@pytest.mark.usefixtures("parse_only")
def test_a_bad_value_is_one_line_naming_the_option(path: tuple[str, ...], command: Any, param: Any, value: str,
                                                    cli: CliRun) -> None:
    line = _one_error_line(*cli(*path, *_required(command), param.opts[0], value))
    name = _declared_name(param)
    assert (f"option '{name}'" if name else f"'{param.opts[0]}'") in line, line


OPTIONS = [(path, command, param) for path, command in COMMANDS for param in command.params if _takes_value(param)]


@pytest.mark.parametrize(("path", "command", "param"), OPTIONS,
                         ids=[f"{' '.join(p)} {param.opts[0]}" for p, _, param in OPTIONS])
@pytest.mark.usefixtures("parse_only")
def test_an_option_without_its_value_is_one_line(path: tuple[str, ...], command: Any, param: Any,
                                                 cli: CliRun) -> None:
    line = _one_error_line(*cli(*path, *_required(command), param.opts[0]))
    assert f"'{param.opts[0]}' requires an argument" in line


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
@pytest.mark.usefixtures("parse_only")
def test_an_unknown_option_is_one_line(path: tuple[str, ...], command: Any, cli: CliRun) -> None:
    line = _one_error_line(*cli(*path, *_required(command), "--bogus-flag"))
    assert "No such option: --bogus-flag" in line


MISSING = [(path, command, param) for path, command in COMMANDS for param in command.params
           if param.required and param.param_type_name == "argument"]


@pytest.mark.parametrize(("path", "command", "param"), MISSING, ids=[f"{' '.join(p)} {q.name}" for p, _, q in MISSING])
@pytest.mark.usefixtures("parse_only")
def test_a_missing_argument_is_one_line(path: tuple[str, ...], command: Any, param: Any, cli: CliRun) -> None:
    others = [word for other in command.params if other.required and other.param_type_name == "option"
              for word in (other.opts[0], "x")]
    line = _one_error_line(*cli(*path, *others))
    assert f"Missing argument '{param.name}'" in line


@pytest.mark.parametrize("path", GROUPS, ids=[" ".join(p) or "gluebench" for p in GROUPS])
@pytest.mark.usefixtures("parse_only")
def test_an_unknown_command_is_one_line(path: tuple[str, ...], cli: CliRun) -> None:
    line = _one_error_line(*cli(*path, "frobnicate"))
    assert "No such command 'frobnicate'" in line


def test_the_installed_entry_point_prints_one_line() -> None:
    """The real process too (no in-process shortcut): typer's exception hook must not show a traceback."""
    for args, message in ((["frobnicate"], "No such command 'frobnicate'"),
                          (["run", "--epochs", "abc"], "option 'epochs' must be int, got 'abc'")):
        result = subprocess.run([sys.executable, "-m", "gluebench", *args], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"gluebench: error: {message}") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.usefixtures("parse_only")
def test_empty_tasks_is_an_error(command: str, cli: CliRun) -> None:
    line = _one_error_line(*cli(command, "--tasks", ""))
    assert "option 'tasks' must name at least one" in line


def test_every_run_option_is_on_the_command_line() -> None:
    """The options of `run` are the YAML keys, from the same declarations; `sweep` takes all but its own -o."""
    commands = dict(COMMANDS)
    for path, own in ((("run",), set()), (("sweep",), {"output_dir"})):
        params = {p.name: p for p in commands[path].params}
        for name in set(OPTION_NAMES) - own - set(EVALUATE_ONLY):
            assert flag_of(name) in params[name].opts, (path, name)
            assert _declared_name(params[name]) == name or params[name].is_flag, (path, name)


YAML_ERRORS = [
    ("model: glove-cbow\nlearning_rate: 0.1\n", "bad.yaml: unknown key 'learning_rate' (allowed: model, tasks"),
    ("epochs: three\n", "bad.yaml: 'epochs' must be int, got 'three'"),
    ("seeds: [1, x]\n", "bad.yaml: 'seeds' must be int, got 'x'"),
    ("multitask: maybe\n", "bad.yaml: 'multitask' must be bool, got 'maybe'"),
    ("lr: -0.1\n", "bad.yaml: 'lr' must be positive, got -0.1"),
    ("dropout: 1.0\n", "bad.yaml: 'dropout' must be in [0, 1), got 1.0"),
    ("mixed_precision: fp8\n", "bad.yaml: 'mixed_precision' must be one of auto, no, fp16, bf16, got 'fp8'"),
    ("tasks: []\n", "bad.yaml: 'tasks' must name at least one"),
    ("seeds: [1, 1]\n", "bad.yaml: 'seeds' repeats 1"),
    ("model: glove-cbow\nepochs: 2\n  lr: 3\n", "bad.yaml:3: not valid YAML"),
    ("- model\n- glove-cbow\n", "bad.yaml: a config file must be a mapping"),
]


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize(("content", "message"), YAML_ERRORS, ids=[m.split(": ", 1)[-1][:40] for _, m in YAML_ERRORS])
@pytest.mark.usefixtures("no_training")
def test_run_config_bad_yaml_is_one_line(command: str, content: str, message: str, tmp_path: Path,
                                         cli: CliRun) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    line = _one_error_line(*cli(command, "--config", str(bad), "-o", str(tmp_path / "out")))
    assert f"gluebench: error: {tmp_path}/{message}" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_training")
def test_a_bad_command_line_value_is_blamed_on_the_option_not_the_file(tmp_path: Path, cli: CliRun) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("model: glove-cbow\nepochs: 2\n")
    line = _one_error_line(*cli("run", "--config", str(good), "--epochs", "0"))
    assert line == "gluebench: error: option 'epochs' must be positive, got 0"
    line = _one_error_line(*cli("run", "--config", str(tmp_path / "absent.yaml")))
    assert line == f"gluebench: error: {tmp_path / 'absent.yaml'}: config file not found"
