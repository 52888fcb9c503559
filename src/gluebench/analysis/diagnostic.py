"""The AX diagnostic broken down by linguistic phenomenon, as in the GLUE paper's analysis tables.

The labeled ``diagnostic-full.tsv`` tags each pair with coarse categories (Lexical Semantics,
Predicate-Argument Structure, Logic, Knowledge; a pair may have several or none) holding fine tags
separated by ``;``, and a Domain. R3 is the Matthews correlation (x100) over the three NLI classes, per
slice of the file.

The run's NLI model predicts the pairs: MNLI's when the run trained one. Without MNLI (its files are not
always at hand), an RTE or QNLI model *stands in*: it can only say entailment or not_entailment, so the gold
labels are collapsed the same way (neutral and contradiction -> not_entailment) and the reported number is
the binary Matthews correlation on that collapse. It is labeled as such everywhere it is shown: it is not
comparable with a three-way R3. Which set, categories and models these are is the registry's
(`TaskSpec.diagnostic`, `TaskSpec.predicted_by`); every function takes the diagnostic task, by default the
registry's first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gluebench.artifacts import load_task_model
from gluebench.config import load_config
from gluebench.data.read import Example, read_split
from gluebench.errors import GluebenchError
from gluebench.metrics import (
    Slice,
    breakdown,
    diagnostic_task,
)
from gluebench.runs import RunPaths, atomic_write_bytes, atomic_write_json, now_iso
from gluebench.tasks import TaskSpec
from gluebench.training import predict


def nli_sources(task: TaskSpec | None = None) -> tuple[str, ...]:
    """The tasks whose models may predict the diagnostic set, best first: its own predictor, then stand-ins."""
    task, diagnostic = diagnostic_task(task)
    return (*([task.predicted_by] if task.predicted_by else []), *diagnostic.stand_ins)


def load_diagnostic(data_dir: Path, task: TaskSpec | None = None) -> list[Example]:
    """The labeled pairs (the set's dev split) with their category columns in ``Example.extras``."""
    task, _ = diagnostic_task(task)
    return read_split(task, next(iter(task.dev_splits)), data_dir)


def choose_nli_source(paths: RunPaths, seeds: Sequence[int], task: TaskSpec | None = None) -> str:
    """The run's task whose model predicts the diagnostic set: MNLI, else RTE, else QNLI (stand-ins)."""
    task, _ = diagnostic_task(task)
    sources = nli_sources(task)
    for source in sources:
        if all(paths.weights(source, seed).is_file() for seed in seeds):
            return source
    raise GluebenchError(f"no NLI model to predict {task.name} with: the run trained none of {', '.join(sources)} "
                         f"(for seeds {list(seeds)})", path=paths.root)


@dataclass
class DiagnosticReport:
    """What `diagnose` found: per seed and mean over seeds, for every slice."""

    run_dir: Path
    source: str
    stand_in: bool
    seeds: list[int]
    per_seed: dict[int, list[Slice]]
    task: TaskSpec

    @property
    def metric_label(self) -> str:
        return f"R3 (binary collapse: {self.source} stand-in)" if self.stand_in else "R3"

    def mean(self) -> list[dict[str, Any]]:
        """Rows with mean (and std over seeds) of R3 per slice, in table order."""
        first = self.per_seed[self.seeds[0]]
        rows = []
        for k, item in enumerate(first):
            values = np.array([self.per_seed[s][k].r3 for s in self.seeds])
            rows.append({**item.as_dict(), "r3": float(values.mean()),
                         "r3_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0})
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir), "created": now_iso(), "predicted_by": self.source,
            "stand_in": self.stand_in, "metric": self.metric_label,
            "note": ("gold labels collapsed to entailment / not_entailment (neutral and contradiction -> "
                     "not_entailment); binary Matthews correlation x100, not comparable with three-way R3")
            if self.stand_in else "Matthews correlation x100 over entailment / neutral / contradiction",
            "seeds": self.seeds, "slices": self.mean(),
            "per_seed": {str(s): [x.as_dict() for x in rows] for s, rows in self.per_seed.items()},
        }


def diagnose(run_dir: Path, data_dir: Path, seeds: Sequence[int] | None = None,
             source: str | None = None, task: TaskSpec | None = None) -> DiagnosticReport:
    """Predict the labeled diagnostic pairs with the run's NLI model(s) and break R3 down by category."""
    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise GluebenchError("not a run directory (no config.yaml)", path=paths.root)
    task, _ = diagnostic_task(task)
    seeds = list(seeds) if seeds else list(load_config(paths.config).seeds)
    if source is None:
        source = choose_nli_source(paths, seeds, task)
    elif source not in nli_sources(task):
        raise GluebenchError(f"--source must be one of {', '.join(nli_sources(task))}, got {source!r}")
    stand_in = source != task.predicted_by
    examples = load_diagnostic(data_dir, task)
    per_seed: dict[int, list[Slice]] = {}
    for seed in seeds:
        if not paths.weights(source, seed).is_file():
            raise GluebenchError(f"no {source} model for seed {seed}", path=paths.weights(source, seed))
        model, spec = load_task_model(paths.root, source, seed)
        predictions = [str(p) for p in predict(model, spec, examples)]
        per_seed[seed] = breakdown(examples, predictions, binary=stand_in, task=task)
    return DiagnosticReport(paths.root, source, stand_in, seeds, per_seed, task)


def plot(report: DiagnosticReport, path: Path) -> None:
    """Bar chart of R3 per coarse category (left) and per fine tag (right), counts in the labels."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.mean()
    coarse = [r for r in rows if r["group"] in ("all", "coarse")]
    fine = [r for r in rows if r["group"] == "fine"]
    palette = plt.get_cmap("tab10")
    colors = {category: palette(k) for k, category in enumerate(diagnostic_task(report.task)[1].categories)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(6, 0.24 * len(fine))),
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    left.barh([f"{r['name']} (n={r['count']})" for r in coarse], [r["r3"] for r in coarse],
              xerr=[r["r3_std"] for r in coarse], color=["grey", *(colors[r["name"]] for r in coarse[1:])])
    left.invert_yaxis()
    left.axvline(0, color="black", linewidth=0.8)
    left.set_xlabel(report.metric_label)
    left.set_title("Coarse categories")
    right.barh([f"{r['name'].split(' / ')[1]} (n={r['count']})" for r in fine], [r["r3"] for r in fine],
               color=[colors[r["name"].split(" / ")[0]] for r in fine])
    right.invert_yaxis()
    right.axvline(0, color="black", linewidth=0.8)
    right.tick_params(axis="y", labelsize=8)
    right.set_xlabel(report.metric_label)
    right.set_title("Fine tags (colour = coarse category)")
    seeds = f"seed {report.seeds[0]}" if len(report.seeds) == 1 else f"mean over seeds {report.seeds}"
    fig.suptitle(f"{report.task.name} diagnostic by category — predicted by {report.source}"
                 f"{f' (stand-in for {report.task.predicted_by})' if report.stand_in else ''}, {seeds}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_report(report: DiagnosticReport, out_dir: Path | None = None) -> tuple[Path, Path]:
    """``diagnostic.json`` and ``diagnostic.png`` under ``RUN_DIR/analysis`` (or ``out_dir``), atomically."""
    out_dir = Path(out_dir) if out_dir else report.run_dir / "analysis"
    json_path, png_path = out_dir / "diagnostic.json", out_dir / "diagnostic.png"
    atomic_write_json(json_path, report.as_dict())
    plot(report, png_path)
    return json_path, png_path
