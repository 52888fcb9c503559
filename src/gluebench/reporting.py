"""One self-contained HTML page about one or more runs: tables, plots, config and timing.

Reporting only reads run directories (never retrains). A run that is part of a sweep (a trial or a final
run: ``SWEEP_DIR/trials/NAME``, ``SWEEP_DIR/final/TASK``), or a sweep directory given instead of a run,
adds a sweep section read from its ``sweep.json``: every trial, Optuna's optimization history, parameter
importances and parallel coordinates, drawn from a study rebuilt in memory (the sweep's storage may be a
server this machine cannot reach). A run compared in the representation study (`gluebench analyze
representations --study` leaves ``analysis/representations/study.json`` in it) adds the study's section:
the 2 x 2 table, dev scores per condition and its two figures. Every figure is drawn with matplotlib's Agg canvas,
written as a PNG beside the page and embedded in it as base64, and the page carries a Content-Security-
Policy that forbids any network load, so it opens the same from a mail attachment as from disk.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.distributions import json_to_distribution
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState, create_trial
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import confusion_matrix

from gluebench.data.read import iter_rows
from gluebench.errors import GluebenchError
from gluebench.leaderboard import BOARD_TASKS, Entry, entry_from_run, human_baseline, sources, standing
from gluebench.runs import RunPaths, atomic_write_bytes, atomic_write_text, now_iso, read_json
from gluebench.submission import best_dev_seed
from gluebench.tasks import TASKS, TaskSpec
from gluebench.version import __version__

HUMAN_COLOR = "#d62728"
RUN_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


@dataclass
class RunData:
    """Everything the report shows about one run, read once from its directory."""

    root: Path
    summary: dict[str, Any]
    entry: Entry
    config_text: str
    paths: RunPaths = field(init=False)

    def __post_init__(self) -> None:
        self.paths = RunPaths(self.root)

    @property
    def label(self) -> str:
        return self.entry.name

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return {t: info for t, info in self.summary.get("tasks", {}).items() if t in TASKS}

    def seed_for(self, task: str) -> int:
        """The seed shown in per-example plots: the best dev seed, as `gluebench submit` uses."""
        spec = TASKS[task]
        if spec.predicted_by and spec.predicted_by in self.tasks:
            return self.seed_for(spec.predicted_by)
        return best_dev_seed(spec, self.tasks[task])

    def history(self, task: str, seed: int) -> list[dict[str, Any]]:
        path = self.paths.history(task, seed)
        return read_json(path) if path.is_file() else []

    def dev_predictions(self, task: str, seed: int, split: str) -> tuple[list[str], list[str]] | None:
        """``(predictions, gold)`` of a dev split, or None when the run did not write it."""
        path = self.paths.predictions(task, seed, split)
        if not path.is_file():
            return None
        predictions, gold = [], []
        for _, fields in iter_rows(path, header=True):
            if len(fields) >= 3:
                predictions.append(fields[1])
                gold.append(fields[2])
        return predictions, gold


def load_run(run_dir: Path) -> RunData:
    paths = RunPaths(Path(run_dir))
    if not paths.summary.is_file():
        raise GluebenchError("not a finished gluebench run (no run.json)", path=run_dir)
    config_text = paths.config.read_text(encoding="utf-8") if paths.config.is_file() else "(no config.yaml)"
    return RunData(Path(run_dir), read_json(paths.summary), entry_from_run(Path(run_dir)), config_text)


# ---- figures ---------------------------------------------------------------------------------------


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def bar_chart(runs: Sequence[RunData]) -> bytes:
    """Per task: each run's dev task score next to the human baseline's test score (highlighted)."""
    human = human_baseline()
    tasks = [t for t in BOARD_TASKS if any(r.entry.task_score(t) is not None for r in runs)]
    groups = [*runs, None]  # None: the human baseline
    width = 0.8 / len(groups)
    figure = Figure(figsize=(max(6.0, 1.1 * len(tasks) + 2), 4.2))
    axes = figure.add_subplot()
    x = np.arange(len(tasks))
    for offset, run in enumerate(groups):
        is_human = run is None
        entry = human if run is None else run.entry
        values = [entry.task_score(t) for t in tasks]
        heights = [np.nan if v is None else v for v in values]
        label = "Human baseline (test)" if is_human else f"{entry.name} (dev)"
        color = HUMAN_COLOR if is_human else RUN_COLORS[offset % len(RUN_COLORS)]
        bars = axes.bar(x + (offset - (len(groups) - 1) / 2) * width, heights, width, label=label, color=color,
                        edgecolor="black" if is_human else color, hatch="//" if is_human else None,
                        linewidth=1.2 if is_human else 0.5)
        for bar, value, task in zip(bars, values, tasks, strict=True):
            if value is None:
                continue
            beats = not is_human and (h := human.task_score(task)) is not None and value > h
            axes.annotate(f"{value:.1f}{' ★' if beats else ''}", (bar.get_x() + bar.get_width() / 2, max(value, 0)),
                          ha="center", va="bottom", fontsize=7, rotation=90 if len(groups) > 2 else 0)
    axes.set_xticks(x, tasks)
    axes.set_ylabel("task score (mean of its metrics, ×100)")
    axes.set_ylim(min(0.0, *(v for r in groups for t in tasks
                             if (v := (human if r is None else r.entry).task_score(t)) is not None)) - 5, 112)
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_title("Task scores: runs (dev) vs the GLUE human baseline (test); ★ = above human")
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(len(groups), 4), frameon=False)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def training_curves(run: RunData) -> bytes | None:
    """Per task: train loss and dev metrics per epoch, one line per seed."""
    tasks = [t for t in run.tasks if any(run.history(t, s) for s in run.tasks[t]["seeds"])]
    if not tasks:
        return None
    figure = Figure(figsize=(10, 2.6 * len(tasks)))
    grid = figure.subplots(len(tasks), 2, squeeze=False)
    for row, task in enumerate(tasks):
        spec = TASKS[task]
        loss_axes, metric_axes = grid[row]
        for number, seed in enumerate(run.tasks[task]["seeds"]):
            history = run.history(task, seed)
            epochs = [h["epoch"] for h in history]
            color = RUN_COLORS[number % len(RUN_COLORS)]
            loss_axes.plot(epochs, [h["train_loss"] for h in history], marker="o", color=color, label=f"seed {seed}")
            for key in spec.metric_keys:
                style = "-" if key == spec.main_metric else "--"
                metric_axes.plot(epochs, [h.get(key, np.nan) for h in history], style, marker="o", color=color,
                                 label=f"{key}, seed {seed}")
        loss_axes.set_title(f"{task}: train loss")
        metric_axes.set_title(f"{task}: dev {'/'.join(spec.metric_keys)}")
        for axes in (loss_axes, metric_axes):
            axes.set_xlabel("epoch")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=7)
            axes.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    return _png(figure)


def _classification_panels(run: RunData) -> list[tuple[str, TaskSpec, list[str], list[str]]]:
    panels = []
    for task in run.tasks:
        spec = TASKS[task]
        if spec.is_regression:
            continue
        seed = run.seed_for(task)
        for split in spec.dev_splits:
            found = run.dev_predictions(task, seed, split)
            if found:
                name = task if split == "dev" else f"{task} {split}"
                panels.append((f"{name} (seed {seed})", spec, *found))
    return panels


def confusion_matrices(run: RunData) -> bytes | None:
    """One confusion matrix per classification task and dev split (the best dev seed's predictions)."""
    panels = _classification_panels(run)
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.8 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat[len(panels):]:
        axes.set_visible(False)
    for axes, (title, spec, predictions, gold) in zip(grid.flat, panels, strict=False):
        labels = list(spec.labels or ())
        matrix = confusion_matrix(gold, predictions, labels=labels)
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        short = [label.replace("_", " ") for label in labels]
        axes.set_xticks(range(len(labels)), short, fontsize=8, rotation=20)
        axes.set_yticks(range(len(labels)), short, fontsize=8)
        axes.set_xlabel("predicted")
        axes.set_ylabel("gold")
        axes.set_title(title, fontsize=9)
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            axes.text(j, i, str(count), ha="center", va="center", fontsize=9,
                      color="white" if count > threshold else "black")
    figure.tight_layout()
    return _png(figure)


def regression_scatter(run: RunData, task: str) -> bytes | None:
    """A regression task (STS-B): predicted vs gold score on dev, with the y = x line and both correlations."""
    spec = TASKS[task]
    seed = run.seed_for(task)
    found = run.dev_predictions(task, seed, next(iter(spec.dev_splits)))
    if not found or spec.label_range is None:
        return None
    low, high = spec.label_range
    margin = (high - low) / 50
    predicted = np.array([float(p) for p in found[0]])
    gold = np.array([float(g) for g in found[1]])
    figure = Figure(figsize=(4.8, 4.6))
    axes = figure.add_subplot()
    axes.scatter(gold, predicted, s=6, alpha=0.4, color=RUN_COLORS[0])
    axes.plot([low, high], [low, high], color="black", linewidth=0.8, label="y = x")
    constant = np.ptp(predicted) == 0 or np.ptp(gold) == 0
    pearson = 0.0 if constant else float(pearsonr(predicted, gold)[0])
    spearman = 0.0 if constant else float(spearmanr(predicted, gold)[0])
    axes.set_title(f"{task} dev (seed {seed}): Pearson {100 * pearson:.1f}, Spearman {100 * spearman:.1f}", fontsize=9)
    axes.set_xlabel("gold score")
    axes.set_ylabel("predicted score")
    axes.set_xlim(low - margin, high + margin)
    axes.set_ylim(low - margin, high + margin)
    axes.set_aspect("equal")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _png(figure)


def _scatter_sections(run: RunData, slug: str, emit: Callable[[bytes | None, str, str, str], str]) -> list[str]:
    """One predicted-vs-gold figure per regression task of the run (``run1_stsb_scatter.png``)."""
    tasks = [t for t in run.tasks if TASKS[t].is_regression]
    if not tasks:
        return ["<h3>Regression tasks: predicted vs gold</h3>",
                '<p class="note">No regression task was trained in this run.</p>']
    sections = []
    for task in tasks:
        file_slug = task.lower().replace("-", "").replace(".", "")
        sections += [f"<h3>{_e(task)}: predicted vs gold</h3>",
                     emit(regression_scatter(run, task), f"{slug}_{file_slug}_scatter.png", f"{task} scatter plot",
                          "Dev predictions of the best dev seed against the gold score.")
                     or f'<p class="note">{_e(task)} wrote no dev predictions.</p>']
    return sections


# ---- sweeps ------------------------------------------------------------------------------------------


@dataclass
class SweepData:
    """A sweep directory's record (``sweep.json``), read once."""

    root: Path
    record: dict[str, Any]

    def studies(self) -> dict[str, list[dict[str, Any]]]:
        """Each study's trials, by the study's tasks (e.g. ``RTE``, or ``RTE+MRPC`` for a multitask sweep)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for trial in self.record.get("trials", []):
            found.setdefault(trial["task"], []).append(trial)
        return found

    def final_runs(self) -> list[Path]:
        return [Path(f["run_dir"]) for f in self.record.get("final", {}).values()
                if (Path(f["run_dir"]) / "run.json").is_file()]


def load_sweep(root: Path) -> SweepData:
    path = Path(root) / "sweep.json"
    if not path.is_file():
        raise GluebenchError("neither a finished gluebench run (no run.json) nor a sweep (no sweep.json)", path=root)
    return SweepData(Path(root), read_json(path))


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep directory a trial or final run belongs to (``SWEEP/trials/NAME``, ``SWEEP/final/TASK``)."""
    root = Path(run_dir).resolve().parent.parent
    return root if (root / "sweep.json").is_file() and Path(run_dir).resolve().parent.name in ("trials", "final") \
        else None


def _rebuilt_study(trials: list[dict[str, Any]]) -> optuna.Study:
    """An in-memory study holding the finished and pruned trials, for Optuna's plots."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory"
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        if trial["state"] not in (TrialState.COMPLETE.name, TrialState.PRUNED.name):
            continue
        complete = trial["state"] == TrialState.COMPLETE.name
        study.add_trial(create_trial(
            state=TrialState[trial["state"]], value=trial["value"] if complete else None, params=trial["params"],
            distributions={k: json_to_distribution(v) for k, v in trial["distributions"].items()},
            intermediate_values={int(k): v for k, v in trial.get("intermediate_values", {}).items()}))
    return study


@contextlib.contextmanager
def _optuna_plot() -> Iterator[None]:
    """Optuna's matplotlib plots draw on pyplot's figures in their own style: the figures made inside are
    closed and the style is undone on the way out, so the run figures keep theirs."""
    before = set(plt.get_fignums())
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # matplotlib on a parameter with one value: nothing to act on
        try:
            yield
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)


def sweep_figures(trials: list[dict[str, Any]], metric: str) -> list[tuple[str, str, bytes]]:
    """(slug, caption, PNG) of the study's optimization history, parameter importances, parallel coordinates
    and per-epoch values; a plot Optuna cannot draw for these trials (too few, one value each) is left out."""
    study = _rebuilt_study(trials)
    finished = len(study.get_trials(states=(TrialState.COMPLETE,)))
    plots: list[tuple[str, str, Callable[[], Any], bool]] = [
        ("history", f"Dev {metric} of every finished trial in the order they ran, and the best so far.",
         lambda: optuna.visualization.matplotlib.plot_optimization_history(study, target_name=metric),
         finished >= 1),
        ("importances", "How much each parameter explains the dev metric (fANOVA over the finished trials).",
         lambda: optuna.visualization.matplotlib.plot_param_importances(study), finished >= 2),
        ("parallel", "Each finished trial's settings and dev metric, one line per trial.",
         lambda: optuna.visualization.matplotlib.plot_parallel_coordinate(study, target_name=metric),
         finished >= 2),
        ("epochs", f"Dev {metric} after each epoch (first seed), pruned trials included: what the pruner saw.",
         lambda: optuna.visualization.matplotlib.plot_intermediate_values(study),
         any(t.intermediate_values for t in study.trials)),
    ]
    figures = []
    for slug, caption, draw, drawable in plots:
        if not drawable:
            continue
        with _optuna_plot():
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. importances when no parameter varies
                continue
            figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).figure
            figures.append((slug, caption, _png(figure)))
    return figures


# ---- HTML --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #222; line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.human td { background: #fdecea; font-weight: 600; }
.beats { color: #0a7a2f; font-weight: 700; }
.split { font-size: .75rem; color: #555; border: 1px solid #aaa; border-radius: 3px; padding: 0 .25rem; }
.note { color: #555; font-size: .85rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; }
pre { background: #f7f7f7; padding: .7rem; overflow-x: auto; font-size: .8rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[str], css_class: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _figure(png: bytes, file_name: str, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}" data-file="{_e(file_name)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _tasks_table() -> str:
    """The GLUE task summary: what each task is, its sizes, metrics and labels."""
    rows = []
    for spec in TASKS.values():
        sizes = {kind: "/".join(f"{s.rows:,}" for s in spec.splits if s.name == kind or s.name.startswith(kind + "_"))
                 for kind in ("train", "dev", "test")}
        labels = "score 0–5" if spec.is_regression else ", ".join(spec.labels or ())
        rows.append(
            f"<tr><td>{_e(spec.name)}</td><td>{'pair' if spec.is_pair else 'single'}</td>"
            f'<td class="num">{sizes["train"] or "–"}</td><td class="num">{sizes["dev"] or "–"}</td>'
            f'<td class="num">{sizes["test"] or "–"}</td><td>{_e("/".join(spec.metrics))}</td>'
            f"<td>{_e(labels)}</td><td>{_e(spec.domain)}</td><td>{_e(spec.description)}</td></tr>")
    return _table(("task", "type", "train", "dev", "test", "metrics", "labels", "domain", "question"), rows)


def _overview_table(runs: Sequence[RunData]) -> str:
    """One row per run plus the human baseline: score and every task score, human-beating cells marked."""
    human = human_baseline()
    rows = [
        f'<tr class="human"><td>{_e(human.name)} <span class="split">test</span></td>'
        f'<td class="num">{_e(human.score_label)}</td>'
        + "".join(f'<td class="num">{_e(human.cell(t))}</td>' for t in BOARD_TASKS) + "</tr>"
    ]
    for run in runs:
        cells = []
        for task in BOARD_TASKS:
            score, human_score = run.entry.task_score(task), human.task_score(task)
            beats = score is not None and human_score is not None and score > human_score
            css = "num beats" if beats else "num"
            cells.append(f'<td class="{css}" data-task="{_e(task)}">{_e(run.entry.cell(task))}'
                         f'{" ★" if beats else ""}</td>')
        rows.append(f'<tr class="run"><td>{_e(run.label)} <span class="split">dev</span></td>'
                    f'<td class="num" data-score="{run.entry.score}">{_e(run.entry.score_label)}</td>'
                    + "".join(cells) + "</tr>")
    return _table(("model", "GLUE score", *BOARD_TASKS), rows, "overview")


def _results_table(run: RunData) -> str:
    """Per task: each metric's mean ± std over seeds, the task score, and where it stands among published rows."""
    where = standing(run.entry)
    rows = []
    for task, info in run.tasks.items():
        spec = TASKS[task]
        seeds = info["seeds"]
        spread = {key: f" ± {info['std'][key]:.1f}" if len(seeds) > 1 else "" for key in info["mean"]}
        metrics = "<br>".join(
            f'<span class="metric" data-task="{_e(task)}" data-metric="{_e(key)}" data-mean="{info["mean"][key]!r}">'
            f'{_e(key)} {info["mean"][key]:.1f}{spread[key]}</span>'
            for key in spec.metric_keys if key in info["mean"])
        place = where.tasks.get(task)
        score = f"{place.score:.1f}" if place else "–"
        human = f"{place.human:.1f}" if place and place.human is not None else "–"
        best = f"{place.best_published:.1f}" if place and place.best_published is not None else "–"
        rank = f"{place.rank}/{place.of}" if place else "–"
        if place is None or place.human is None:
            verdict = "–"
        elif place.beats_human:
            verdict = f'<span class="beats">above human ★ (+{place.score - place.human:.1f})</span>'
        else:
            verdict = f"{place.score - place.human:+.1f}"
        seed_list = ", ".join(map(str, seeds))
        rows.append(f"<tr><td>{_e(task)}</td><td>{metrics}</td><td class='num'>{_e(seed_list)}</td>"
                    f'<td class="num">{score}</td><td class="num">{human}</td><td class="num">{best}</td>'
                    f'<td class="num">{rank}</td><td>{verdict}</td></tr>')
    return _table(("task", "dev metrics (mean ± std over seeds)", "seeds", "task score", "human (test)",
                   "best published (test)", "rank among published", "vs human"), rows, "results")


def _timing_table(run: RunData) -> str:
    rows = []
    total = 0.0
    for task, info in run.tasks.items():
        seed_results = [read_json(p) for s in info["seeds"] if (p := run.paths.result(task, s)).is_file()]
        epochs = ", ".join(str(r.get("epochs_run", "–")) for r in seed_results) or "–"
        best = ", ".join(str(r.get("best_epoch", "–")) for r in seed_results) or "–"
        train_seconds = float(info.get("train_seconds", 0.0))
        total += (train_seconds + float(info.get("predict_seconds", 0.0))) * len(info["seeds"])
        via = f" (via {info['predicted_by']} model)" if info.get("predicted_by") else ""
        rows.append(
            f"<tr><td>{_e(task)}{_e(via)}</td><td class='num'>{_e(info.get('train_examples', '–'))}</td>"
            f"<td class='num'>{epochs}</td><td class='num'>{best}</td><td class='num'>{train_seconds:.1f}</td>"
            f"<td class='num'>{float(info.get('examples_per_second', 0.0)):,.0f}</td>"
            f"<td class='num'>{float(info.get('predict_seconds', 0.0)):.1f}</td></tr>")
    table = _table(("task", "train examples", "epochs run (per seed)", "best epoch", "train s (mean/seed)",
                    "train examples/s", "predict s (mean/seed)"), rows, "timing")
    return table + f'<p class="note">Total over all seeds: about {total:.0f} s of training and prediction.</p>'


def _published_sources() -> str:
    human = human_baseline()
    items = "".join(f"<li>{_e(sources()[key].citation)} — {_e(sources()[key].where)}</li>" for key in human.sources)
    return f'<p class="note">Human baseline: test-set numbers from</p><ul class="note">{items}</ul>'


def _sweep_section(sweep: SweepData, slug: str, emit: Callable[[bytes | None, str, str, str], str]) -> list[str]:
    record = sweep.record
    settings = record.get("settings", {})
    states = [t["state"] for t in record.get("trials", [])]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states)) or "no trial yet"
    body = [f'<h2 id="{slug}">Sweep {_e(settings.get("study", ""))}</h2>',
            f"<p>Sweep directory <code>{_e(sweep.root)}</code>; sampler <b>{_e(settings.get('sampler'))}</b>, "
            f"pruner <b>{_e(settings.get('pruner'))}</b>, storage "
            f"<code>{_e(settings.get('storage') or 'journal file')}</code>; {len(states)} trials: {_e(counts)}. Space: "
            + "; ".join(f"<code>{_e(k)}</code> = {_e(v)}" for k, v in record.get("space", {}).items()) + "</p>"]
    for number, (label, trials) in enumerate(sweep.studies().items(), start=1):
        tasks = label.split("+")
        metric = " / ".join(TASKS[t].main_metric for t in tasks if t in TASKS)
        keys = list(record.get("space", {}))
        winners = {record.get("best", {}).get(t, {}).get("trial") for t in tasks}
        rows = []
        for trial in trials:
            epochs = len({(h["seed"], h["epoch"]) for h in trial.get("history", [])})
            value = "–" if trial.get("value") is None else f"{trial['value']:.2f}"
            css = ' class="best"' if trial["name"] in winners else ""
            retry = f" (retry of {trial['retried_from'] + 1})" if trial.get("retried_from") is not None else ""
            rows.append(f'<tr{css} data-state="{_e(trial["state"])}"><td>{_e(trial["name"])}</td>'
                        f"<td>{_e(trial['state'].lower() + retry)}</td>"
                        + "".join(f'<td class="num">{_e(trial["params"].get(k, "–"))}</td>' for k in keys)
                        + f'<td class="num">{epochs}</td><td class="num">{value}</td></tr>')
        body += [f"<h3>{_e(label)}: {_e(metric)}</h3>",
                 _table(("trial", "state", *keys, "epochs run", f"dev {metric}"), rows, "sweep-trials")]
        best = [f"{_e(t)} {_e(info['metric'])} {info['value']:.2f} with "
                + ", ".join(f"{_e(k)}={_e(v)}" for k, v in info["params"].items())
                for t, info in record.get("best", {}).items() if t in tasks]
        final = record.get("final", {}).get(label)
        if final:
            seeds = ", ".join(map(str, final["seeds"]))
            shown = [f"{_e(t)} {_e(TASKS[t].main_metric)} {info['mean'][TASKS[t].main_metric]:.2f} ± "
                     f"{info['std'][TASKS[t].main_metric]:.2f}" for t, info in final["tasks"].items()
                     if t in TASKS and TASKS[t].main_metric in info["mean"]]
            best.append(f"final run (seeds {_e(seeds)}, <code>{_e(final['run_dir'])}</code>): " + "; ".join(shown))
        if best:
            body.append('<p class="sweep-best">Best: ' + "<br>".join(best) + "</p>")
        file_slug = f"{slug}_study{number}"
        body += [emit(png, f"{file_slug}_{kind}.png", f"{label} {kind}", caption)
                 for kind, caption, png in sweep_figures(trials, metric)]
    return body


