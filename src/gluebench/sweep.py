"""`gluebench sweep` on Optuna: one study per task, whose trials any number of processes and machines share.

Optuna does the searching (grid, random or TPE sampler), the pruning (median or successive halving on the dev
metric after every epoch) and the storage many workers share; gluebench adds what a GLUE sweep needs:

- The space's keys are the run options declared sweepable (`gluebench.config`), each value checked by its
  declaration; a space maps a key to a list of values or to a range ``{low, high, log, step}``.
- One study per task (``STUDY.TASK``; a multitask sweep has one for its tasks together), objective = the
  task's main dev metric (mean over the trial's seeds). Each trial is an ordinary run directory
  (``SWEEP_DIR/trials/TASK-NN-lr=...``), so score, report and submit read a trial too.
- An exact budget, each trial run once: the sweep enqueues one waiting trial ("ticket") per trial of the
  budget and workers only run tickets, which the storage hands to one worker each. A worker that dies
  (``kill -9``, a lost machine) stops its heartbeat; another worker then fails its trial and re-enqueues it
  with the same settings, and the retry resumes the trial's run directory from its checkpoint where it can
  see it. Ctrl-C or an error re-enqueues the trial too, so resuming is starting the command again.
- A pruned trial keeps what it measured: its per-epoch history (user attrs, intermediate values and the run
  directory's ``trial.json``); the run directory stays resumable.
- Storage: a journal file in the sweep directory by default (safe for many processes on one machine, where
  SQLite under parallel writers is a known failure, optuna#4002), or any Optuna RDB URL
  (``postgresql://user@host/db``) that workers on many machines share.
- ``sweep.json`` / ``sweep.md`` record every trial and the best setting per task, rewritten after each
  trial; ``final_seeds`` reruns each task's winner with those seeds as an ordinary run directory
  (``SWEEP_DIR/final/TASK``), for the mean ± std the GLUE papers report.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the journal storage has no heartbeat of its own
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from gluebench.artifacts import resolve_data_dir, runnable_tasks
from gluebench.config import RunConfig, config_from_mapping, option_spec, parse_option, run_options, value_type
from gluebench.errors import ConfigError
from gluebench.models import get_family
from gluebench.multitask import check_multitask
from gluebench.runner import run
from gluebench.runs import RunPaths, atomic_write_json, atomic_write_text, read_json
from gluebench.tasks import TASKS, resolve_tasks

Space = dict[str, BaseDistribution]
Say = Callable[[str], None]

BERT_GRID: dict[str, list[Any]] = {"lr": [2e-5, 3e-5, 5e-5], "batch_size": [16, 32], "epochs": [2, 3, 4]}
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
DEFAULT_TRIALS = 20  # per task, for the random and TPE samplers (the grid's default is every point)
JOURNAL = "study.journal"  # the default storage, in the sweep directory
GRACE = 4  # a trial whose heartbeat is this many intervals old belongs to a dead worker
TICKET = "gluebench_ticket"  # user attr of the trials the sweep enqueued (the grid point, or {})
LAUNCH_POLL = 1.0  # seconds between looks at a launched trial's checkpoint
LAUNCH_GRACE = 10.0  # seconds a pruned trial's launched processes get between SIGTERM and SIGKILL
_STUDY_KEYS = ("sampler", "pruner", "startup_trials", "heartbeat")  # what every worker of a study must share


@dataclass
class SweepSettings:
    """How a sweep searches and where its workers meet (saved in ``sweep.yaml`` and in each study)."""

    sampler: str = "grid"
    trials: int | None = None  # per task; None: every grid point, or DEFAULT_TRIALS
    pruner: str = "none"
    startup_trials: int = 5  # trials that finish before TPE and the median pruner use what they learned
    storage: str | None = None  # None: a journal file in the sweep directory
    study: str = "gluebench"
    workers: int = 1  # processes on this machine (0: only wait for `gluebench sweep worker`s elsewhere)
    final_seeds: list[int] = field(default_factory=list)
    heartbeat: int = 30  # seconds
    launch: str | None = None  # e.g. "accelerate launch --multi_gpu": each trial trains as `LAUNCH -m gluebench run`
    sampler_seed: int | None = None  # random/TPE: the first worker's sampler seed, each other worker's is offset

    def check(self) -> SweepSettings:
        if self.launch is not None:
            launch_command(self.launch)
        checks = [(self.sampler in SAMPLERS, "--sampler", f"must be one of {', '.join(SAMPLERS)}"),
                  (self.pruner in PRUNERS, "--pruner", f"must be one of {', '.join(PRUNERS)}"),
                  (self.trials is None or self.trials > 0, "--trials", "must be positive"),
                  (self.startup_trials >= 0, "--startup-trials", "must be >= 0"),
                  (self.workers >= 0, "--workers", "must be >= 0"),
                  (self.heartbeat > 0, "--heartbeat", "must be positive"),
                  (bool(self.study.strip()), "--study", "must not be empty"),
                  (all(s > 0 for s in self.final_seeds) and len(set(self.final_seeds)) == len(self.final_seeds),
                   "--final-seeds", "must be distinct positive seeds, e.g. 1,2,3")]
        for ok, name, what in checks:
            if not ok:
                raise ConfigError(f"{name} {what}")
        return self

    def budget(self, space: Space) -> int:
        if self.sampler == "grid":
            return min(self.trials or len(grid_points(space)), len(grid_points(space)))
        return self.trials or DEFAULT_TRIALS


def launch_command(text: str) -> list[str]:
    """``--launch`` as arguments, checked here so a bad one is one line before any trial starts."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"--launch {text!r}: {exc} (give a command such as "
                          "\"accelerate launch --multi_gpu\")") from exc
    if not words:
        raise ConfigError("--launch must not be empty (e.g. \"accelerate launch --multi_gpu --num_processes 2\")")
    return words


