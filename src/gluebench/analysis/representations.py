"""How similar are the layers of models trained on different tasks? Linear CKA, task x task, per layer.

Every task model of a run reads the same probe sentences (drawn from the tasks' dev sets) and reports its
per-example representation at each layer (`TaskModel.layer_outputs`: embedding output, encoder, pooled
sentence vector, pre-classifier, output). For each layer we compare every pair of tasks with linear CKA (and
mean cosine where widths match), and each task model with a fresh initialisation of the same family
("drift": how far training moved that layer). With word-vector models we also measure how far each word's
vector moved from the original (``--unfreeze-embeddings`` runs).

Two choices keep the comparison about the models, not their inputs:

- every model sees exactly the same input: each probe is one sentence, given alone (a pair-task model sees it
  with an empty second text), so differences come from the weights only;
- models with a word vocabulary built per task (`Capability.TASK_VOCABULARY`: the static family builds one
  from each task's texts) only see probe sentences that every model reads as the same known words; otherwise
  a word unknown to one task would read as the zero UNK vector there (or a compound as its parts), a
  vocabulary artifact, not anything learned.

Everything model-specific comes through the family contract (`gluebench.models.base`): layers from
`TaskModel.layer_outputs`, word vectors from the WORD_EMBEDDINGS accessors.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from gluebench.analysis.cka import cka_matrix, cosine_matrix, linear_cka
from gluebench.artifacts import load_task_model
from gluebench.config import load_config
from gluebench.data.read import Example, read_split
from gluebench.errors import GluebenchError
from gluebench.models import Capability, TaskModel, get_family
from gluebench.runs import RunPaths, atomic_write_bytes, atomic_write_json, atomic_write_text, now_iso, read_json
from gluebench.tasks import TASKS, TaskSpec, get_task

IDENTICAL = 1 - 1e-9  # CKA at or above this reads as "identical" (float64 rounding of equal inputs)


@dataclass
class LoadedRun:
    """The trained task models of one run (one seed) and how to rebuild their starting point."""

    root: Path
    label: str
    model_name: str
    seed: int
    frozen_embeddings: bool | None
    models: dict[str, TaskModel]
    config: Any


def _frozen_embeddings(model: TaskModel) -> bool | None:
    """True when the model's word embeddings are frozen, None when it has none."""
    if Capability.WORD_EMBEDDINGS not in model.capabilities:
        return None
    return not model.word_embedding().requires_grad


def run_tasks(run_dir: Path, seed: int | None = None, tasks: Sequence[str] | None = None,
              ) -> tuple[Any, int, list[str]]:
    """A run's config, the seed to analyse (default: its first) and the tasks with a model for it (at least two)."""
    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise GluebenchError("not a run directory (no config.yaml)", path=paths.root)
    config = load_config(paths.config)
    seed = config.seeds[0] if seed is None else seed
    wanted = [get_task(t).name for t in tasks] if tasks else [t for t in TASKS if TASKS[t].has_train]
    names = [t for t in wanted if paths.weights(t, seed).is_file()]
    if len(names) < 2:
        raise GluebenchError(f"needs models of at least two tasks for seed {seed}, found {names or 'none'}",
                             path=paths.root)
    return config, seed, names


def load_run(run_dir: Path, seed: int | None = None, tasks: Sequence[str] | None = None) -> LoadedRun:
    """Every task model a run trained for ``seed`` (default: its first seed), AX excluded."""
    paths = RunPaths(Path(run_dir))
    config, seed, names = run_tasks(run_dir, seed, tasks)
    models = {name: load_task_model(paths.root, name, seed)[0] for name in names}
    frozen = _frozen_embeddings(next(iter(models.values())))
    label = config.model
    if frozen:
        label += " (frozen embeddings)"
    elif frozen is not None and config.unfreeze_embeddings:
        label += " (unfrozen embeddings)"
    elif config.freeze_encoder:
        label += " (frozen encoder)"
    return LoadedRun(paths.root, label, config.model, seed, frozen, models, config)