# ---- the representation study (`gluebench analyze representations --study` leaves it in each run it compares)

STUDY_FILE = Path("analysis") / "representations" / "study.json"


def _representation_study_section(runs: Sequence[RunData], emit: Callable[[bytes | None, str, str, str], str],
                                  ) -> list[str]:
    """The 2 x 2 of static vs contextual x frozen vs trained, once per study any of the runs took part in."""
    studies: dict[str, tuple[Path, dict[str, Any]]] = {}
    for run in runs:
        if (run.root / STUDY_FILE).is_file():
            record = read_json(run.root / STUDY_FILE)
            studies.setdefault(record["created"], ((run.root / STUDY_FILE).parent, record))
    sections: list[str] = []
    for number, (directory, study) in enumerate(studies.values(), start=1):
        conditions = study["conditions"]
        rows = [f"<tr><td>{_e(r['condition'])}</td><td class=\"num\">{r['dev_mean']:.1f}</td>"
                f"<td class=\"num\">{r['cka_input']:.4f}</td><td class=\"num\">{r['cka_top']:.3f}</td>"
                f"<td class=\"num\">{r['cka_output']:.3f}</td><td class=\"num\">{r['to_start_top']:.3f}</td>"
                f"<td class=\"num\">{r['self_sim_input']:.3f}</td><td class=\"num\">{r['self_sim_top']:.3f}</td></tr>"
                for r in study["table"]]
        dev = [f"<tr><td>{_e(task)}</td>" + "".join(
            f"<td class=\"num\">{c['dev'][task]['mean']:.1f} ± {c['dev'][task]['std']:.1f}</td>"
            for c in conditions.values()) + "</tr>" for task in study["tasks"]]
        sections += [
            f'<h2 id="study{number}">Representations: static vs contextual × frozen vs trained</h2>',
            "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in study["summary"]) + "</ul>",
            _table(["condition", "mean dev score", "cross-task CKA: input", "top encoder layer", "output",
                    "top layer: CKA to start", "self-similarity (corrected): input", "top token layer"], rows),
            _table(["dev task score", *conditions], dev),
            f'<p class="note">{len(study["words"])} words in ≥ {study["min_contexts"]} of {study["probe_size"]} '
            "token-probe sentences; self-similarity minus the random-word baseline (anisotropy-corrected).</p>",
            *(emit((directory / name).read_bytes(), f"study{number}_{name}", key, caption)
              for key, name, caption in (
                  ("contextuality", study["figures"]["contextuality"],
                   "Token-level contextuality per layer, anisotropy-corrected, for the four conditions."),
                  ("cka", study["figures"]["cka"], "Cross-task linear CKA and CKA to the start, per layer."))
              if (directory / name).is_file()),
        ]
    return sections


