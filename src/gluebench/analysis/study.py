"""The first seed's question in a 2 x 2: static vs contextual word representations x frozen vs trained.

The seed says GloVe models look alike on every task because the vectors are *static* (one per word type)
and *frozen* (the task does not change them). Those are two properties; four conditions separate them, on
the same tasks, the same training slices and one probe set:

- ``static-frozen``: glove-bilstm on frozen GloVe vectors (the seed's setting);
- ``static-trained``: the same with trainable vectors (``--unfreeze-embeddings``);
- ``contextual-frozen``: MiniLM kept as pretrained, a head trained on its vectors (``--freeze-encoder``);
- ``contextual-fine-tuned``: MiniLM fine-tuned whole.

Per condition and layer: cross-task linear CKA and CKA to the starting point (`representations.analyze_run`),
token-level contextuality (`contextuality`: self-similarity, intra-sentence similarity, maximum explainable
variance, anisotropy-corrected, over the words every model sees in enough probe contexts) and the dev
score of every task over the runs' seeds. Which condition a run is comes from its configuration (family and
its freeze options), so any four runs of the right kinds can be compared.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gluebench.analysis import representations as reps
from gluebench.analysis.contextuality import LayerMeasures, measure, measured_words, readings, summarize
from gluebench.config import config_from_mapping
from gluebench.errors import GluebenchError
from gluebench.metrics import task_score
from gluebench.models import TaskModel, get_family
from gluebench.models.base import TokenOutputs
from gluebench.models.static import StaticFamily
from gluebench.models.transformer import TransformerFamily
from gluebench.runs import RunPaths, atomic_write_bytes, atomic_write_json, now_iso, read_json
from gluebench.tasks import TASKS

CONDITIONS = {
    "static-frozen": "glove-bilstm, frozen GloVe vectors",
    "static-trained": "glove-bilstm, trainable GloVe vectors (--unfreeze-embeddings)",
    "contextual-frozen": "MiniLM kept as pretrained, MLP head only (--freeze-encoder)",
    "contextual-fine-tuned": "MiniLM fine-tuned whole",
}
# how `gluebench analyze representations --study` trains each condition (on top of the shared --tasks, --seeds
# and --max-train-examples): the static family's defaults; MiniLM at 64 tokens, fine-tuned at 1e-4 (small slices
# need the top of the range in 3 epochs), its frozen encoder's head at a head's rate for up to 20 epochs
RECIPES: dict[str, dict[str, Any]] = {
    "static-frozen": {"model": "glove-bilstm"},
    "static-trained": {"model": "glove-bilstm", "unfreeze_embeddings": True},
    "contextual-frozen": {"model": "minilm", "freeze_encoder": True, "lr": 1e-3, "epochs": 20, "max_length": 64},
    "contextual-fine-tuned": {"model": "minilm", "lr": 1e-4, "epochs": 3, "max_length": 64},
}
STUDY_FILE = "study.json"
ENCODER_LAYER = re.compile(r"encoder|layer_\d+_mean")  # a token mean of an encoder layer over the inputs


def condition_of(config: Any, run_dir: Path) -> str:
    """The study condition a run trained (from its family and freeze options)."""
    family = get_family(config.model)
    if isinstance(family, StaticFamily):
        return "static-trained" if config.unfreeze_embeddings else "static-frozen"
    if isinstance(family, TransformerFamily):
        return "contextual-frozen" if config.freeze_encoder else "contextual-fine-tuned"
    raise GluebenchError(f"{config.model} is none of the study's conditions ({', '.join(CONDITIONS)})",
                         path=run_dir)


def recipe(condition: str, shared: dict[str, Any], run_dir: Path) -> Any:
    """The `RunConfig` that trains ``condition`` into ``run_dir`` (``shared``: tasks, seeds, slices, data)."""
    return config_from_mapping({**shared, **RECIPES[condition], "output_dir": str(run_dir)}, "--study")


def by_condition(run_dirs: Sequence[Path], seed: int | None, tasks: Sequence[str] | None,
                 ) -> dict[str, reps.LoadedRun]:
    """One run per condition, each with a model of every task (checked before any model is loaded)."""
    found: dict[str, tuple[Path, int, list[str]]] = {}
    for run_dir in map(Path, run_dirs):
        config, run_seed, names = reps.run_tasks(run_dir, seed, tasks)
        condition = condition_of(config, run_dir)
        if condition in found:
            raise GluebenchError(f"two runs of {condition}: {found[condition][0]} and {run_dir}")
        found[condition] = (run_dir, run_seed, names)
    missing = [c for c in CONDITIONS if c not in found]
    if missing:
        raise GluebenchError("the study needs one run per condition; missing: "
                             + "; ".join(f"{c} ({CONDITIONS[c]})" for c in missing))
    wanted = [TASKS[t].name for t in tasks] if tasks else sorted(
        {t for _, _, names in found.values() for t in names}, key=list(TASKS).index)
    for condition, (run_dir, run_seed, names) in found.items():
        lacking = [t for t in wanted if t not in names]
        if lacking:
            raise GluebenchError(f"the {condition} run has no model of {', '.join(lacking)} for seed {run_seed} "
                                 f"(it has: {', '.join(names)})", path=run_dir)
    return {c: reps.load_run(found[c][0], found[c][1], wanted) for c in CONDITIONS}


def key_layers(condition: str, run: reps.LoadedRun, layers: Sequence[str]) -> dict[str, str]:
    """The input layer, the top encoder layer (a token mean over the encoder's states) and the output."""
    encoder = [name for name in layers if ENCODER_LAYER.fullmatch(name)]
    if not encoder:
        raise GluebenchError(f"the {condition} run's {run.model_name} models have no encoder layer over their "
                             f"inputs (`encoder` or `layer_K_mean`; they have: {', '.join(layers)}); the study "
                             "compares a sequence encoder's layers", path=run.root)
    return {"input": layers[0], "top": encoder[-1], "output": layers[-1]}


def dev_scores(run: reps.LoadedRun) -> dict[str, dict[str, Any]]:
    """Each task's dev task score (mean of its metrics, x100) over the seeds the run finished."""
    paths = RunPaths(run.root)
    scores: dict[str, dict[str, Any]] = {}
    for task in run.models:
        found = {seed: read_json(paths.result(task, seed))["metrics"] for seed in run.config.seeds
                 if paths.result(task, seed).is_file()}
        values = [task_score(TASKS[task], metrics) for metrics in found.values()]
        scores[task] = {"seeds": list(found), "values": values, "mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return scores


def _fingerprint(outputs: Sequence[TokenOutputs]) -> str:
    """A digest of per-token outputs: models that read the probe identically are measured once."""
    digest = hashlib.sha256()
    for output in outputs:
        digest.update(repr(output.words).encode("utf-8"))
        for name, values in output.layers.items():
            digest.update(name.encode("utf-8") + np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def token_measures(models: dict[str, TaskModel], sentences: Sequence[str], min_contexts: int, seed: int,
                   memo: dict[str, dict[str, LayerMeasures]]) -> dict[str, dict[str, LayerMeasures]]:
    """Per task model, every token layer's contextuality over the probe (identical readings measured once)."""
    measured = {}
    for task, model in models.items():
        outputs = readings(model, sentences)
        key = _fingerprint(outputs)
        if key not in memo:
            memo[key] = measure(outputs, min_contexts, seed)
        measured[task] = memo[key]
    return measured


def _over_tasks(per_task: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per layer and measure: the mean over tasks of raw, baseline and corrected, and the range of corrected."""
    tasks = list(per_task)
    out: dict[str, dict[str, Any]] = {}
    for layer in per_task[tasks[0]]:
        entry: dict[str, Any] = {"words": per_task[tasks[0]][layer]["words"]}
        for name in ("self_similarity", "intra_sentence", "max_explainable_variance"):
            values = {part: [per_task[t][layer][name][part] for t in tasks]
                      for part in ("raw", "baseline", "corrected")}
            entry[name] = {part: float(np.mean(v)) for part, v in values.items()} | {
                "corrected_min": float(min(values["corrected"])), "corrected_max": float(max(values["corrected"]))}
        out[layer] = entry
    return out


def analyze_study(run_dirs: Sequence[Path], data_dir: Path, *, seed: int | None = None,
                  tasks: Sequence[str] | None = None, probe_size: int = 256, token_probe_size: int = 512,
                  probe_seed: int = 0, min_contexts: int = 5) -> dict[str, Any]:
    """`representations.analyze` of the four conditions' runs, with the study on top (``result["study"]``).

    Two probe sets, each read by every model of every condition: the CKA probe holds only sentences that
    every static model reads as the same known words (`representations.probe_sentences`), which with
    per-task vocabularies leaves few; the token probe (dev sentences in turn from each task) needs no such
    filter, since each measure compares one model's vectors of one word, and a word some model does not
    know is left out of every model's measures.
    """
    runs = by_condition(run_dirs, seed, tasks)
    all_models = [m for run in runs.values() for m in run.models.values()]
    specs = [TASKS[name] for name in next(iter(runs.values())).models]
    texts, token_probe = reps.probe_sentences(specs, data_dir, [], token_probe_size, probe_seed)
    for c, run in runs.items():  # a missing layer is found on two sentences, before the measures
        key_layers(c, run, list(reps.extract(next(iter(run.models.values())), texts[:2])))
    memo: dict[str, dict[str, LayerMeasures]] = {}
    measured = {c: token_measures(run.models, texts, min_contexts, probe_seed, memo) for c, run in runs.items()}
    words = set.intersection(*(measured_words(m) for per_task in measured.values() for m in per_task.values()))
    if not words:
        raise GluebenchError(f"no word occurs in {min_contexts} or more of the {len(texts)} token-probe sentences "
                             "for every model; use a larger --token-probe-size or a smaller --min-contexts")
    sentences, probe = reps.probe_sentences(specs, data_dir, all_models, probe_size, probe_seed)
    analyses, layers = {}, {}
    for c, run in runs.items():
        analyses[c] = reps.analyze_run(run, sentences)
        layers[c] = key_layers(c, run, analyses[c]["layers"])
    conditions = {}
    for c, run in runs.items():
        per_task = {t: summarize(m, words) for t, m in measured[c].items()}
        conditions[c] = {"description": CONDITIONS[c], "run_dir": str(run.root), "label": analyses[c]["label"],
                         "model": run.model_name, "seed": run.seed, "layers": layers[c],
                         "dev": dev_scores(run), "token_layers": list(next(iter(per_task.values()))),
                         "contextuality": _over_tasks(per_task), "contextuality_per_task": per_task}
    study = {"conditions": conditions, "tasks": list(next(iter(runs.values())).models), "min_contexts": min_contexts,
             "words": sorted(words), "probe_size": len(texts), "token_probe": {**token_probe, "sentences": texts},
             "cka_probe_size": len(sentences)}
    study["summary"] = summary_lines(study, analyses)
    result = {"created": now_iso(), "probe": {**probe, "seed": probe_seed, "sentences": sentences},
              "runs": list(analyses.values()), "study": study}
    result["summary"] = reps.summarize(result)
    return result


# ---- words and pictures --------------------------------------------------------------------------------------


def _cross(analysis: dict[str, Any], layer: str) -> float:
    return float(analysis["cross_task_cka"][layer]["mean"])


def _to_start(analysis: dict[str, Any], layer: str) -> float:
    values = analysis["cka_to_initial"].get(layer) or {}
    return float(np.mean(list(values.values()))) if values else float("nan")


def _mean_dev(condition: dict[str, Any]) -> float:
    return float(np.mean([d["mean"] for d in condition["dev"].values()]))


def table_rows(study: dict[str, Any], analyses: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The 2 x 2 at a glance, one row per condition: dev score, CKA at the key layers, self-similarity."""
    rows = []
    for c, info in study["conditions"].items():
        key, ctx = info["layers"], info["contextuality"]
        token = info["token_layers"]
        rows.append({"condition": c, "dev_mean": _mean_dev(info),
                     **{f"cka_{k}": _cross(analyses[c], key[k]) for k in ("input", "top", "output")},
                     "to_start_top": _to_start(analyses[c], key["top"]),
                     "self_sim_input": ctx[token[0]]["self_similarity"]["corrected"],
                     "self_sim_input_raw": ctx[token[0]]["self_similarity"]["raw"],
                     "self_sim_top": ctx[token[-1]]["self_similarity"]["corrected"],
                     "self_sim_top_raw": ctx[token[-1]]["self_similarity"]["raw"],
                     "input_layer": key["input"], "top_layer": key["top"], "token_input": token[0],
                     "token_top": token[-1]})
    return rows


def summary_lines(study: dict[str, Any], analyses: dict[str, dict[str, Any]]) -> list[str]:
    """What the 2 x 2 shows, in sentences generated from its numbers."""
    rows = {r["condition"]: r for r in table_rows(study, analyses)}
    sf, st, cf, ct = (rows[c] for c in CONDITIONS)
    ctx_frozen = study["conditions"]["contextual-frozen"]["contextuality"]
    ctx_tuned = study["conditions"]["contextual-fine-tuned"]["contextuality"]
    contextual_layers = [n for n in study["conditions"]["contextual-frozen"]["token_layers"] if n != "word_vectors"]
    falling = " → ".join(f"{ctx_frozen[n]['self_similarity']['raw']:.3f}" for n in contextual_layers)
    shift = {n: ctx_tuned[n]["self_similarity"]["corrected"] - ctx_frozen[n]["self_similarity"]["corrected"]
             for n in contextual_layers}
    largest = max(shift, key=lambda n: abs(shift[n]))
    words = len(study["words"])
    lines = [
        f"Static input layers: at `{sf['token_input']}` every word has one vector, so self-similarity (raw) is "
        f"{sf['self_sim_input_raw']:.6f} (frozen) and {st['self_sim_input_raw']:.6f} (trained) over {words} words "
        f"seen in ≥ {study['min_contexts']} token-probe sentences; cross-task CKA of the "
        f"input layer is {sf['cka_input']:.4f} frozen and {st['cka_input']:.4f} trained.",
        *([f"The static family's own encoder is contextual: at `{sf['token_top']}` raw self-similarity is "
           f"{sf['self_sim_top_raw']:.3f} (frozen vectors) and {st['self_sim_top_raw']:.3f} (trained), corrected "
           f"{sf['self_sim_top']:.3f} and {st['self_sim_top']:.3f}, against {sf['self_sim_input']:.3f} for its "
           "input vectors."] if sf["token_top"] != sf["token_input"] else []),
        f"Frozen contextual encoder: cross-task CKA at `{cf['top_layer']}` is {cf['cka_top']:.4f} (frozen, so every "
        f"task reads the same vectors), yet it is not static: raw self-similarity goes {falling} over "
        + " → ".join(f"`{n}`" for n in contextual_layers)
        + f" (anisotropy-corrected at the top: {cf['self_sim_top']:.3f}).",
        f"Fine-tuning: cross-task CKA at `{ct['top_layer']}` falls to {ct['cka_top']:.3f} (CKA to the pretrained "
        f"start {ct['to_start_top']:.3f}); its corrected self-similarity differs from the frozen encoder's most at "
        f"`{largest}` ({shift[largest]:+.3f}).",
        "Mean dev task score over the tasks: " + ", ".join(f"{c} {r['dev_mean']:.1f}" for c, r in rows.items())
        + f"; frozen contextual minus frozen static: {cf['dev_mean'] - sf['dev_mean']:+.1f} points; trained minus "
        f"frozen: {st['dev_mean'] - sf['dev_mean']:+.1f} (static), {ct['dev_mean'] - cf['dev_mean']:+.1f} "
        "(contextual).",
    ]
    return lines


def plot_contextuality(study: dict[str, Any], path: Path) -> None:
    """Self-similarity, intra-sentence similarity and MEV (anisotropy-corrected) per token layer, four lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = study["conditions"]
    # each model from its input (left) to its top layer (right): a 2-layer static model's encoder states sit
    # under the contextual model's last layer, not after it
    top = max(len(info["token_layers"]) for info in conditions.values()) - 1

    def positions(layers: list[str]) -> list[int]:
        return [round(i * top / (len(layers) - 1)) if len(layers) > 1 else 0 for i in range(len(layers))]

    ticks: dict[int, list[str]] = {}
    for info in conditions.values():
        for x, name in zip(positions(info["token_layers"]), info["token_layers"], strict=True):
            here = ticks.setdefault(x, [])
            if name not in here:
                here.append(name)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    titles = {"self_similarity": "self-similarity", "intra_sentence": "intra-sentence similarity",
              "max_explainable_variance": "maximum explainable variance"}
    styles = {"static-frozen": ("s", 10), "static-trained": ("o", 5), "contextual-frozen": ("s", 7),
              "contextual-fine-tuned": ("o", 5)}  # the frozen marker larger: a trained one on it stays visible
    for ax, (measure_name, title) in zip(axes, titles.items(), strict=True):
        for c, info in conditions.items():
            y = [info["contextuality"][n][measure_name]["corrected"] for n in info["token_layers"]]
            marker, size = styles.get(c, ("o", 5))
            ax.plot(positions(info["token_layers"]), y, marker=marker, markersize=size, label=c,
                    linestyle="--" if "static" in c else "-")
        ax.set_xticks(sorted(ticks), [" / ".join(ticks[at]) for at in sorted(ticks)], rotation=45, ha="right",
                      fontsize=8)
        ax.set_title(f"{title} (anisotropy-corrected)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("measure − random-word baseline")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Token-level contextuality, mean over tasks ({len(study['words'])} words in ≥ "
                 f"{study['min_contexts']} of {study['probe_size']} token-probe sentences)", fontsize=10)
    fig.tight_layout()
    reps.save_png(fig, path)


def plot_cka(study: dict[str, Any], analyses: dict[str, dict[str, Any]], path: Path) -> None:
    """Per condition: cross-task CKA (mean, down to the min pair) and CKA to the start, per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    for ax, c in zip(axes.flat, study["conditions"], strict=True):
        run = analyses[c]
        layers = run["layers"]
        x = range(len(layers))
        ax.plot(x, [_cross(run, n) for n in layers], marker="o", label="cross-task CKA (mean)")
        ax.fill_between(x, [run["cross_task_cka"][n]["min"] for n in layers], [_cross(run, n) for n in layers],
                        alpha=0.2, label="… down to the min pair")
        ax.plot(x, [_to_start(run, n) for n in layers], marker="s", linestyle="--", label="CKA to the start")
        ax.set_xticks(list(x), layers, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{c}: {run['label']}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    reps.save_png(fig, path)


def markdown(study: dict[str, Any], analyses: dict[str, dict[str, Any]], images: dict[str, str]) -> str:
    """The study section: the 2 x 2, dev scores per task, contextuality per layer, the two figures."""
    tasks = study["tasks"]
    conditions = study["conditions"]
    out = ["## The 2 × 2: static vs contextual × frozen vs trained", "",
           *[f"- {line}" for line in study["summary"]], "",
           "| condition | mean dev score | cross-task CKA: input | top encoder layer | output | top layer: CKA to "
           "start | self-similarity (corrected): input | top token layer |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table_rows(study, analyses):
        out.append(f"| {r['condition']} | {r['dev_mean']:.1f} | {r['cka_input']:.4f} (`{r['input_layer']}`) | "
                   f"{r['cka_top']:.3f} (`{r['top_layer']}`) | {r['cka_output']:.3f} | {r['to_start_top']:.3f} | "
                   f"{r['self_sim_input']:.3f} | {r['self_sim_top']:.3f} (`{r['token_top']}`) |")
    out += ["", "Dev task score (mean of the task's metrics, ×100), mean ± std over the seeds:", "",
            "| task | " + " | ".join(conditions) + " |", "| --- " + "| ---: " * len(conditions) + "|"]
    for task in tasks:
        cells = [f"{info['dev'][task]['mean']:.1f} ± {info['dev'][task]['std']:.1f} "
                 f"(seeds {','.join(map(str, info['dev'][task]['seeds']))})" for info in conditions.values()]
        out.append(f"| {task} | " + " | ".join(cells) + " |")
    out += ["", f"Token-level contextuality over {len(study['words'])} words that every model reads in ≥ "
            f"{study['min_contexts']} of the {study['probe_size']} token-probe sentences, mean over the tasks' models "
            "(raw − random baseline = corrected; the corrected range over tasks in brackets). CKA is measured on "
            f"the {study['cka_probe_size']} sentences every static model reads as the same known words.", "",
            "| condition | token layer | self-similarity | intra-sentence | max. explainable variance |",
            "| --- | --- | --- | --- | --- |"]
    for c, info in conditions.items():
        for layer in info["token_layers"]:
            m = info["contextuality"][layer]
            cells = [f"{m[k]['raw']:.3f} − {m[k]['baseline']:.3f} = **{m[k]['corrected']:.3f}** "
                     f"[{m[k]['corrected_min']:.3f}, {m[k]['corrected_max']:.3f}]"
                     for k in ("self_similarity", "intra_sentence", "max_explainable_variance")]
            out.append(f"| {c} | `{layer}` | " + " | ".join(cells) + " |")
    out += ["", f"![contextuality per layer]({images['contextuality']})", "",
            f"![cross-task CKA per layer]({images['cka']})", ""]
    return "\n".join(out)


def write_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """The representations outputs with the study section first, ``study.json`` and its two figures; the study
    (JSON and figures) is also left in each compared run's ``analysis/representations/`` for its HTML report."""
    study = result["study"]
    analyses = {c: next(r for r in result["runs"] if r["run_dir"] == info["run_dir"])
                for c, info in study["conditions"].items()}
    images = {"contextuality": "study-contextuality.png", "cka": "study-cka.png"}
    written = reps.write_outputs(result, out_dir, preface=markdown(study, analyses, images))
    plot_contextuality(study, out_dir / images["contextuality"])
    plot_cka(study, analyses, out_dir / images["cka"])
    record = {**study, "analyses": {c: {k: a[k] for k in ("label", "layers", "cross_task_cka", "cka_to_initial")}
                                    for c, a in analyses.items()}, "table": table_rows(study, analyses),
              "created": result["created"], "figures": images}
    atomic_write_json(out_dir / STUDY_FILE, record)
    for info in study["conditions"].values():
        target = Path(info["run_dir"]) / "analysis" / "representations"
        if target.resolve() != Path(out_dir).resolve():
            atomic_write_json(target / STUDY_FILE, record)
            for name in images.values():
                atomic_write_bytes(target / name, (out_dir / name).read_bytes())
    return {**written, "study": out_dir / STUDY_FILE}