@dataclass
class Trial:
    """One trial of one study: its settings, state, run directory and dev results (mean over seeds)."""

    name: str
    task: str  # the study's tasks, e.g. "RTE" (several joined by "+" in a multitask sweep)
    number: int
    state: str  # COMPLETE, PRUNED, FAIL (a dead worker's, retried) or RUNNING
    params: dict[str, Any]
    run_dir: str
    metrics: dict[str, dict[str, float]]
    value: float | None  # the objective; a pruned trial's last reported value
    train_seconds: float
    history: list[dict[str, Any]]  # every epoch's record, with its task and seed
    intermediate_values: dict[int, float]  # what the pruner saw: the first seed's main metric per epoch
    retried_from: int | None
    worker: str | None
    distributions: dict[str, str]  # Optuna's JSON of each parameter's distribution (the report rebuilds it)


@dataclass
class SweepResult:
    root: Path
    space: dict[str, Any]  # as written in a space file
    settings: dict[str, Any]
    base_config: dict[str, Any]
    trials: list[Trial]
    best: dict[str, dict[str, Any]]  # task -> {"trial", "params", "metric", "value", "metrics"}
    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # study's tasks -> the final seeds' run


# ---- the search space ---------------------------------------------------------------------------------


def searchable() -> list[str]:
    """The run options a space may vary: declared sweepable and one value each (``multitask`` decides what
    a trial trains, so it is the sweep's, not a trial's)."""
    return [f.name for f in run_options()
            if option_spec(f).sweepable and not value_type(f.name)[1] and f.name != "multitask"]


def check_space(raw: dict[str, Any], where: str) -> Space:
    """A space from YAML-like values: ``key: [v1, v2]`` or ``key: {low, high, log, step}``, each checked."""
    allowed = searchable()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a space maps run options to lists of values or ranges, got {raw!r}")
    space: Space = {}
    for key, given in raw.items():
        if key not in allowed:
            raise ConfigError(f"{where}: {key!r} cannot be swept (allowed: {', '.join(allowed)})")
        if isinstance(given, dict):
            space[key] = _range(key, given, where)
            continue
        values = given if isinstance(given, list) else [given]
        if not values:
            raise ConfigError(f"{where}: {key!r} has no values")
        typed = [parse_option(key, value, where) for value in values]
        if len({repr(v) for v in typed}) != len(typed):
            raise ConfigError(f"{where}: {key!r} repeats a value: {values}")
        space[key] = CategoricalDistribution(typed)
    if not space:
        raise ConfigError(f"{where}: the space is empty (e.g. lr: {{low: 1e-5, high: 1e-4, log: true}})")
    return space


def _range(key: str, given: dict[str, Any], where: str) -> BaseDistribution:
    kind = value_type(key)[0]
    shape = "a range is {low: L, high: H} with optional log: true or step: S"
    if kind not in (int, float):
        raise ConfigError(f"{where}: {key!r} takes a list of values, not a range")
    if not {"low", "high"} <= set(given) or set(given) - {"low", "high", "log", "step"}:
        raise ConfigError(f"{where}: {key!r}: {shape}, got {given}")
    low, high = parse_option(key, given["low"], where), parse_option(key, given["high"], where)
    step = None if given.get("step") is None else parse_option(key, given["step"], where)
    log = given.get("log", False)
    if low is None or high is None or not isinstance(log, bool):
        raise ConfigError(f"{where}: {key!r}: {shape}, got {given}")
    if low >= high:
        raise ConfigError(f"{where}: {key!r}: the range [{low}, {high}] is empty or inverted (low must be below high)")
    try:
        return (IntDistribution(low, high, log=log, step=step or 1) if kind is int
                else FloatDistribution(low, high, log=log, step=step))
    except ValueError as exc:
        raise ConfigError(f"{where}: {key!r}: {exc}") from exc


def parse_grid(text: str) -> Space:
    """``"lr=2e-5,3e-5; batch_size=16,32"`` as a space of lists (values checked)."""
    grid: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        if not sep or not values.strip():
            raise ConfigError(f"--grid: {part!r} is not KEY=V1,V2,... (e.g. lr=2e-5,3e-5;batch_size=16,32)")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return check_space(grid, "--grid")