@dataclass
class Report:
    """What `write_report` produced: the page and the PNGs beside it."""

    html: Path
    figures: list[Path] = field(default_factory=list)


def write_report(run_dirs: Sequence[Path], output: Path) -> Report:
    """Write the HTML report of ``run_dirs`` (run or sweep directories) to ``output`` and its figures to
    ``<stem>_figures/``; a sweep brings its final runs, and a run that belongs to a sweep brings the sweep."""
    if not run_dirs:
        raise GluebenchError("report: name at least one run directory or run id")
    given = [Path(r) for r in run_dirs]
    run_paths = [p for p in given if RunPaths(p).summary.is_file()]
    sweep_roots = [p for p in given if p not in run_paths] + [r for p in run_paths if (r := sweep_of(p)) is not None]
    sweeps = {root: load_sweep(root) for root in sweep_roots}
    run_paths += [p for root in given if root in sweeps for p in sweeps[root].final_runs()
                  if p.resolve() not in {q.resolve() for q in run_paths}]
    runs = [load_run(p) for p in run_paths]
    output = Path(output)
    figure_dir = output.parent / f"{output.stem}_figures"
    report = Report(output)

    def emit(png: bytes | None, name: str, alt: str, caption: str) -> str:
        if png is None:
            return ""
        path = figure_dir / name
        atomic_write_bytes(path, png)
        report.figures.append(path)
        return _figure(png, name, alt, caption)

    title = ", ".join([r.label for r in runs] + [f"sweep {s.root.name}" for s in sweeps.values() if not runs])
    body = [
        f"<h1>gluebench report: {_e(title)}</h1>",
        f'<p class="note">Generated {_e(now_iso())} by gluebench {_e(__version__)}. Run numbers are '
        "<b>dev</b>-set results (mean over seeds); published and human numbers are GLUE <b>test</b>-set results, "
        "so they are shown side by side, labeled, never merged.</p>",
    ]
    if runs:
        body += [
            "<h2>Summary</h2>",
            _overview_table(runs),
            emit(bar_chart(runs), "task_scores_vs_human.png", "bar chart of task scores against the human baseline",
                 "Each run's dev task score beside the human baseline's test score (red, hatched)."),
            _published_sources(),
        ]
    body += ["<h2>GLUE tasks</h2>", _tasks_table()]
    for number, run in enumerate(runs, start=1):
        slug = f"run{number}"
        score = run.entry.score_label
        body += [
            f'<h2 id="{slug}">{_e(run.label)}</h2>',
            f'<p>Run directory <code>{_e(run.root)}</code>; model <code>{_e(run.summary.get("model"))}</code>; '
            f'seeds {_e(run.summary.get("seeds"))}; finished {_e(run.summary.get("finished", "–"))}. '
            f'GLUE score: <b class="glue-score">{_e(score)}</b>.</p>',
        ]
        skipped = run.summary.get("skipped") or {}
        if skipped:
            body.append('<p class="note">Skipped: ' + "; ".join(f"{_e(t)} ({_e(w)})" for t, w in skipped.items())
                        + "</p>")
        body += [
            "<h3>Results per task</h3>", _results_table(run),
            "<h3>Training curves</h3>",
            emit(training_curves(run), f"{slug}_training_curves.png", "training curves",
                 "Train loss and dev metrics per epoch (solid: main metric), one line per seed."),
            "<h3>Confusion matrices</h3>",
            emit(confusion_matrices(run), f"{slug}_confusion_matrices.png", "confusion matrices",
                 "Dev predictions of the best dev seed, per classification task and dev split (rows: gold).")
            or '<p class="note">No classification task in this run.</p>',
            *_scatter_sections(run, slug, emit),
            "<h3>Timing</h3>", _timing_table(run),
            "<h3>Configuration</h3>", f"<pre>{_e(run.config_text)}</pre>",
        ]
    for number, sweep in enumerate(sweeps.values(), start=1):
        body += _sweep_section(sweep, f"sweep{number}", emit)
    body += _representation_study_section(runs, emit)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>gluebench report: {_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(part for part in body if part) + "\n</body></html>\n"
    )
    atomic_write_text(output, page)
    return report