def read_alike(sentence: str, models: Sequence[TaskModel]) -> bool:
    """True when every model with a per-task vocabulary reads ``sentence`` as the same known words.

    Such vocabularies differ per task, so a word may be unknown to one model (UNK), or a compound may be one
    word in one vocabulary and its parts in another; either would make inputs differ.
    """
    readings = set()
    for model in models:
        if Capability.TASK_VOCABULARY not in model.capabilities:
            continue
        words = model.read_words(sentence)
        if None in words:
            return False
        readings.add(tuple(words))
    return len(readings) <= 1


def probe_sentences(tasks: Sequence[TaskSpec], data_dir: Path, models: Sequence[TaskModel], size: int,
                    seed: int = 0) -> tuple[list[str], dict[str, Any]]:
    """Up to ``size`` distinct dev-set sentences, taken in turn from each task, that every model reads alike."""
    pools: list[list[str]] = []
    for spec in tasks:
        split = next(iter(spec.dev_splits))
        texts = {t for e in read_split(spec, split, data_dir) for t in (e.text_a, e.text_b) if t}
        pool = sorted(texts)
        random.Random(f"{seed}-{spec.name}").shuffle(pool)
        pools.append(pool)
    chosen: list[str] = []
    seen: set[str] = set()
    taken = dict.fromkeys((s.name for s in tasks), 0)
    rejected = 0
    cursors = [0] * len(pools)
    while len(chosen) < size and any(c < len(p) for c, p in zip(cursors, pools, strict=True)):
        for k, pool in enumerate(pools):
            while cursors[k] < len(pool) and len(chosen) < size:
                sentence = pool[cursors[k]]
                cursors[k] += 1
                if sentence in seen:
                    continue
                if not read_alike(sentence, models):
                    rejected += 1
                    continue
                seen.add(sentence)
                chosen.append(sentence)
                taken[tasks[k].name] += 1
                break
    if len(chosen) < 10:
        raise GluebenchError(f"only {len(chosen)} probe sentences are known to every model; too few to compare")
    return chosen, {"size": len(chosen), "from_task": taken, "rejected_unknown_words": rejected}


