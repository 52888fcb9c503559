"""Benchmark `gluebench evaluate` against Hugging Face ``Trainer.predict`` and ``pipeline``; write
``docs/results/evaluate.md``.

One fine-tuned MiniLM checkpoint per task (`gluebench run --model minilm` on a training slice, then
`gluebench export`, cached under ``--work-dir``), the same dev examples, three ways to predict them:

``gluebench``  what `gluebench evaluate --model hf:DIR` runs per split: the model from
               ``TransformerFamily.load_finetuned`` and the command's own prediction closure
               (``gluebench.evaluation._model_outputs``: cached tokenization, length-sorted batches,
               ``predict_outputs`` in inference mode, autocast with ``mixed_precision="bf16"``), then
               ``outputs_to_labels``. Timed from the dev examples to labels; the tokenization cache is warm
               (as on every evaluation of that text after the first).
``trainer``    ``Trainer.predict`` on the same checkpoint: pre-tokenized features (tokenization outside the
               clock, its cost recorded apart), DataCollatorWithPadding, per_device_eval_batch_size equal to
               gluebench's, no labels (no loss), dataloader_num_workers 0 and no pin_memory (2 CPU cores);
               bf16: ``bf16_full_eval`` (the whole model in bf16) or ``bf16`` autocast, whichever the
               calibration step found faster.
``pipeline``   ``pipeline("text-classification", device="cpu")`` on the raw texts (pairs as
               ``{"text", "text_pair"}``), ``truncation=True, max_length=128``, ``dtype=torch.bfloat16`` for
               bf16, and the batch_size the calibration step found fastest for it.

Every measurement is one worker process per (system, task, precision) and round that loads its model once,
warms up on a slice of dev, then times ``--passes`` full passes over dev for each thread count in
``--threads`` (examples/s = dev size / median pass). Rounds interleave the systems (every other round in
reverse order), so each round's ratios compare systems measured seconds apart on a shared machine.

    .venv/bin/python bench/bench_evaluate.py                       # SST-2 + MRPC, fp32 + bf16, 1 and 2 threads
    .venv/bin/python bench/bench_evaluate.py --tasks SST-2 --precisions fp32 --threads 1 --rounds 3
    .venv/bin/python bench/bench_evaluate.py --render-only

Finished steps are saved in ``--work-dir``/results.json and skipped when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from machine_info import describe, invocation, load_results, machine_info, save_results

REPO = Path(__file__).resolve().parents[1]
SYSTEMS = ("gluebench", "trainer", "pipeline")
PEERS = ("trainer", "pipeline")
GOALS = {"trainer": 1.2, "pipeline": 2.0}
DESCRIBED = {"gluebench": "gluebench evaluate (load_finetuned + the command's predict closure)",
             "trainer": "Trainer.predict", "pipeline": 'pipeline("text-classification")'}


# ---- workers (each in its own process) -----------------------------------------------------------------


def _task_data(args: argparse.Namespace, task_name: str) -> tuple[Any, list[Any]]:
    from gluebench.data.locate import find_data_dir
    from gluebench.data.read import read_split
    from gluebench.tasks import get_task

    glue, _ = find_data_dir(args.data_dir)
    spec = get_task(task_name)
    dev = read_split(spec, "dev", glue)
    return spec, dev[:getattr(args, "dev_limit", None)]


def _checkpoint_dir(args: argparse.Namespace, task: str) -> Path:
    return Path(args.work_dir) / "checkpoint" / task


def _accuracy(predictions: list[Any], examples: list[Any]) -> float:
    return 100.0 * float(np.mean([str(p) == str(e.label) for p, e in zip(predictions, examples, strict=True)]))


def _timed(predict: Any, warm: Any, full: Any, count: int, passes: int, threads: list[int]) -> tuple[dict, list]:
    """Per thread count: one warm-up call on ``warm``, then ``passes`` timed calls on ``full``."""
    import torch

    measured: dict[str, Any] = {}
    predictions: list[Any] = []
    for n in threads:
        torch.set_num_threads(n)
        predict(warm)
        seconds = []
        for _ in range(passes):
            started = time.perf_counter()
            predictions = predict(full)
            seconds.append(time.perf_counter() - started)
        measured[str(n)] = {"pass_seconds": seconds, "examples_per_second": count / float(np.median(seconds)),
                            "load_average": os.getloadavg()[0]}
    return measured, predictions


def measure_gluebench(args: argparse.Namespace, task: str, precision: str) -> dict[str, Any]:
    from gluebench.config import RunConfig
    from gluebench.evaluation import _model_outputs
    from gluebench.models import get_family
    from gluebench.training import outputs_to_labels

    spec, dev = _task_data(args, task)
    config = RunConfig(model=f"hf:{_checkpoint_dir(args, task)}", tasks=[task], eval_batch_size=args.batch_size,
                       mixed_precision="bf16" if precision == "bf16" else "no", progress=False)
    model = get_family(config.model).load_finetuned(spec, config.family_options(), None)
    outputs = _model_outputs(model, spec, config)  # what `gluebench evaluate` calls per split
    model.encode(dev)  # the tokenization cache the command keeps (written on the first evaluation of this text)
    started = time.perf_counter()
    features = model.encode(dev)
    encode_seconds = time.perf_counter() - started
    lengths = [model.length(f) for f in features]

    def predict(examples: list[Any]) -> list[Any]:
        return outputs_to_labels(spec, outputs(examples))

    measured, predictions = _timed(predict, dev[:args.warmup], dev, len(dev), args.passes, args.threads)
    return {"threads": measured, "predictions": predictions, "accuracy": _accuracy(predictions, dev),
            "encode_seconds": encode_seconds, "lengths": lengths}


def profile_gluebench(args: argparse.Namespace, task: str, precision: str) -> dict[str, Any]:
    """Where gluebench's time goes: the whole closure, then its pieces; and the model's forward alone on
    the batchings of the peers (dev in order, batches of Trainer's and of the pipeline's size)."""
    import torch

    from gluebench.config import RunConfig
    from gluebench.evaluation import _model_outputs
    from gluebench.models import get_family
    from gluebench.training import LengthGroupedSampler, make_accelerator, outputs_to_labels

    spec, dev = _task_data(args, task)
    torch.set_num_threads(args.threads[0])
    mixed = "bf16" if precision == "bf16" else "no"
    config = RunConfig(model=f"hf:{_checkpoint_dir(args, task)}", tasks=[task], eval_batch_size=args.batch_size,
                       mixed_precision=mixed, progress=False)
    model = get_family(config.model).load_finetuned(spec, config.family_options(), None)
    outputs = _model_outputs(model, spec, config)
    outputs_to_labels(spec, outputs(dev[:args.warmup]))
    started = time.perf_counter()
    outputs_to_labels(spec, outputs(dev))
    total = time.perf_counter() - started
    started = time.perf_counter()
    features = model.encode(dev)
    encode = time.perf_counter() - started
    lengths = [model.length(f) for f in features]
    pipe_batch = _calibrated(args, "pipeline", task).get("batch_size", args.batch_size)
    batchings = {"sorted": LengthGroupedSampler(lengths, args.batch_size, shuffle=False).batches(),
                 "in order (Trainer)": [list(range(i, min(i + args.batch_size, len(dev))))
                                        for i in range(0, len(dev), args.batch_size)],
                 f"in order, {pipe_batch} (pipeline)": [list(range(i, min(i + pipe_batch, len(dev))))
                                                        for i in range(0, len(dev), pipe_batch)]}
    accelerator = make_accelerator(mixed)
    module = model.module.eval()
    forward: dict[str, float] = {}
    positions: dict[str, int] = {}
    collate = 0.0
    for name, batches in batchings.items():
        started = time.perf_counter()
        collated = [model.collate([features[i] for i in b]) for b in batches]
        if name == "sorted":
            collate = time.perf_counter() - started
        positions[name] = sum(int(b["input_ids"].numel()) for b in collated)
        started = time.perf_counter()
        with torch.inference_mode(), accelerator.autocast():
            for batch in collated:
                module(**batch).float().cpu()
        forward[name] = time.perf_counter() - started
    return {"total_seconds": total, "encode_seconds": encode, "collate_seconds": collate,
            "forward_seconds": forward, "positions": positions, "real_tokens": int(sum(lengths)),
            "examples": len(dev), "threads_used": args.threads[0]}


def _label_names(spec: Any) -> dict[str, str]:
    """The exported checkpoint's id2label names (GLUE class names) → the task's label strings."""
    return {name: label for name, label in zip(spec.class_names, spec.labels, strict=True)}


def measure_trainer(args: argparse.Namespace, task: str, precision: str,
                    full_eval: bool | None = None) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    spec, dev = _task_data(args, task)
    path = _checkpoint_dir(args, task)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    names = _label_names(spec)
    id2label = model.config.id2label

    def tokenize(examples: list[Any]) -> list[dict[str, Any]]:
        pair = [e.text_b for e in examples] if spec.is_pair else None
        encoded = tokenizer([e.text_a for e in examples], pair, truncation=True, max_length=args.max_length)
        return [{key: encoded[key][i] for key in encoded} for i in range(len(examples))]

    started = time.perf_counter()
    features = tokenize(dev)
    tokenize_seconds = time.perf_counter() - started
    bf16 = precision == "bf16"
    if full_eval is None:
        full_eval = _calibrated(args, "trainer", task).get("bf16_full_eval", True)
    training_args = TrainingArguments(
        output_dir=str(Path(args.work_dir) / "trainer-tmp"), per_device_eval_batch_size=args.batch_size,
        use_cpu=not torch.cuda.is_available(), bf16=bf16, bf16_full_eval=bf16 and full_eval,
        dataloader_num_workers=0, dataloader_pin_memory=False, report_to="none", disable_tqdm=True,
        logging_strategy="no", save_strategy="no", eval_strategy="no")
    trainer = Trainer(model=model, args=training_args, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer)

    def predict(batch: list[dict[str, Any]]) -> list[Any]:
        logits = np.asarray(trainer.predict(batch).predictions, dtype=np.float32)
        return [names[id2label[int(i)]] for i in logits.argmax(-1)]

    measured, predictions = _timed(predict, features[:args.warmup], features, len(dev), args.passes, args.threads)
    return {"threads": measured, "predictions": predictions, "accuracy": _accuracy(predictions, dev),
            "tokenize_seconds": tokenize_seconds, "bf16_full_eval": bool(bf16 and full_eval)}


def measure_pipeline(args: argparse.Namespace, task: str, precision: str,
                     batch_size: int | None = None) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, pipeline

    spec, dev = _task_data(args, task)
    path = _checkpoint_dir(args, task)
    batch_size = batch_size or _calibrated(args, "pipeline", task).get("batch_size", args.batch_size)
    pipe = pipeline("text-classification", model=str(path), device="cpu", batch_size=batch_size,
                    dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    names = _label_names(spec)
    inputs = [{"text": e.text_a, "text_pair": e.text_b} if spec.is_pair else e.text_a for e in dev]

    def predict(texts: list[Any]) -> list[Any]:
        return [names[r["label"]] for r in pipe(texts, truncation=True, max_length=args.max_length)]

    measured, predictions = _timed(predict, inputs[:args.warmup], inputs, len(dev), args.passes, args.threads)
    # the pipeline tokenizes one example per call (its preprocess step): that cost alone, for the profile
    tokenizer = AutoTokenizer.from_pretrained(path)
    started = time.perf_counter()
    for item in inputs:
        if isinstance(item, dict):
            tokenizer(**item, truncation=True, max_length=args.max_length, return_tensors="pt")
        else:
            tokenizer(item, truncation=True, max_length=args.max_length, return_tensors="pt")
    return {"threads": measured, "predictions": predictions, "accuracy": _accuracy(predictions, dev),
            "batch_size": batch_size, "per_example_tokenize_seconds": time.perf_counter() - started}


def calibrate(args: argparse.Namespace, system: str, task: str) -> dict[str, Any]:
    """The peer's best setting, so it is compared at its best: pipeline batch size; Trainer's bf16 mode."""
    options: dict[str, Any] = {}
    args.passes, args.threads, args.dev_limit = 1, [args.threads[0]], args.calibrate_examples
    if system == "pipeline":
        for size in args.pipeline_batch_sizes:
            result = measure_pipeline(args, task, "fp32", batch_size=size)
            options[str(size)] = result["threads"][str(args.threads[0])]["examples_per_second"]
        best = max(options, key=options.__getitem__)
        return {"examples_per_second": options, "batch_size": int(best), "precision": "fp32",
                "examples": args.calibrate_examples}
    for full_eval in (True, False):
        result = measure_trainer(args, task, "bf16", full_eval=full_eval)
        options["bf16_full_eval" if full_eval else "bf16 autocast"] = \
            result["threads"][str(args.threads[0])]["examples_per_second"]
    return {"examples_per_second": options, "precision": "bf16", "examples": args.calibrate_examples,
            "bf16_full_eval": options["bf16_full_eval"] >= options["bf16 autocast"]}


def _calibrated(args: argparse.Namespace, system: str, task: str) -> dict[str, Any]:
    results = load_results(args.work_dir)
    return dict(results.get(f"calibrate:{system}:{task}", {}))


def finetune(args: argparse.Namespace) -> dict[str, Any]:
    """The checkpoints: `gluebench run --model minilm` on a training slice, then `gluebench export`."""
    import gluebench

    exported = Path(args.work_dir) / "checkpoint" / "gluebench.json"
    if exported.is_file():  # made before (by this script or the same two commands by hand): reuse it
        manifest = json.loads(exported.read_text())
        return {"metrics": {t: v["dev_metrics"] for t, v in manifest["tasks"].items()}, "seconds": None, "reused": True,
                "train_examples": args.train_examples, "epochs": 1, "tasks": list(manifest["tasks"])}
    started = time.perf_counter()
    summary = gluebench.run(model="minilm", tasks=args.tasks, max_train_examples=args.train_examples, epochs=1,
                            seeds=[1], output_dir=str(Path(args.work_dir) / "finetune"))
    gluebench.export(summary, Path(args.work_dir) / "checkpoint")
    return {"metrics": summary.metrics, "seconds": time.perf_counter() - started,
            "train_examples": args.train_examples, "epochs": 1, "tasks": args.tasks}


def command_run(args: argparse.Namespace, task: str, precision: str) -> dict[str, Any]:
    """The Python API of `gluebench evaluate --model hf:DIR` itself, dev + test, with its own result.json."""
    import gluebench
    from gluebench.runs import RunPaths, read_json

    out = Path(args.work_dir) / "evaluate-runs" / f"{task}-{precision}-{int(time.time())}"
    started = time.perf_counter()
    summary = gluebench.evaluate(model=f"hf:{_checkpoint_dir(args, task)}", tasks=[task], output_dir=str(out),
                                 eval_batch_size=args.batch_size,
                                 mixed_precision="bf16" if precision == "bf16" else "no")
    wall = time.perf_counter() - started
    result = read_json(RunPaths(out).result(task, 1))
    return {"metrics": summary.metrics[task], "predict_seconds": result["predict_seconds"],
            "examples_per_second": result["examples_per_second"], "wall_seconds": wall,
            "threads_used": __import__("torch").get_num_threads()}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(max(args.threads))
    kind, *rest = args.worker.split(":")
    if kind == "finetune":
        result = finetune(args)
    elif kind == "calibrate":
        result = calibrate(args, rest[0], rest[1])
    elif kind == "command":
        result = command_run(args, rest[0], rest[1])
    elif kind == "profile":
        result = profile_gluebench(args, rest[0], rest[1])
    else:
        system, task, precision = rest
        result = {"gluebench": measure_gluebench, "trainer": measure_trainer,
                  "pipeline": measure_pipeline}[system](args, task, precision)
    print("RESULT " + json.dumps(result))


# ---- driver ----------------------------------------------------------------------------------------------


def _step(args: argparse.Namespace, results: dict[str, Any], key: str, spec: str) -> None:
    if key in results:
        print(f"{key}: done before, kept", flush=True)
        return
    command = [sys.executable, __file__, "--worker", spec, *sys.argv[1:]]
    print(f"{key}: running", flush=True)
    started = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(max(args.threads)), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        print(done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{key} failed (rc {done.returncode})")
    result = json.loads(line[len("RESULT "):])
    result.update(wall_seconds=time.time() - started, load_average=os.getloadavg(),
                  finished=datetime.now(UTC).strftime("%H:%M:%S"))
    results[key] = result
    save_results(args.work_dir, results)
    speeds = ", ".join(f"{n} thr {m['examples_per_second']:.0f} ex/s" for n, m in result.get("threads", {}).items())
    print(f"{key}: {speeds or 'done'} ({result['wall_seconds']:.0f}s)", flush=True)


def _padding(lengths: list[int], batch_size: int, pipeline_batch: int) -> dict[str, float]:
    """Token positions computed per dev pass by each system's batching (real tokens = 1.0)."""
    from gluebench.training import LengthGroupedSampler

    real = np.asarray(lengths)
    sorted_batches = LengthGroupedSampler(lengths, batch_size, shuffle=False).batches()

    def in_order(size: int) -> float:
        return float(sum(real[i:i + size].max() * len(real[i:i + size]) for i in range(0, len(real), size)))

    return {"gluebench": sum(real[b].max() * len(b) for b in sorted_batches) / real.sum(),
            "trainer": in_order(batch_size) / real.sum(), "pipeline": in_order(pipeline_batch) / real.sum()}


