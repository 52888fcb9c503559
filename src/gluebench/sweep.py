"""`gluebench sweep`: a hyperparameter grid, one run per setting, the best setting per task on dev.

Each trial is an ordinary run directory (``SWEEP_DIR/trials/NN-lr=...``), so everything that reads runs
(score, report, submit) reads a trial too. ``sweep.json`` records every trial's settings and dev results and
the winner per task, rewritten after each trial so an interrupted sweep keeps what it finished; ``--resume``
skips finished trials and continues an unfinished one from its checkpoint. ``sweep.md`` is the same as a
table. The default grid is the BERT paper's: lr {2e-5, 3e-5, 5e-5} x batch {16, 32} x epochs {2, 3, 4}.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gluebench.config import RunConfig, config_from_mapping, option_spec, parse_option, run_options
from gluebench.errors import ConfigError
from gluebench.runner import run
from gluebench.runs import atomic_write_json, atomic_write_text, read_json
from gluebench.tasks import TASKS

BERT_GRID: dict[str, list[Any]] = {"lr": [2e-5, 3e-5, 5e-5], "batch_size": [16, 32], "epochs": [2, 3, 4]}


@dataclass
class Trial:
    """One grid point: its settings, its run directory and its dev results (mean over seeds) per task."""

    name: str
    params: dict[str, Any]
    run_dir: str
    metrics: dict[str, dict[str, float]]
    train_seconds: float  # summed over tasks and seeds


@dataclass
class SweepResult:
    root: Path
    grid: dict[str, list[Any]]
    trials: list[Trial]
    best: dict[str, dict[str, Any]]  # task -> {"trial", "params", "metric", "value", "metrics"}


def parse_grid(text: str) -> dict[str, list[Any]]:
    """``"lr=2e-5,3e-5; batch_size=16,32"`` to ``{"lr": [2e-5, 3e-5], "batch_size": [16, 32]}`` (values checked)."""
    grid: dict[str, list[Any]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        if not sep or not values.strip():
            raise ConfigError(f"--grid: {part!r} is not KEY=V1,V2,... (e.g. lr=2e-5,3e-5;batch_size=16,32)")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return check_grid(grid, "--grid")


def load_grid(path: Path) -> dict[str, list[Any]]:
    """A YAML mapping of run options to lists of values (a single value is a list of one)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("grid file not found", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("not valid YAML", path=path, line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError("a grid file must map run options to lists of values, e.g. lr: [2e-5, 3e-5]", path=path)
    return check_grid({k: v if isinstance(v, list) else [v] for k, v in data.items()}, str(path))


def check_grid(grid: dict[str, list[Any]], where: str) -> dict[str, list[Any]]:
    """Every key a run option declared sweepable, every value checked as that option, no empty or repeated lists."""
    allowed = [f.name for f in run_options() if option_spec(f).sweepable]
    checked: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if key not in allowed:
            raise ConfigError(f"{where}: {key!r} cannot be swept (allowed: {', '.join(allowed)})")
        if not values:
            raise ConfigError(f"{where}: {key!r} has no values")
        typed = [parse_option(key, value, where) for value in values]
        if len({repr(v) for v in typed}) != len(typed):
            raise ConfigError(f"{where}: {key!r} repeats a value: {values}")
        checked[key] = typed
    return checked


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def trial_name(number: int, params: dict[str, Any]) -> str:
    shown = "_".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())
    return f"{number:02d}-{shown}".replace("/", "-").replace(":", "-")


def pick_best(trials: list[Trial]) -> dict[str, dict[str, Any]]:
    """Per task, the trial with the highest mean dev value of the task's main metric (first one on ties)."""
    best: dict[str, dict[str, Any]] = {}
    for trial in trials:
        for task, metrics in trial.metrics.items():
            main = TASKS[task].main_metric
            if main in metrics and (task not in best or metrics[main] > best[task]["value"]):
                best[task] = {"trial": trial.name, "params": trial.params, "metric": main, "value": metrics[main],
                              "metrics": metrics}
    return best


def _table(result: SweepResult) -> str:
    tasks = sorted({task for trial in result.trials for task in trial.metrics})
    lines = [f"# Sweep ({len(result.trials)} trials)", "",
             "Grid: " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in result.grid.items()), "",
             "| trial | " + " | ".join(f"{t} ({TASKS[t].main_metric})" for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
    for trial in result.trials:
        cells = []
        for task in tasks:
            value = trial.metrics.get(task, {}).get(TASKS[task].main_metric)
            mark = "**" if result.best.get(task, {}).get("trial") == trial.name else ""
            cells.append("–" if value is None else f"{mark}{value:.2f}{mark}")
        lines.append(f"| {trial.name} | " + " | ".join(cells) + " |")
    lines += ["", "Best per task (bold above):", ""]
    lines += [f"- {task}: {info['metric']} {info['value']:.2f} with "
              + ", ".join(f"{k}={v}" for k, v in info["params"].items()) for task, info in result.best.items()]
    return "\n".join(lines) + "\n"


def _record(result: SweepResult, base: RunConfig) -> None:
    atomic_write_json(result.root / "sweep.json", {
        "base_config": base.options(), "grid": result.grid, "trials": [asdict(t) for t in result.trials],
        "best": result.best,
    })
    atomic_write_text(result.root / "sweep.md", _table(result))


def _open_sweep_dir(base: RunConfig, grid: dict[str, list[Any]], output_dir: Path | None,
                    resume: bool) -> tuple[Path, RunConfig, dict[str, list[Any]]]:
    """Create the sweep directory, or reopen it on resume (the saved base config and grid win)."""
    if resume:
        if output_dir is None:
            raise ConfigError("--resume needs --output-dir (the sweep directory to continue)")
        saved_file = output_dir / "sweep.yaml"
        if not saved_file.is_file():
            raise ConfigError(f"--resume: {output_dir} holds no sweep to resume (no sweep.yaml)")
        saved = yaml.safe_load(saved_file.read_text(encoding="utf-8"))
        saved_base = config_from_mapping(saved["base_config"], str(saved_file))
        saved_base.progress = base.progress
        return output_dir, saved_base, check_grid(saved["grid"], str(saved_file))
    root = output_dir or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-sweep-{base.model.replace(':', '_')}"
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"--output-dir {root} is not empty; pass --resume to continue that sweep or pick another")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "sweep.yaml", yaml.safe_dump({"base_config": base.options(), "grid": grid},
                                                          sort_keys=False))
    return root, base, grid