def load_space(path: Path) -> Space:
    """A YAML file mapping run options to lists of values or ranges."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("space file not found", path=path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the space file ({exc})", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("not valid YAML", path=path, line=mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict) or not data:
        raise ConfigError("a space file maps run options to lists of values or ranges, e.g. lr: [2e-5, 3e-5]",
                          path=path)
    return check_space(data, str(path))


def space_to_yaml(space: Space) -> dict[str, Any]:
    """The space as a space file writes it."""
    shown: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            shown[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution | FloatDistribution):
            shown[key] = {"low": dist.low, "high": dist.high, **({"log": True} if dist.log else {}),
                          **({"step": dist.step} if dist.step not in (None, 1) else {})}
    return shown


def grid_points(space: Space) -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest (an int range counts as its values)."""
    values: list[list[Any]] = []
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values.append(list(dist.choices))
        elif isinstance(dist, IntDistribution):
            values.append(list(range(dist.low, dist.high + 1, dist.step)))
        else:
            raise ConfigError(f"--sampler grid: {key!r} is a range of floats; give it a list of values or use "
                              "--sampler random or tpe")
    return [dict(zip(space, combo, strict=True)) for combo in itertools.product(*values)]


def trial_name(label: str, number: int, params: dict[str, Any]) -> str:
    shown = "_".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())
    return f"{label}-{number:02d}-{shown}".replace("/", "-").replace(":", "-")


def _suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


# ---- storage ------------------------------------------------------------------------------------------


class HeartbeatJournal(JournalStorage, BaseHeartbeat):
    """A journal storage with Optuna's heartbeat: each running trial's last beat is a system attr, and a
    trial whose beat is older than the grace period is stale (its worker is gone)."""

    def __init__(self, backend: JournalFileBackend, interval: int, grace: int,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> None:
        super().__init__(backend)
        self._interval, self._grace, self._on_stale = interval, grace, on_stale

    def record_heartbeat(self, trial_id: int) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):  # another worker already gave the trial up
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if now - t.system_attrs.get(
            "heartbeat", t.datetime_start.timestamp() if t.datetime_start else now) > self._grace]

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._on_stale


def _redacted(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def open_storage(url: str, heartbeat: int) -> BaseStorage:
    """The storage at ``url`` (an RDB URL, else a journal file's path), its stale trials retried."""
    with _quiet():
        retry = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)
    if "://" not in url:
        try:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return HeartbeatJournal(JournalFileBackend(url), heartbeat, GRACE * heartbeat, retry)
        except OSError as exc:
            raise ConfigError(f"--storage {url}: cannot open the journal file ({exc.strerror})") from exc
    engine = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}
    try:
        with _quiet():
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                              grace_period=GRACE * heartbeat, heartbeat_stale_trial_callback=retry)
    except Exception as exc:  # the URL's parser, driver or server (SQLAlchemy, psycopg, ImportError, ValueError)
        message = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
        raise ConfigError(f"--storage {_redacted(url)}: cannot open it ({message})") from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's heartbeat API is marked experimental; the version is pinned, so its warnings say nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


# ---- studies ------------------------------------------------------------------------------------------


@dataclass
class _Study:
    """One study of a sweep and what its trials need to run."""

    study: optuna.Study
    tasks: list[str]
    base: dict[str, Any]  # the fixed run options
    space: Space
    settings: SweepSettings

    @property
    def label(self) -> str:
        return "+".join(self.tasks)

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)


def _fixed(options: dict[str, Any]) -> dict[str, Any]:
    """The run options that decide a trial's result (not where it reads or writes, or how it shows progress)."""
    allowed = {f.name for f in run_options() if option_spec(f).sweepable}
    return {k: v for k, v in options.items() if k in allowed}