def extract(model: TaskModel, sentences: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """``layer -> [n, width]`` for the sentences, in their order (each given alone, see module docstring)."""
    examples = [Example(index=i, text_a=s) for i, s in enumerate(sentences)]
    features = model.encode(examples)
    model.module.eval()
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            outputs = model.layer_outputs(model.collate(features[start : start + batch_size]))
            for name, tensor in outputs.items():
                values = tensor.detach().float().cpu().numpy()
                chunks.setdefault(name, []).append(values.reshape(len(values), -1))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def initial_model(run: LoadedRun, task: str, sentences: Sequence[str]) -> TaskModel:
    """A fresh model of the run's family for ``task``: pretrained parts as training found them, new parts random.

    Each task gets its own seed (derived from the run's), so fresh models of different tasks are independent
    random starts, as they are in a run (where per-task vocabularies already make their random draws differ).
    """
    examples = [Example(index=i, text_a=s) for i, s in enumerate(sentences)]
    seed = run.seed * 1000 + list(TASKS).index(task)
    return get_family(run.model_name).build(TASKS[task], examples, run.config.family_options(), seed)


def embedding_drift(model: TaskModel, config: Any) -> dict[str, Any]:
    """Per word: ||w' - w|| / ||w|| and (||w'|| - ||w||) / ||w|| against the vectors training started from."""
    after = model.word_embedding().detach().float().cpu().numpy()
    before = model.pretrained_word_embedding(config.family_options()).float().cpu().numpy()
    if before.shape != after.shape:
        raise GluebenchError(f"the pretrained word embedding has shape {before.shape}, the trained {after.shape}")
    words = model.word_vocabulary()
    norms = np.linalg.norm(before, axis=1)
    rows = np.nonzero(norms > 0)[0]
    displacement = np.linalg.norm(after[rows] - before[rows], axis=1) / norms[rows]
    norm_change = (np.linalg.norm(after[rows], axis=1) - norms[rows]) / norms[rows]
    moved = displacement > 1e-6

    def stats(values: np.ndarray) -> dict[str, float]:
        if not len(values):
            return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
        return {"mean": float(values.mean()), "median": float(np.median(values)),
                "p90": float(np.percentile(values, 90)), "max": float(values.max())}

    top = rows[np.argsort(-displacement)[:8]]
    return {
        "words": len(rows), "moved": int(moved.sum()), "moved_share": float(moved.mean()) if len(rows) else 0.0,
        "relative_displacement": stats(displacement), "relative_displacement_moved": stats(displacement[moved]),
        "relative_norm_change": stats(norm_change), "relative_norm_change_moved": stats(norm_change[moved]),
        "most_moved": [{"word": words[int(i)],
                        "relative_displacement": float(np.linalg.norm(after[i] - before[i]) / norms[i])} for i in top],
    }


def _offdiag(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def analyze_run(run: LoadedRun, sentences: Sequence[str]) -> dict[str, Any]:
    """Task x task CKA and cosine per layer, CKA to a fresh initialisation, and word-vector drift."""
    tasks = list(run.models)
    reps = {task: extract(model, sentences) for task, model in run.models.items()}
    shared = [name for name in reps[tasks[0]] if all(name in r for r in reps.values())]
    # a layer that gives every input the same vector (e.g. the [CLS] embedding before any attention) has no
    # similarity structure to compare: CKA is undefined there, so it is listed apart instead
    constant = [name for name in shared if any(np.ptp(r[name], axis=0).max() == 0 for r in reps.values())]
    layers = [name for name in shared if name not in constant]
    cka = {layer: cka_matrix([reps[t][layer] for t in tasks]) for layer in layers}
    cosine = {layer: cosine_matrix([reps[t][layer] for t in tasks]) for layer in layers}
    drift: dict[str, dict[str, float]] = {layer: {} for layer in layers}
    words: dict[str, Any] = {}
    initial: dict[str, dict[str, np.ndarray]] = {}
    for task, model in run.models.items():
        start = initial_model(run, task, sentences)
        initial[task] = extract(start, sentences)
        for layer in layers:
            if layer in initial[task]:
                drift[layer][task] = linear_cka(reps[task][layer], initial[task][layer])
        if _frozen_embeddings(model) is False:
            words[task] = embedding_drift(model, run.config)
    before = {layer: _offdiag(cka_matrix([initial[t][layer] for t in tasks])) for layer in layers
              if all(layer in initial[t] for t in tasks)}
    results = {t: RunPaths(run.root).result(t, run.seed) for t in tasks}
    dev = {t: {"metric": TASKS[t].main_metric, "value": read_json(path)["metrics"].get(TASKS[t].main_metric)}
           for t, path in results.items() if path.is_file()}
    return {
        "run_dir": str(run.root), "label": run.label, "model": run.model_name, "seed": run.seed, "dev": dev,
        "frozen_embeddings": run.frozen_embeddings, "tasks": tasks, "layers": layers, "constant_layers": constant,
        "widths": {layer: {t: int(reps[t][layer].shape[1]) for t in tasks} for layer in layers},
        "cka": {layer: cka[layer].tolist() for layer in layers},
        "cosine": {layer: [[None if np.isnan(v) else float(v) for v in row] for row in cosine[layer]]
                   for layer in layers},
        "cross_task_cka": {layer: {"mean": float(_offdiag(cka[layer]).mean()),
                                   "min": float(_offdiag(cka[layer]).min())} for layer in layers},
        "cross_task_cka_initial": {layer: {"mean": float(v.mean()), "min": float(v.min())}
                                   for layer, v in before.items()},
        "cka_to_initial": drift,
        "embedding_drift": words,
    }


def summarize(result: dict[str, Any]) -> list[str]:
    """Plain sentences stating what the numbers show, one paragraph per run, then a comparison."""
    lines: list[str] = []
    for run in result["runs"]:
        layers = run["layers"]
        cross = run["cross_task_cka"]
        first = layers[0]
        means = " → ".join(f"{cross[n]['mean']:.3f}" for n in layers)
        text = [f"**{run['label']}** ({len(run['tasks'])} tasks: {', '.join(run['tasks'])}; seed {run['seed']})."]
        lowest = min(layers, key=lambda name: cross[name]["mean"])
        if cross[first]["min"] >= IDENTICAL:
            text.append(f"The `{first}` layer is identical across tasks (cross-task CKA {cross[first]['min']:.4f} "
                        "for every pair): every task reads the same input vectors.")
        elif cross[first]["min"] >= 0.999:
            text.append(f"The `{first}` layer is nearly but not exactly the same across tasks (1 − CKA up to "
                        f"{1 - cross[first]['min']:.1e}).")
        else:
            text.append(f"The `{first}` layer already differs across tasks (cross-task CKA mean "
                        f"{cross[first]['mean']:.4f}, min {cross[first]['min']:.4f}).")
        text.append(f"Cross-task CKA then goes {means} "
                    f"({' → '.join(f'`{n}`' for n in layers)}); the most task-specific layer is `{lowest}` "
                    f"(mean {cross[lowest]['mean']:.3f}, min {cross[lowest]['min']:.3f}).")
        before = run["cross_task_cka_initial"]
        if before:
            text.append("Between fresh, independently seeded models of the same tasks it is "
                        + " → ".join(f"{before[n]['mean']:.3f}" if n in before else "–" for n in layers)
                        + " (what shared inputs and pretrained weights alone give): where the trained value is lower, "
                        "task training pulled the layers apart; where higher, it made them more alike.")
        to_init = {n: float(np.mean(list(v.values()))) for n, v in run["cka_to_initial"].items() if v}
        if to_init:
            ordered = [n for n in layers if n in to_init]
            moved_most = min(ordered, key=lambda n: to_init[n])
            unmoved = [n for n in ordered if to_init[n] >= IDENTICAL]
            rho = spearmanr(range(len(ordered)), [to_init[n] for n in ordered])[0] if len(ordered) > 2 else np.nan
            text.append(f"Against a fresh initialisation, CKA is {' → '.join(f'{to_init[n]:.3f}' for n in ordered)}: "
                        + (f"{', '.join(f'`{n}`' for n in unmoved)} did not move; " if unmoved else
                           "every layer moved; ")
                        + f"`{moved_most}` moved most (CKA {to_init[moved_most]:.3f}; Spearman ρ of CKA with depth "
                        f"{rho:+.2f}, negative = deeper layers move more).")
        if run["embedding_drift"]:
            drift = run["embedding_drift"]
            share = np.mean([d["moved_share"] for d in drift.values()])
            median = np.median([d["relative_displacement_moved"]["median"] for d in drift.values()])
            norm = np.median([d["relative_norm_change_moved"]["median"] for d in drift.values()])
            largest = max(drift.items(), key=lambda kv: kv[1]["relative_displacement"]["max"])
            text.append(f"Trainable word vectors: {100 * share:.1f}% of the vocabulary rows moved (the words seen in "
                        f"training); among them the median relative change ||w'−w||/||w|| is {median:.4f} and the "
                        f"median relative change in norm {norm:+.4f}; the largest is "
                        f"{largest[1]['relative_displacement']['max']:.3f} ({largest[0]}, "
                        f"'{largest[1]['most_moved'][0]['word']}').")
        if run.get("constant_layers"):
            text.append(f"Left out as constant over the probe (the same vector for every sentence, so CKA is "
                        f"undefined): {', '.join(f'`{n}`' for n in run['constant_layers'])}.")
        lines.append(" ".join(text))
    by_label = {r["label"]: r for r in result["runs"]}
    frozen = [r for r in result["runs"] if r["frozen_embeddings"]]
    unfrozen = [r for r in result["runs"] if r["frozen_embeddings"] is False and r["embedding_drift"]]
    if frozen and unfrozen and frozen[0]["layers"][0] == unfrozen[0]["layers"][0]:
        layer = frozen[0]["layers"][0]
        gap_frozen = 1 - frozen[0]["cross_task_cka"][layer]["min"]
        gap_trained = 1 - unfrozen[0]["cross_task_cka"][layer]["min"]
        lines.append(f"Frozen vs trainable embeddings: at `{layer}` the largest cross-task 1 − CKA is "
                     f"{gap_frozen:.1e} with frozen vectors and {gap_trained:.1e} when they are trained: "
                     + ("training the vectors made the tasks' input layers drift apart, slightly."
                        if gap_trained > gap_frozen else "no measurable difference.")
                     + f" ({len(by_label)} runs compared.)")
    return lines


def analyze(run_dirs: Sequence[Path], data_dir: Path, *, seed: int | None = None,
            tasks: Sequence[str] | None = None, probe_size: int = 256, probe_seed: int = 0) -> dict[str, Any]:
    """Load the runs, draw one probe set for all of them, and compare their layers (see `analyze_run`)."""
    runs = [load_run(Path(d), seed, tasks) for d in run_dirs]
    all_models = [m for run in runs for m in run.models.values()]
    specs = [TASKS[name] for name in dict.fromkeys(t for run in runs for t in run.models)]
    sentences, probe = probe_sentences(specs, data_dir, all_models, probe_size, probe_seed)
    result = {"created": now_iso(), "probe": {**probe, "seed": probe_seed, "sentences": sentences},
              "runs": [analyze_run(run, sentences) for run in runs]}
    result["summary"] = summarize(result)
    return result


# ---- output -------------------------------------------------------------------------------------------------


def save_png(fig: Any, path: Path) -> None:
    """A matplotlib figure as a PNG file, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_heatmaps(run: dict[str, Any], path: Path) -> None:
    """One task x task CKA heatmap per layer, in forward order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, tasks = run["layers"], run["tasks"]
    cols = min(6, len(layers))
    rows = -(-len(layers) // cols)
    size = 0.55 * len(tasks) + 1.2
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size + 0.6), squeeze=False)
    for ax in axes.flat[len(layers):]:
        ax.axis("off")
    for ax, layer in zip(axes.flat, layers, strict=False):
        matrix = np.array(run["cka"][layer])
        ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if matrix[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(tasks)), tasks, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_title(layer, fontsize=9)
    fig.suptitle(f"Linear CKA between task models, per layer — {run['label']}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def plot_profile(result: dict[str, Any], path: Path) -> None:
    """Per run: mean cross-task CKA and mean CKA to a fresh initialisation, layer by layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 3.8), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        layers = run["layers"]
        x = range(len(layers))
        cross = [run["cross_task_cka"][n]["mean"] for n in layers]
        low = [run["cross_task_cka"][n]["min"] for n in layers]
        ax.plot(x, cross, marker="o", label="cross-task CKA (mean)")
        ax.fill_between(x, low, cross, alpha=0.2, label="… down to the min pair")
        to_init = [np.mean(list(run["cka_to_initial"][n].values())) if run["cka_to_initial"][n] else np.nan
                   for n in layers]
        ax.plot(x, to_init, marker="s", linestyle="--", label="CKA to fresh init (mean)")
        before = [run["cross_task_cka_initial"].get(n, {}).get("mean", np.nan) for n in layers]
        ax.plot(x, before, marker=".", linestyle=":", color="grey", label="cross-task CKA of fresh models")
        ax.set_xticks(list(x), layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(run["label"], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("linear CKA")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_png(fig, path)


def markdown(result: dict[str, Any], images: dict[str, str]) -> str:
    """The report: summary, an overview table per run, then the task x task table of every layer."""
    probe = result["probe"]
    out = ["## Summary", "", *[f"- {line}" for line in result["summary"]], "",
           f"Probe: {probe['size']} dev-set sentences (seed {probe['seed']}; per source task "
           f"{', '.join(f'{t} {n}' for t, n in probe['from_task'].items())}); "
           f"{probe['rejected_unknown_words']} candidates were skipped because some model's vocabulary lacks one of "
           "their words. Each sentence is given alone to every model.", ""]
    if "profile" in images:
        out += [f"![CKA per layer]({images['profile']})", ""]
    for run in result["runs"]:
        layers, tasks = run["layers"], run["tasks"]
        scores = ", ".join(f"{t} {d['metric']} {d['value']:.1f}" for t, d in run["dev"].items()
                           if d["value"] is not None)
        out += [f"## {run['label']}", "", f"Run `{run['run_dir']}`, seed {run['seed']}; dev scores of these models: "
                f"{scores or 'not recorded'}.", "",
                "| layer | width | cross-task CKA mean | min | before training (mean) | mean cosine (equal widths) "
                "| CKA to fresh init (mean) |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for layer in layers:
            widths = sorted(set(run["widths"][layer].values()))
            off = [run["cosine"][layer][i][j] for i in range(len(tasks)) for j in range(len(tasks))
                   if i != j and run["cosine"][layer][i][j] is not None]
            drift = run["cka_to_initial"][layer]
            before = run["cross_task_cka_initial"].get(layer)
            before_mean = f"{before['mean']:.4f}" if before else "n/a"
            out.append(f"| `{layer}` | {'/'.join(map(str, widths))} | {run['cross_task_cka'][layer]['mean']:.4f} | "
                       f"{run['cross_task_cka'][layer]['min']:.4f} | "
                       f"{before_mean} | "
                       f"{f'{np.mean(off):.4f}' if off else 'n/a (widths differ)'} | "
                       f"{f'{np.mean(list(drift.values())):.4f}' if drift else 'n/a'} |")
        if run["embedding_drift"]:
            out += ["", "Word-vector drift against the original vectors (rows that moved):", "",
                    "| task | rows moved | median ‖w′−w‖/‖w‖ | p90 | max | median norm change | most moved |",
                    "| --- | --- | --- | --- | --- | --- | --- |"]
            for task, d in run["embedding_drift"].items():
                moved = d["relative_displacement_moved"]
                top = ", ".join(str(m["word"]) for m in d["most_moved"][:4])
                out.append(f"| {task} | {d['moved']:,} / {d['words']:,} | {moved['median']:.4f} | {moved['p90']:.4f} "
                           f"| {moved['max']:.4f} | {d['relative_norm_change_moved']['median']:+.4f} | {top} |")
        if run["label"] in images:
            out += ["", f"![heatmaps]({images[run['label']]})"]
        out += ["", "<details><summary>Task × task CKA, every layer</summary>", ""]
        for layer in layers:
            out += [f"`{layer}`", "", "| | " + " | ".join(tasks) + " |", "| --- " * (len(tasks) + 1) + "|"]
            out += [f"| {a} | " + " | ".join(f"{v:.3f}" for v in row) + " |"
                    for a, row in zip(tasks, run["cka"][layer], strict=True)]
            out.append("")
        out += ["</details>", ""]
    return "\n".join(out)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-").lower()


def write_outputs(result: dict[str, Any], out_dir: Path, preface: str = "") -> dict[str, Path]:
    """``representations.json``, ``representations.md`` (``preface`` first), ``profile.png`` and one heatmap
    PNG per run."""
    out_dir = Path(out_dir)
    images = {"profile": "profile.png"}
    plot_profile(result, out_dir / "profile.png")
    for run in result["runs"]:
        name = f"cka-{_slug(run['label'])}.png"
        plot_heatmaps(run, out_dir / name)
        images[run["label"]] = name
    atomic_write_json(out_dir / "representations.json", result)
    atomic_write_text(out_dir / "representations.md", "# Representations across tasks\n\n" + preface
                      + markdown(result, images))
    return {"json": out_dir / "representations.json", "markdown": out_dir / "representations.md",
            "profile": out_dir / "profile.png"}