def _rounds(results: dict[str, Any], task: str, precision: str) -> list[dict[str, Any]]:
    """Complete rounds of the three systems for one (task, precision)."""
    rounds = []
    for number in range(1, 100):
        keys = {s: f"measure:{s}:{task}:{precision}#{number}" for s in SYSTEMS}
        if not all(k in results for k in keys.values()):
            break
        rounds.append({s: results[k] for s, k in keys.items()})
    return rounds


def _agreement(a: list[Any], b: list[Any]) -> float:
    return 100.0 * float(np.mean([str(x) == str(y) for x, y in zip(a, b, strict=True)]))


def render(args: argparse.Namespace, results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    cfg = results.get("config", {})
    commands = [{"load_start": results.get("load_average", {}).get("start"),
                 "load_end": results.get("load_average", {}).get("end"), **c} for c in results.get("commands", [])]
    lines = ["# Evaluation speed: `gluebench evaluate` vs Hugging Face `Trainer.predict` and `pipeline`", "",
             f"Measured {results.get('date', '?')} on {describe(machine)}; gluebench commit "
             + ", ".join(dict.fromkeys(c.get("commit", machine.get("commit", "?")) for c in commands))
             + " (in the order of the commands below). The 2 cores were shared with other jobs (load "
             "averages below; every measurement's 1-minute load average is in the tables).", "",
             "Commands (the second, where there is one, adds steps to the same results file; finished steps are "
             "kept), with the load averages (1, 5, 15 min) at their start and end:", "", "```",
             *(f"{c['command']}   # {c['date']}, commit {c.get('commit', '?')}; load "
               f"{_load(c.get('load_start'))} at the start, {_load(c.get('load_end'))} at the end"
               for c in commands), "```", ""]
    tune = results.get("finetune")
    if tune:
        metrics = "; ".join(f"{t} " + ", ".join(f"{k} {v:.1f}" for k, v in m.items())
                            for t, m in tune["metrics"].items())
        lines += ["## Setup", "",
                  f"Checkpoints: MiniLM-L6-H384 (`gluebench run --model minilm`, {tune['train_examples']} training "
                  f"examples per task, {tune['epochs']} epoch, seed 1), exported with `gluebench export` "
                  f"(Hugging Face format, GLUE label names); dev after fine-tuning: {metrics}. Every system "
                  "loads the same exported directory and predicts the full dev set of the task "
                  "(SST-2 872 sentences, MRPC 408 pairs), max length 128.", "",
                  f"Timing: per worker process one model load, a warm-up on the first {cfg.get('warmup')} dev "
                  f"examples, then {cfg.get('passes')} timed pass(es) over dev per thread count; examples/s = dev "
                  "size / median pass. What each clock covers:", "",
                  "- **gluebench**: the closure `gluebench evaluate` runs per split "
                  "(`gluebench.evaluation._model_outputs` on the model from `TransformerFamily.load_finetuned`: "
                  "`model.encode` from the tokenization cache, length-sorted batches of "
                  f"{cfg.get('batch_size')}, `predict_outputs` under `torch.inference_mode`, bf16 by accelerate "
                  "autocast) and `outputs_to_labels`, from dev examples to label strings. Writing the "
                  "prediction files is not timed.",
                  "- **Trainer.predict**: pre-tokenized features (tokenization outside the clock; its time is "
                  "listed below), `DataCollatorWithPadding`, `per_device_eval_batch_size` "
                  f"{cfg.get('batch_size')}, no labels (no loss), `dataloader_num_workers=0`, "
                  "`dataloader_pin_memory=False`; bf16 as calibrated below; then argmax.",
                  "- **pipeline**: `pipeline(\"text-classification\", model=DIR, device=\"cpu\", batch_size=B, "
                  "dtype=...)` called on the raw dev texts (pairs as `{\"text\", \"text_pair\"}`) with "
                  "`truncation=True, max_length=128`; B as calibrated below; bf16 = `dtype=torch.bfloat16`.", ""]
    calibration = [(k, v) for k, v in results.items() if k.startswith("calibrate:")]
    if calibration:
        lines += ["Calibration (each peer at its best; one pass over the first "
                  f"{calibration[0][1].get('examples', '?')} dev examples, {cfg.get('threads', ['?'])[0]} thread):", "",
                  "| peer | task | setting: examples/s | chosen |",
                  "|---|---|---|---|"]
        for key, value in calibration:
            _, system, task = key.split(":")
            options = ", ".join(f"{k}: {v:.0f}" for k, v in value["examples_per_second"].items())
            chosen = (f"batch_size {value['batch_size']}" if system == "pipeline"
                      else ("bf16_full_eval" if value["bf16_full_eval"] else "bf16 autocast"))
            label = "pipeline batch_size (fp32)" if system == "pipeline" else "Trainer bf16 mode"
            lines.append(f"| {label} | {task} | {options} | {chosen} |")
        lines.append("")
    summary_rows, round_rows, agreement_rows, padding_rows, extras = [], [], [], [], []
    all_ratios: dict[str, list[float]] = {p: [] for p in PEERS}
    for task in cfg.get("tasks", []):
        for precision in cfg.get("precisions", []):
            rounds = _rounds(results, task, precision)
            if not rounds:
                continue
            for n in [str(t) for t in cfg.get("threads", [])]:
                eps = {s: [r[s]["threads"][n]["examples_per_second"] for r in rounds] for s in SYSTEMS}
                ratios = {p: [g / x for g, x in zip(eps["gluebench"], eps[p], strict=True)] for p in PEERS}
                for p in PEERS:
                    all_ratios[p] += ratios[p]
                for number, r in enumerate(rounds, start=1):
                    loads = " / ".join(f"{r[s]['threads'][n]['load_average']:.1f}" for s in SYSTEMS)
                    round_rows.append(f"| {task} | {precision} | {n} | {number} | "
                                      + " | ".join(f"{eps[s][number - 1]:.0f}" for s in SYSTEMS)
                                      + f" | {ratios['trainer'][number - 1]:.2f}x | "
                                      f"{ratios['pipeline'][number - 1]:.2f}x | {loads} |")
                med = {p: float(np.median(ratios[p])) for p in PEERS}
                summary_rows.append(
                    f"| {task} | {precision} | {n} | "
                    + " | ".join(f"{np.median(eps[s]):.0f}" for s in SYSTEMS)
                    + " | " + " | ".join(f"**{med[p]:.2f}x** ({min(ratios[p]):.2f}–{max(ratios[p]):.2f})"
                                         for p in PEERS)
                    + " | " + " / ".join("met" if med[p] >= GOALS[p] else "NOT met" for p in PEERS) + " |")
            first = rounds[0]
            preds = {s: first[s]["predictions"] for s in SYSTEMS}
            agreement_rows.append(
                f"| {task} | {precision} | " + " / ".join(f"{first[s]['accuracy']:.2f}" for s in SYSTEMS)
                + f" | {_agreement(preds['gluebench'], preds['trainer']):.2f} | "
                f"{_agreement(preds['gluebench'], preds['pipeline']):.2f} | "
                f"{_agreement(preds['trainer'], preds['pipeline']):.2f} |")
            if precision == cfg.get("precisions", [None])[0]:
                pipe_batch = first["pipeline"].get("batch_size", cfg.get("batch_size"))
                pad = _padding(first["gluebench"]["lengths"], cfg.get("batch_size", 128), pipe_batch)
                lengths = np.asarray(first["gluebench"]["lengths"])
                padding_rows.append(
                    f"| {task} | {len(lengths)} | {lengths.mean():.1f} | {lengths.max()} | "
                    f"{pad['gluebench']:.2f} | {pad['trainer']:.2f} | {pad['pipeline']:.2f} (batch {pipe_batch}) | "
                    f"{1000 * first['gluebench']['encode_seconds']:.0f} | "
                    f"{1000 * first['trainer']['tokenize_seconds']:.0f} | "
                    f"{1000 * first['pipeline']['per_example_tokenize_seconds']:.0f} |")
        for key, value in results.items():
            if key.startswith(f"command:{task}:"):
                extras.append(f"| {task} | {key.split(':')[2]} | {value['threads_used']} | "
                              f"{value['predict_seconds']:.1f} | {value['examples_per_second']:.0f} | "
                              f"{value['wall_seconds']:.1f} | "
                              + ", ".join(f"{k} {v:.2f}" for k, v in value["metrics"].items()) + " |")
    if summary_rows:
        overall = {p: float(np.median(all_ratios[p])) for p in PEERS}
        lines += ["## Results", "",
                  "Medians over rounds of dev examples/s, and the median of the per-round ratios gluebench / peer "
                  "(range over rounds in brackets). Goals: ≥ 2× `pipeline`, ≥ 1.2× `Trainer.predict`.", "",
                  "| task | precision | threads | gluebench ex/s | Trainer.predict ex/s | pipeline ex/s | "
                  "vs Trainer.predict | vs pipeline | goals (Trainer / pipeline) |",
                  "|---|---|---:|---:|---:|---:|---|---|---|", *summary_rows, "",
                  f"Over all {len(all_ratios['trainer'])} (task, precision, threads, round) measurements: median "
                  f"**{overall['trainer']:.2f}x** `Trainer.predict` (goal ≥ 1.2x: "
                  f"{'met' if overall['trainer'] >= 1.2 else 'NOT met'}; lowest {min(all_ratios['trainer']):.2f}x) "
                  f"and **{overall['pipeline']:.2f}x** `pipeline` (goal ≥ 2x: "
                  f"{'met' if overall['pipeline'] >= 2 else 'NOT met'}; lowest {min(all_ratios['pipeline']):.2f}x).",
                  "", "### Every round", "",
                  "| task | precision | threads | round | gluebench | Trainer.predict | pipeline | vs Trainer | "
                  "vs pipeline | load avg (1 min): gluebench / Trainer / pipeline |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|", *round_rows, ""]
        lines += ["### Same predictions?", "",
                  "Dev accuracy of each system (round 1) and the share of dev examples on which two systems "
                  "predict the same label (%):", "",
                  "| task | precision | dev accuracy: gluebench / Trainer / pipeline | gluebench = Trainer | "
                  "gluebench = pipeline | Trainer = pipeline |", "|---|---|---|---:|---:|---:|",
                  *agreement_rows, ""]
        fp = [(t, results.get(f"measure:gluebench:{t}:fp32#1"), results.get(f"measure:gluebench:{t}:bf16#1"))
              for t in cfg.get("tasks", [])]
        cross = [f"{t} {_agreement(a['predictions'], b['predictions']):.2f} %" for t, a, b in fp if a and b]
        if cross:
            lines += [f"gluebench fp32 vs bf16 predictions agree on: {', '.join(cross)}.", ""]
        lines += ["### Where the time goes", "",
                  "Every system runs the same BERT modules (transformers, SDPA attention) on the same weights, so "
                  "the differences are the token positions computed (padding) and the per-example Python work "
                  "around the model. Padded/real = token positions computed per dev pass over real tokens, "
                  "from the lengths of the dev examples and each system's batching: gluebench sorts dev by "
                  "length; `Trainer.predict` takes the dataset in order (SequentialSampler) and pads each batch "
                  "to its longest member; the pipeline does the same with its batch size, after tokenizing one "
                  "example per call. Tokenize ms: gluebench's cache read (hash of the texts + npz load), a "
                  "batched fast-tokenizer call on dev (what Trainer users do before `predict`, not in its "
                  "clock), and the pipeline's one-example-per-call tokenization (inside its clock).", "",
                  "| task | dev examples | mean tokens | max tokens | padded/real: gluebench | Trainer | pipeline | "
                  "tokenize ms: gluebench (cache) | Trainer (batched, outside clock) | pipeline (per example) |",
                  "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|", *padding_rows, ""]
    profiles = [(k.split(":")[1], k.split(":")[2], v) for k, v in results.items() if k.startswith("profile:")]
    if profiles:
        names = list(profiles[0][2]["forward_seconds"])
        lines += ["### Profile of gluebench's prediction", "",
                  "One process per task: the whole closure over dev once, then its pieces on their own (cache read, "
                  "collating the sorted batches, the model's forward on them) and the same forward over the "
                  "peers' batchings of the same dev examples (dev in order: batches of Trainer's size and of the "
                  "pipeline's calibrated size), all in seconds. If the forward over a batching costs what that "
                  "system takes per pass, the difference between the systems is the padding, not the code around "
                  "the model.", "",
                  "| task | precision | whole closure s | cache read s | collate s | "
                  + " | ".join(f"forward: {n} s (positions/real)" for n in names) + " |",
                  "|---|---|---:|---:|---:|" + "---:|" * len(names)]
        for task, precision, v in profiles:
            lines.append(f"| {task} | {precision} | {v['total_seconds']:.2f} | {v['encode_seconds']:.3f} | "
                         f"{v['collate_seconds']:.3f} | "
                         + " | ".join(f"{v['forward_seconds'][n]:.2f} ({v['positions'][n] / v['real_tokens']:.2f})"
                                      for n in names) + " |")
        lines.append("")
    if extras:
        lines += ["### The command itself", "",
                  "`gluebench.evaluate(model=\"hf:DIR\", tasks=[T])` (the Python API of `gluebench evaluate`), "
                  "once per task (first precision) after the rounds, torch's default threads; `result.json` times "
                  "dev **and** test prediction with writing the prediction files; wall includes loading the "
                  "model, reading the data and writing the run directory.", "",
                  "| task | precision | threads | predict_seconds | examples_per_second (dev+test) | wall s | "
                  "dev metrics |", "|---|---|---:|---:|---:|---:|---|", *extras, ""]
    if results.get("notes"):
        lines += ["## Notes", "", *(f"- {note}" for note in results["notes"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def _union(before: list[str], now: list[str]) -> list[str]:
    """Tasks or precisions of every invocation that added to the results file, in first-seen order."""
    return list(dict.fromkeys([*before, *now]))


def _load(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "bench-evaluate"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "evaluate.md"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default="SST-2,MRPC")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, each measured in every worker")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=1, help="timed passes over dev per measurement")
    parser.add_argument("--warmup", type=int, default=32, help="dev examples of the untimed warm-up call")
    parser.add_argument("--calibrate-examples", type=int, default=256, help="first dev examples for calibration")
    parser.add_argument("--batch-size", type=int, default=128, help="gluebench's eval batch and Trainer's")
    parser.add_argument("--pipeline-batch-sizes", default="8,32,128", help="tried for the pipeline; fastest kept")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--parts", default="rounds,command,profile",
                        help="rounds: the interleaved measurements; command: gluebench.evaluate itself (dev+test); "
                             "profile: where gluebench's time goes")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--note", action="append", default=[], help="a line for the Notes section (repeatable)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tasks = args.tasks.split(",")
    args.threads = [int(t) for t in args.threads.split(",")]
    args.pipeline_batch_sizes = [int(b) for b in args.pipeline_batch_sizes.split(",")]
    if args.worker:
        worker(args)
        return
    results = load_results(args.work_dir, args.note)
    if not args.render_only:
        machine = machine_info()
        entry = {**invocation(), "commit": machine["commit"], "load_start": os.getloadavg()}
        results.update(machine=machine, date=results.get("date", entry["date"]),
                       commands=[*results.get("commands", []), entry],
                       config={"tasks": _union(results.get("config", {}).get("tasks", []), args.tasks),
                               "precisions": _union(results.get("config", {}).get("precisions", []),
                                                    args.precisions.split(",")),
                               "threads": args.threads, "rounds": args.rounds, "passes": args.passes,
                               "warmup": args.warmup, "batch_size": args.batch_size})
        save_results(args.work_dir, results)
        parts = args.parts.split(",")
        if not (Path(args.work_dir) / "checkpoint" / "gluebench.json").is_file():
            results.pop("finetune", None)
        _step(args, results, "finetune", "finetune")
        for task in args.tasks:
            _step(args, results, f"calibrate:pipeline:{task}", f"calibrate:pipeline:{task}")
            if "bf16" in args.precisions.split(","):
                _step(args, results, f"calibrate:trainer:{task}", f"calibrate:trainer:{task}")
        for number in range(1, args.rounds + 1 if "rounds" in parts else 1):
            order = SYSTEMS if number % 2 else tuple(reversed(SYSTEMS))
            for task in args.tasks:
                for precision in args.precisions.split(","):
                    for system in order:
                        _step(args, results, f"measure:{system}:{task}:{precision}#{number}",
                              f"measure:{system}:{task}:{precision}")
        if "command" in parts:  # once per task, in the first precision
            for task in args.tasks:
                for precision in args.precisions.split(",")[:1]:
                    _step(args, results, f"command:{task}:{precision}", f"command:{task}:{precision}")
        if "profile" in parts:  # once per task, in the first precision
            for task in args.tasks:
                for precision in args.precisions.split(",")[:1]:
                    _step(args, results, f"profile:{task}:{precision}", f"profile:{task}:{precision}")
        entry["load_end"] = os.getloadavg()
        save_results(args.work_dir, results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(args, results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