def _sampler(settings: SweepSettings, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of one worker: seeded ``sampler_seed + worker``, so one worker's draws repeat and several
    workers do not draw the same points."""
    seed = None if settings.sampler_seed is None else settings.sampler_seed + worker
    if settings.sampler in ("grid", "random"):
        # a grid's tickets carry their points, so its sampler never samples (Optuna's GridSampler cannot
        # stand enqueued points: its after_trial looks for a grid id they lack)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=settings.startup_trials, constant_liar=True, seed=seed)


def _pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=0)
    if settings.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _first_difference(saved: dict[str, Any], given: dict[str, Any]) -> str | None:
    for key in sorted(set(saved) | set(given)):
        if saved.get(key) != given.get(key):
            return f"{key}: {saved.get(key)!r} there, {given.get(key)!r} here"
    return None


def _open_study(storage: BaseStorage, url: str, settings: SweepSettings, base: RunConfig, space: Space,
                tasks: list[str], root: Path) -> _Study:
    """Create the study of ``tasks`` or join it (same space, fixed options and search settings), then
    enqueue the tickets the budget still lacks."""
    name = f"{settings.study}.{'+'.join(tasks)}"
    options = {k: v for k, v in base.options().items() if k != "output_dir"}
    search = {k: getattr(settings, k) for k in _STUDY_KEYS}
    with _quiet():
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                    sampler=_sampler(settings), pruner=_pruner(settings))
    saved = study.user_attrs
    if saved:
        for what, there, here in (("another search space", saved.get("space"), space_to_yaml(space)),
                                  ("other fixed run options", _fixed(saved.get("base_config", {})), _fixed(options)),
                                  ("other search settings", saved.get("search"), search)):
            if there != here:
                raise ConfigError(f"--study {settings.study}: {name!r} in {_redacted(url)} was made with {what} "
                                  f"({_first_difference(there or {}, here)}); give another --study")
    else:
        recorded = {k: v for k, v in asdict(settings).items() if k != "workers"}
        for key, value in {"sweep": settings.study, "tasks": tasks, "base_config": options,
                           "space": space_to_yaml(space), "search": search, "settings": recorded,
                           "root": str(root.resolve())}.items():
            study.set_user_attr(key, value)
    found = _Study(study, tasks, options, space, settings)
    _top_up(found, settings.budget(space))
    return found


def _top_up(study: _Study, budget: int) -> None:
    """Enqueue tickets until waiting, running and finished trials make the budget (dead workers' trials are
    retried first, so they count)."""
    with _quiet():
        optuna.storages.fail_stale_trials(study.study)
    live = [t for t in study.trials(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
            if TICKET in t.user_attrs]
    if study.settings.sampler == "grid":
        taken = [t.user_attrs[TICKET] for t in live]
        wanted = [p for p in grid_points(study.space)[:budget] if p not in taken]
    else:
        wanted = [{}] * max(0, budget - len(live))
    for point in wanted:
        study.study.enqueue_trial(point, user_attrs={TICKET: point})


def _load_studies(storage: BaseStorage, url: str, sweep_name: str, worker: int = 0) -> list[_Study]:
    """The studies of the sweep ``sweep_name`` in ``storage``, as their creator configured them (the
    sampler seeded for ``worker``)."""
    summaries = [s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                 if s.user_attrs.get("sweep") == sweep_name]
    if not summaries:
        raise ConfigError(f"--study {sweep_name}: no such sweep in {_redacted(url)} (start one with "
                          f"`gluebench sweep --storage URL --study {sweep_name} ...`)")
    studies = []
    for summary in summaries:
        attrs = summary.user_attrs
        settings = SweepSettings(**attrs["settings"])
        space = check_space(attrs["space"], f"study {summary.study_name}")
        with _quiet():
            study = optuna.load_study(study_name=summary.study_name, storage=storage,
                                      sampler=_sampler(settings, worker), pruner=_pruner(settings))
        studies.append(_Study(study, list(attrs["tasks"]), attrs["base_config"], space, settings))
    return studies


def _study_heartbeat(url: str, sweep_name: str) -> int:
    """The heartbeat interval the sweep's studies were made with (every worker must beat as often)."""
    plain: BaseStorage
    if "://" in url:
        plain = open_storage(url, 1)
    elif Path(url).is_file():
        plain = JournalStorage(JournalFileBackend(url))
    else:
        raise ConfigError(f"--storage {url}: no such journal file")
    return int(_load_studies(plain, url, sweep_name)[0].settings.heartbeat)


# ---- running trials -----------------------------------------------------------------------------------


class _Surplus(Exception):
    """A trial this worker asked for after another worker took the last ticket; it ends failed, unrun."""


class _LaunchFailed(Exception):
    """A launched trial's training ended non-zero; its trial fails (not retried by this worker) with the reason."""


def _requeue(study: optuna.Study, number: int) -> None:
    """Put a trial that failed under this worker (Ctrl-C, an error) back in the queue, as a dead worker's is."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial.state == TrialState.FAIL and TICKET in trial.user_attrs:
        with _quiet():
            RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(study, trial)


def _trial_dir(trial: optuna.Trial, root: Path, label: str, params: dict[str, Any]) -> Path:
    """A retried trial continues in its predecessor's directory (if this machine sees it); others get a new one."""
    inherited = trial.user_attrs.get("run_dir")
    name = Path(inherited).name if inherited else trial_name(label, trial.number + 1, params)
    return root / "trials" / name


def _run_one(study: _Study, root: Path, overrides: dict[str, Any], say: Say) -> None:
    """Run the next waiting trial of ``study`` (heartbeat, pruning and bookkeeping by ``study.optimize``)."""
    number: int | None = None
    trial_dir: Path | None = None

    def objective(trial: optuna.Trial) -> float:
        nonlocal number, trial_dir
        number = trial.number
        if TICKET not in trial.user_attrs:
            raise _Surplus("no waiting trial was left for this worker (another one took it)")
        params = {key: _suggest(trial, key, dist) for key, dist in study.space.items()}
        trial_dir = _trial_dir(trial, root, study.label, params)
        trial.set_user_attr("run_dir", str(trial_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if (trial_dir / "run.json").is_file():  # its worker died after the run finished: nothing to redo
            tasks = read_json(trial_dir / "run.json")["tasks"]
        else:
            resume = (trial_dir / "config.yaml").is_file()
            config = config_from_mapping({**study.base, **overrides, **params, "tasks": study.tasks,
                                          "output_dir": str(trial_dir)}, f"trial {trial_dir.name}")
            say(f"{study.label} trial {trial.number + 1}: {_shown(params)}{' (resumed)' if resume else ''}")
            history = list(trial.user_attrs.get("history", [])) if resume else []
            reporter = _Reporter(trial, study.tasks, config.seeds[0], history)
            if study.settings.launch:
                try:
                    tasks = _launched_run(study.settings.launch, config, root, trial_dir, resume, reporter)
                except _LaunchFailed as exc:
                    trial.set_user_attr("error", str(exc))
                    say(f"{study.label} trial {trial.number + 1} failed: {exc}")
                    raise
            else:
                tasks = run(config, resume=resume, report=say, on_epoch=reporter).tasks
        metrics = _trial_metrics(tasks)
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("train_seconds", sum(info.get("train_seconds", 0.0) * len(info.get("seeds", [1]))
                                                 for info in tasks.values()))
        return _objective(metrics, study.tasks)

    try:
        with _quiet():
            study.study.optimize(objective, n_trials=1, catch=(_Surplus, _LaunchFailed))
    except BaseException:
        if number is not None:
            _requeue(study.study, number)
        raise
    finally:
        if number is not None and trial_dir is not None and trial_dir.is_dir():
            done = next(t for t in study.trials() if t.number == number)
            atomic_write_json(trial_dir / "trial.json", {
                "study": study.study.study_name, "number": number, "state": done.state.name, "value": done.value,
                "params": done.params, "history": done.user_attrs.get("history", []),
                "intermediate_values": done.intermediate_values})


@dataclass
class _Reporter:
    """``on_epoch`` of a trial's run: keeps every epoch's record and reports the first seed's main metric to
    the pruner (one task per study; a multitask study is not pruned)."""

    trial: optuna.Trial
    tasks: list[str]
    first_seed: int
    history: list[dict[str, Any]]
    prune: bool = True  # False once a launched run has finished: nothing is left to save by stopping it

    def __call__(self, task: str, seed: int, record: dict[str, Any]) -> None:
        # a retry resumed from an earlier checkpoint than its predecessor's last report trains that epoch again
        key = (task, seed, record["epoch"])
        self.history[:] = [h for h in self.history if (h["task"], h["seed"], h["epoch"]) != key]
        self.history.append({"task": task, "seed": seed, **record})
        self.trial.set_user_attr("history", self.history)
        if seed != self.first_seed or len(self.tasks) > 1:
            return
        main = TASKS[task].main_metric
        self.trial.report(record[main], record["epoch"])
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"{task} epoch {record['epoch']}: {main} {record[main]:.2f}")


def _launched_run(launch: str, config: RunConfig, root: Path, trial_dir: Path, resume: bool,
                  reporter: _Reporter) -> dict[str, dict[str, Any]]:
    """Train one trial as ``LAUNCH -m gluebench run`` (e.g. data-parallel under ``accelerate launch``); its run
    summary's tasks. This process keeps beating and relays each finished epoch from the run's checkpoint to the
    pruner; a pruned trial's processes are stopped (SIGTERM, then SIGKILL) and its run directory stays resumable."""
    files = root / "launch"  # not in the trial directory: a fresh run wants its directory empty
    files.mkdir(parents=True, exist_ok=True)
    config_file = files / f"{trial_dir.name}.yaml"
    atomic_write_text(config_file, config.to_yaml())
    command = [*launch_command(launch), "-m", "gluebench", "run", "--config", str(config_file), "-o", str(trial_dir),
               *(["--resume"] if resume else [])]
    err_path = files / f"{trial_dir.name}.err"
    with open(files / f"{trial_dir.name}.log", "ab") as log_file, open(err_path, "wb") as err_file:
        try:  # its own process group: stopping it stops every process the launcher started
            process = subprocess.Popen(command, stdout=log_file, stderr=err_file, start_new_session=True,
                                       preexec_fn=_die_with_parent())
        except OSError as exc:
            raise _LaunchFailed(f"--launch {launch!r}: cannot start it ({exc.strerror or exc})") from exc
    epochs = _EpochRelay(RunPaths(trial_dir), reporter, config.seeds, config.multitask)
    pruned: optuna.TrialPruned | None = None
    try:
        while process.poll() is None:
            epochs.relay()
            time.sleep(LAUNCH_POLL)
    except optuna.TrialPruned as exc:
        pruned = exc
    finally:
        if process.poll() is None:
            _stop(process)
    finished = RunPaths(trial_dir).summary.is_file()
    if pruned is not None and not finished:
        raise pruned
    # a run that finished before the stop landed (a fast trial: its last epochs came between two looks) counts
    # as complete with everything it measured, not as pruned
    reporter.prune = False
    epochs.relay()
    if process.returncode != 0 and not finished:
        code = process.returncode
        why = _last_line(err_path) or "no message"
        raise _LaunchFailed(f"`{launch} -m gluebench run` ended with "
                            f"{'signal ' + str(-code) if code < 0 else code}: {why} (log: {err_path})")
    tasks: dict[str, dict[str, Any]] = read_json(RunPaths(trial_dir).summary)["tasks"]
    return tasks


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, the launcher gets SIGTERM when this worker dies (even ``kill -9``), so no orphan keeps training
    the trial its retry resumes; elsewhere nothing (a launcher then outlives a killed worker)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return arm


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the launched process group, SIGKILL to whatever is left after the grace period."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(LAUNCH_GRACE)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # children the launcher left behind
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(path: Path) -> str:
    """The last line of a launched run's stderr that says something (a launcher ends with rulers and blanks)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if any(c.isalnum() for c in line)]
    errors = [line for line in said if "error" in line.lower()]
    return (errors or said or [""])[-1][:300]


@dataclass
class _EpochRelay:
    """Hands each epoch a launched run has finished to the trial's reporter, once: from the seed's checkpoint
    (``state.json``) while it trains, from its ``history.json`` once the seed is done."""

    paths: RunPaths
    reporter: _Reporter
    seeds: list[int]
    multitask: bool

    def relay(self) -> None:
        for seed in self.seeds:
            for task in self.reporter.tasks:
                main = TASKS[task].main_metric
                for record in self._records(task, seed):
                    if main in record and {"task": task, "seed": seed, **record} not in self.reporter.history:
                        self.reporter(task, seed, record)

    def _records(self, task: str, seed: int) -> list[dict[str, Any]]:
        try:
            finished = self.paths.history(task, seed)
            if finished.is_file():
                return list(json.loads(finished.read_text(encoding="utf-8")))
            checkpoint = self.paths.multitask_checkpoint(seed) if self.multitask else self.paths.checkpoint(task, seed)
            state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
            return list(state["tasks"][task]["history"])
        except (OSError, ValueError, KeyError, TypeError):  # not written yet, or being replaced
            return []


def _trial_metrics(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {task: info["mean"] for task, info in tasks.items()
            if task in TASKS and TASKS[task].predicted_by is None and info.get("mean")}


def _objective(metrics: dict[str, dict[str, float]], tasks: list[str]) -> float:
    return statistics.fmean(metrics[task][TASKS[task].main_metric] for task in tasks)


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _work(studies: list[_Study], root: Path, overrides: dict[str, Any], say: Say, *, run_trials: bool) -> None:
    """Run waiting trials until none is waiting and none runs anywhere (``run_trials`` False: only wait and
    fail dead workers' trials, so they are retried elsewhere)."""
    poll = min(5.0, float(studies[0].settings.heartbeat))
    while True:
        waiting = None
        for study in studies:
            with _quiet():
                optuna.storages.fail_stale_trials(study.study)
            if waiting is None and study.trials(TrialState.WAITING):
                waiting = study
        if waiting is not None and run_trials:
            _run_one(waiting, root, overrides, say)
            _record(collect(studies, root))
            continue
        if waiting is None and not any(study.trials(TrialState.RUNNING) for study in studies):
            return
        time.sleep(poll)


# ---- results ------------------------------------------------------------------------------------------


def _trial_record(study: _Study, trial: FrozenTrial) -> Trial:
    run_dir = trial.user_attrs.get("run_dir", "")
    return Trial(
        name=Path(run_dir).name if run_dir else trial_name(study.label, trial.number + 1, trial.params),
        task=study.label, number=trial.number, state=trial.state.name, params=trial.params, run_dir=run_dir,
        metrics=trial.user_attrs.get("metrics", {}), value=trial.value,
        train_seconds=trial.user_attrs.get("train_seconds", 0.0), history=trial.user_attrs.get("history", []),
        intermediate_values=dict(trial.intermediate_values), retried_from=trial.system_attrs.get("failed_trial"),
        worker=trial.user_attrs.get("worker"),
        distributions={k: distribution_to_json(d) for k, d in trial.distributions.items()})


def pick_best(trials: list[Trial]) -> dict[str, dict[str, Any]]:
    """Per task, the finished trial with the highest dev value of the task's main metric (first on ties)."""
    best: dict[str, dict[str, Any]] = {}
    for trial in trials:
        if trial.state != TrialState.COMPLETE.name:
            continue
        for task, metrics in trial.metrics.items():
            main = TASKS[task].main_metric
            if main in metrics and (task not in best or metrics[main] > best[task]["value"]):
                best[task] = {"trial": trial.name, "params": trial.params, "metric": main, "value": metrics[main],
                              "metrics": metrics}
    return best


def _study_best(trials: list[Trial], label: str) -> Trial | None:
    """The study's best finished trial by its objective (the first on ties, as Optuna's ``best_trial``)."""
    finished = [t for t in trials if t.task == label and t.state == TrialState.COMPLETE.name and t.value is not None]
    return max(finished, key=lambda t: t.value or 0.0) if finished else None


def collect(studies: list[_Study], root: Path) -> SweepResult:
    """The sweep as its storage and its final runs stand now (tickets not yet started are left out)."""
    trials = [_trial_record(study, t) for study in studies for t in study.trials()
              if TICKET in t.user_attrs and t.state != TrialState.WAITING]
    final = {}
    for study in studies:
        summary, best = root / "final" / study.label / "run.json", _study_best(trials, study.label)
        if summary.is_file() and best is not None:
            done = read_json(summary)
            final[study.label] = {"run_dir": str(summary.parent), "trial": best.name, "params": best.params,
                                  "seeds": done["seeds"], "tasks": {
                                      task: {k: info[k] for k in ("mean", "std", "per_seed")}
                                      for task, info in done["tasks"].items()}}
    first = studies[0]
    settings = {**asdict(first.settings), "storage": first.settings.storage and _redacted(first.settings.storage)}
    return SweepResult(root, space_to_yaml(first.space), settings, first.base, trials, pick_best(trials), final)


def _table(result: SweepResult) -> str:
    lines = [f"# Sweep `{result.settings['study']}`: {len(result.trials)} trials", "",
             f"Sampler {result.settings['sampler']}, pruner {result.settings['pruner']}; space: "
             + "; ".join(f"{k} = {v}" for k, v in result.space.items()), ""]
    for label in dict.fromkeys(t.task for t in result.trials):
        tasks = label.split("+")
        keys = list(result.space)
        lines += [f"## {label}", "",
                  "| trial | state | " + " | ".join(keys) + " | epochs | "
                  + " | ".join(f"{t} ({TASKS[t].main_metric})" for t in tasks) + " |",
                  "|---|---|" + "---:|" * (len(keys) + 1 + len(tasks))]
        for trial in (t for t in result.trials if t.task == label):
            cells = []
            for task in tasks:
                value = trial.metrics.get(task, {}).get(TASKS[task].main_metric)
                if value is None and trial.state == TrialState.PRUNED.name:
                    cells.append(f"({trial.value:.2f})" if trial.value is not None else "–")
                    continue
                mark = "**" if result.best.get(task, {}).get("trial") == trial.name else ""
                cells.append("–" if value is None else f"{mark}{value:.2f}{mark}")
            epochs = len({(h["seed"], h["epoch"]) for h in trial.history})
            state = trial.state.lower() + (f" (retry of {trial.retried_from + 1})" if trial.retried_from is not None
                                           else "")
            lines.append(f"| {trial.name} | {state} | " + " | ".join(str(trial.params.get(k, "–")) for k in keys)
                         + f" | {epochs} | " + " | ".join(cells) + " |")
        lines.append("")
        final = result.final.get(label)
        if final:
            seeds = ", ".join(map(str, final["seeds"]))
            lines += [f"Final runs of the winner (seeds {seeds}, `{final['run_dir']}`): " + "; ".join(
                f"{task} {TASKS[task].main_metric} {info['mean'][TASKS[task].main_metric]:.2f} ± "
                f"{info['std'][TASKS[task].main_metric]:.2f}" for task, info in final["tasks"].items()
                if task in TASKS and TASKS[task].main_metric in info["mean"]), ""]
    lines += ["Best per task (bold above; pruned trials show their last value in brackets):", ""]
    lines += [f"- {task}: {info['metric']} {info['value']:.2f} with {_shown(info['params'])}"
              for task, info in result.best.items()]
    return "\n".join(lines) + "\n"


def _record(result: SweepResult) -> None:
    atomic_write_json(result.root / "sweep.json", {
        "base_config": result.base_config, "space": result.space, "settings": result.settings,
        "trials": [asdict(t) for t in result.trials], "best": result.best, "final": result.final,
    })
    atomic_write_text(result.root / "sweep.md", _table(result))


def _final_runs(result: SweepResult, studies: list[_Study], seeds: list[int], overrides: dict[str, Any],
                say: Say) -> None:
    """Each study's winner again with ``seeds``, as an ordinary run directory ``final/TASK`` (kept once done)."""
    for study in studies:
        best = _study_best(result.trials, study.label)
        final_dir = result.root / "final" / study.label
        if best is None or (final_dir / "run.json").is_file():
            continue
        say(f"{study.label}: the winner ({_shown(best.params)}) with seeds {', '.join(map(str, seeds))}")
        config = config_from_mapping({**study.base, **overrides, **best.params, "tasks": study.tasks,
                                      "seeds": seeds, "output_dir": str(final_dir)}, f"final run of {study.label}")
        run(config, resume=(final_dir / "config.yaml").is_file(), report=say)


# ---- the sweep and its workers ------------------------------------------------------------------------


_THIS_RUN = ("progress", "workers", "trials", "final_seeds")  # may differ when a sweep is started again


def _saved(base: RunConfig, space: Space, settings: SweepSettings) -> dict[str, Any]:
    return {"base_config": base.options(), "space": space_to_yaml(space), "settings": asdict(settings)}


def _plan_sweep_dir(base: RunConfig, space: Space, settings: SweepSettings, output_dir: Path | None,
                    resume: bool) -> tuple[Path, RunConfig, Space, SweepSettings]:
    """Where the sweep lives and what it is, nothing written yet: a
    directory holding a sweep continues it, with ``resume`` as saved, without only if the settings are the
    same. The number of workers, a new budget (``trials``) and final seeds given again are this run's."""
    if resume and output_dir is None:
        raise ConfigError("--resume needs --output-dir (the sweep directory to continue)")
    root = output_dir or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-sweep-{base.model.replace(':', '_')}"
    saved_file = root / "sweep.yaml"
    if not saved_file.is_file():
        if resume:
            raise ConfigError(f"--resume: {root} holds no sweep to resume (no sweep.yaml)")
        if root.exists() and any(root.iterdir()):
            raise ConfigError(f"--output-dir {root} is not empty; pass --resume to continue that sweep or pick "
                              "another")
        return root, base, space, settings
    saved = yaml.safe_load(saved_file.read_text(encoding="utf-8"))
    saved_base = config_from_mapping(saved["base_config"], str(saved_file))
    saved_space = check_space(saved["space"], str(saved_file))
    saved_settings = SweepSettings(**saved["settings"]).check()
    if not resume:
        mine, theirs = _saved(base, space, settings), _saved(saved_base, saved_space, saved_settings)
        for part, here in mine.items():
            there = {k: v for k, v in theirs[part].items() if k not in _THIS_RUN}
            here = {k: v for k, v in here.items() if k not in _THIS_RUN}
            if there != here:
                raise ConfigError(f"--output-dir {root} holds a sweep with other settings "
                                  f"({_first_difference(there, here)}); pass --resume to continue it as it was "
                                  "started, or pick another directory")
    saved_base.progress = base.progress
    saved_settings.workers = settings.workers
    saved_settings.trials = settings.trials or saved_settings.trials
    saved_settings.final_seeds = settings.final_seeds or saved_settings.final_seeds
    return root, saved_base, saved_space, saved_settings


def _groups(base: RunConfig, say: Say) -> list[list[str]]:
    """The tasks of each study: one per task, or all of them together in a multitask sweep."""
    family = get_family(base.model)  # an unknown model is an error before any study exists
    if base.multitask:
        check_multitask(family)
    tasks = resolve_tasks(base.tasks)
    ready, _ = runnable_tasks(base, tasks, resolve_data_dir(base, tasks), say)
    names = [spec.name for spec in ready if spec.predicted_by is None]
    return [names] if base.multitask else [[name] for name in names]


def _helpers(count: int, url: str, sweep_name: str, root: Path, say: Say) -> list[tuple[subprocess.Popen[bytes],
                                                                                         Path]]:
    """``count`` more worker processes on this machine, each logging to ``workers/worker-K.log``."""
    started = []
    for number in range(2, count + 2):
        log_path = root / "workers" / f"worker-{number}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "gluebench", "sweep", "worker", "--storage", url, "--study", sweep_name,
                 "--output-dir", str(root), "--no-progress", "--worker-number", str(number - 1)],
                stdout=log_file, stderr=subprocess.STDOUT)
        say(f"worker {number}: process {process.pid}, log {log_path}")
        started.append((process, log_path))
    return started


def sweep(base: RunConfig, space: Space | None = None, *, settings: SweepSettings | None = None,
          output_dir: Path | None = None, resume: bool = False, report: Say | None = None) -> SweepResult:
    """Search ``space`` (default: the BERT grid) for each task's best setting on dev, with ``settings.workers``
    processes here (and any `work` elsewhere on the same storage), then run each winner's final seeds."""
    say = report or (lambda _message: None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # gluebench says what happens, in its own words
    base.validate()
    settings = (settings or SweepSettings()).check()
    space = space or check_space(BERT_GRID, "grid")
    if settings.sampler == "grid":
        grid_points(space)  # a float range is an error before anything is written
    root, base, space, settings = _plan_sweep_dir(base, space, settings, output_dir, resume)
    groups = _groups(base, say)
    url = settings.storage or str(root / JOURNAL)
    storage = open_storage(url, settings.heartbeat)
    studies = [_open_study(storage, url, settings, base, space, tasks, root) for tasks in groups]
    atomic_write_text(root / "sweep.yaml", yaml.safe_dump(_saved(base, space, settings), sort_keys=False))
    say(f"sweep {settings.study!r}: {len(studies)} studies of {settings.budget(space)} trials in {_redacted(url)}; "
        f"other machines join with `gluebench sweep worker --storage URL --study {settings.study}`")
    _record(collect(studies, root))
    helpers = _helpers(max(0, settings.workers - 1), url, settings.study, root, say)
    finished = False
    try:
        _work(studies, root, {}, say, run_trials=settings.workers > 0)
        finished = True
    finally:
        for process, log_path in helpers:
            if not finished:
                process.terminate()  # its trial is retried when the sweep is started again
            code = process.wait()
            if code:
                say(f"worker process {process.pid} ended with {'signal ' + str(-code) if code < 0 else code}; "
                    f"its trial, if any, was retried (log: {log_path})")
    result = collect(studies, root)
    _record(result)
    if settings.final_seeds:
        _final_runs(result, studies, settings.final_seeds, {}, say)
        result = collect(studies, root)
        _record(result)
    return result


def work(storage: str, study: str, *, output_dir: Path | None = None, data_dir: str | None = None,
         progress: bool | None = None, launch: str | None = None, worker: int | None = None,
         report: Say | None = None) -> SweepResult:
    """Join the sweep ``study`` in ``storage`` from any machine: run its waiting trials until none is left.

    ``worker`` offsets a seeded sampler (the sweep's own helpers are 1, 2, ...); by default the process id,
    distinct from every other worker's on this machine.
    Trial directories go under ``output_dir`` (default: the sweep directory its creator recorded);
    ``data_dir``, ``progress`` and ``launch`` override the creator's for this machine (its GPUs may differ).
    """
    say = report or (lambda _message: None)
    if launch is not None:
        launch_command(launch)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    heartbeat = _study_heartbeat(storage, study)
    studies = _load_studies(open_storage(storage, heartbeat), storage, study,
                            os.getpid() if worker is None else worker)
    root = output_dir or Path(studies[0].study.user_attrs["root"])
    for each in studies:
        each.settings.launch = launch or each.settings.launch
    overrides = {k: v for k, v in {"data_dir": data_dir, "progress": progress}.items() if v is not None}
    say(f"worker {socket.gethostname()}:{os.getpid()} on sweep {study!r} ({len(studies)} studies), trials in {root}")
    _work(studies, root, overrides, say, run_trials=True)
    result = collect(studies, root)
    _record(result)
    return result

