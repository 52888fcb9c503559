"""`gluebench export`: hand a run's trained models back to their ecosystem.

``DIR/TASK/`` holds each task's model in its family's own format: a Hugging Face checkpoint
(``AutoModelForSequenceClassification.from_pretrained``, ``pipeline("text-classification")``) for
Transformers, safetensors + JSON config + vocabulary for the static GloVe models, no pickles anywhere, with a
short model card (``README.md``). ``DIR/gluebench.json`` lists family, tasks, dev metrics and settings, so
``gluebench evaluate --model DIR`` and the Python API reload any of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gluebench.artifacts import EXPORT_MANIFEST, best_seed, load_task_model
from gluebench.config import load_config
from gluebench.errors import GluebenchError
from gluebench.runs import RunPaths, atomic_write_json, atomic_write_text, read_json
from gluebench.tasks import TASKS, resolve_tasks
from gluebench.version import __version__


def export_run(run_dir: Path, output_dir: Path, tasks: list[str] | None = None,
               seed: int | None = None) -> dict[str, Any]:
    """Export each task's model (its best dev seed, or ``seed``) under ``output_dir/TASK``; the manifest."""
    paths = RunPaths(Path(run_dir))
    if not paths.summary.is_file():
        raise GluebenchError("not a finished run directory (no run.json)", path=paths.root)
    config, record = load_config(paths.config), read_json(paths.summary)
    trained = {name: info for name, info in record["tasks"].items()
               if name in TASKS and TASKS[name].predicted_by is None and not info.get("evaluated")}
    wanted = [t.name for t in resolve_tasks(tasks)] if tasks else list(trained)
    missing = [name for name in wanted if name not in trained]
    if missing:
        raise GluebenchError(f"the run has no trained model of {', '.join(missing)} "
                             f"(it has: {', '.join(trained) or 'none'})", path=paths.root)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise GluebenchError("the export directory is not empty; pick another", path=output_dir)
    staging = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    entries: dict[str, Any] = {}
    for name in wanted:
        spec, info = TASKS[name], trained[name]
        chosen = seed if seed is not None else best_seed(info, spec.main_metric)
        if chosen not in info["seeds"]:
            raise GluebenchError(f"--seed {chosen}: {name} was trained with seeds {info['seeds']}")
        model, _ = load_task_model(paths.root, name, chosen)
        target = staging / name
        model.export(target)
        result = read_json(paths.result(name, chosen))
        entries[name] = {"seed": chosen, "dev_metrics": result["metrics"], "training": result.get("config", {})}
        atomic_write_text(target / "README.md", _model_card(config.model, name, entries[name]))
    manifest = {"gluebench_version": __version__, "family": config.model, "tasks": entries,
                "run_dir": str(paths.root.resolve())}
    atomic_write_json(staging / EXPORT_MANIFEST, manifest)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if output_dir.exists():
        output_dir.rmdir()
    staging.rename(output_dir)  # the export appears whole or not at all
    return manifest


def _model_card(model: str, task: str, entry: dict[str, Any]) -> str:
    spec = TASKS[task]
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in entry["dev_metrics"].items())
    keys = ("epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "mixed_precision",
            "seed")
    settings = ", ".join(f"{k} {entry['training'][k]}" for k in keys if k in entry["training"])
    return (f"---\nlibrary_name: {'transformers' if model.startswith(('hf:', 'minilm')) else 'gluebench'}\n"
            f"tags: [gluebench, glue, text-classification]\ndatasets: [nyu-mll/glue]\n---\n\n"
            f"# {model} fine-tuned on {task}\n\n"
            f"{spec.description} ({spec.domain}). Labels: "
            f"{', '.join(spec.class_names) if spec.class_names else 'a score in ' + str(spec.label_range)}.\n\n"
            f"- dev metrics (official GLUE metrics, x100): {metrics}\n"
            f"- training: {settings}\n"
            f"- written by gluebench {__version__}\n")