def sweep(base: RunConfig, grid: dict[str, list[Any]] | None = None, *, output_dir: Path | None = None,
          resume: bool = False, report: Callable[[str], None] | None = None) -> SweepResult:
    """Run ``base`` once per grid point (default: the BERT grid) and pick the best setting per task on dev."""
    say = report or (lambda _message: None)
    base.validate()
    root, base, grid = _open_sweep_dir(base, check_grid(grid or BERT_GRID, "grid"), output_dir, resume)
    points = expand(grid)
    say(f"sweep of {len(points)} trials in {root}")
    result = SweepResult(root, grid, [], {})
    for number, params in enumerate(points, start=1):
        name = trial_name(number, params)
        trial_dir = root / "trials" / name
        config = config_from_mapping({**base.options(), **params, "output_dir": str(trial_dir)}, f"trial {name}")
        if (trial_dir / "run.json").is_file():
            say(f"trial {number}/{len(points)} {name}: already done, kept")
            summary_tasks = read_json(trial_dir / "run.json")["tasks"]
        else:
            say(f"trial {number}/{len(points)} {name}")
            summary = run(config, resume=(trial_dir / "config.yaml").is_file(), report=say)
            summary_tasks = summary.tasks
        metrics = {task: info["mean"] for task, info in summary_tasks.items()
                   if task in TASKS and TASKS[task].predicted_by is None and info.get("mean")}
        seconds = sum(info.get("train_seconds", 0.0) * len(info.get("seeds", [1])) for info in summary_tasks.values())
        result.trials.append(Trial(name, params, str(trial_dir), metrics, seconds))
        result.best = pick_best(result.trials)
        _record(result, base)
    return result
