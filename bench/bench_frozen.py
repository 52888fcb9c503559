"""Benchmark ``--freeze-encoder``: head training on cached encoder vectors vs recomputing the encoder every epoch.

Both sides train the same MLP head (`FrozenHead`, same initial weights) on the same SST-2 training slice with
the same gluebench training loop (batch 32, lr 1e-3, no warmup): once on the vectors `FrozenEncoderTaskModel`
computed once and cached, and once with a module that runs the frozen MiniLM encoder (no gradient) on every
batch of every epoch and pools its output itself, which is what training a head on a frozen encoder costs
without the cache. Examples/s count training only (the loop's own timer; dev evaluation is outside it); the
one-time encoding of the cached side is reported beside it, so the end-to-end saving can be read off too.
Rounds alternate which side goes first; the table gives each round and the median of the per-round ratios.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_frozen.py [--train 2000] [--epochs 3] [--rounds 3]
        [--threads 1] [--out docs/results/frozen.md]
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gluebench.artifacts import subsample
from gluebench.config import TrainConfig
from gluebench.data.locate import find_data_dir
from gluebench.data.read import Example, read_split
from gluebench.models import get_family
from gluebench.models.base import Batch, FamilyOptions, Feature, TaskModel
from gluebench.models.transformer import FrozenEncoderTaskModel, FrozenHead
from gluebench.tasks import TASKS
from gluebench.training import train
from machine_info import describe, machine_info

REPO = Path(__file__).resolve().parents[1]
TASK = "SST-2"


class EncoderThenHead(nn.Module):
    """The frozen encoder run on every batch (no gradient), mean-pooled, then the head: no cache."""

    def __init__(self, encoder: nn.Module, head: FrozenHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def train(self, mode: bool = True) -> EncoderThenHead:
        """Only the head switches to training mode: the frozen encoder always runs as in inference (no dropout)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.head(pooled)


class Recomputing(TaskModel):
    """A task model over token ids whose module recomputes the frozen encoder's vectors at every step."""

    def __init__(self, frozen: FrozenEncoderTaskModel, head: FrozenHead) -> None:
        self.frozen = frozen
        self.module = EncoderThenHead(frozen.encoder, head)

    def encode(self, examples: Sequence[Example]) -> list[Feature]:
        ids = self.frozen.tokenizer([e.text_a for e in examples], truncation=True,
                                    max_length=self.frozen.max_length)["input_ids"]
        return [{"input_ids": np.asarray(x)} for x in ids]

    def collate(self, features: Sequence[Feature]) -> Batch:
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.frozen.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            ids[row, : len(feature["input_ids"])] = torch.from_numpy(feature["input_ids"])
            mask[row, : len(feature["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def length(self, feature: Feature) -> int:
        return len(feature["input_ids"])

    def metadata(self) -> dict[str, Any]:
        return {}

    def export(self, directory: Path) -> None:
        raise NotImplementedError("a benchmark model is not exported")


def one_round(train_rows: list[Example], dev: list[Example], args: argparse.Namespace, order: Sequence[str],
              ) -> dict[str, Any]:
    """Both sides once, in ``order``; each gets a fresh cache directory, so the cached side pays its encoding."""
    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=1e-3, warmup_ratio=0.0, progress=False)
    result: dict[str, Any] = {"order": list(order)}
    for side in order:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["GLUEBENCH_CACHE"] = cache
            model = get_family("minilm").build(TASKS[TASK], train_rows, FamilyOptions(
                max_length=args.max_length, freeze_encoder=True), seed=1)
            assert isinstance(model, FrozenEncoderTaskModel)
            load = os.getloadavg()[0]
            if side == "cached":
                started = time.perf_counter()
                model.encode(train_rows)
                model.encode(dev)
                encode_seconds = time.perf_counter() - started
                outcome = train(model, TASKS[TASK], train_rows, {"dev": dev}, config)
            else:
                encode_seconds = 0.0
                recomputing = Recomputing(model, copy.deepcopy(model.module))
                outcome = train(recomputing, TASKS[TASK], train_rows, {"dev": dev}, config)
        result[side] = {"examples_per_second": outcome.examples_per_second, "train_seconds": outcome.train_seconds,
                        "encode_seconds": encode_seconds, "dev_accuracy": outcome.best_metrics["accuracy"],
                        "epochs": len(outcome.history), "load_average": load}
        print(f"{side}: {result[side]}", flush=True)
    result["ratio"] = result["cached"]["examples_per_second"] / result["recomputed"]["examples_per_second"]
    return result


def report(args: argparse.Namespace, rounds: list[dict[str, Any]], info: dict[str, Any], command: str,
           loads: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    ratios = [r["ratio"] for r in rounds]
    median = {side: statistics.median(r[side][key] for r in rounds) for side in ("cached", "recomputed")
              for key in ("examples_per_second",)}
    encode = statistics.median(r["cached"]["encode_seconds"] for r in rounds)
    seconds = {side: statistics.median(r[side]["train_seconds"] for r in rounds) for side in ("cached", "recomputed")}
    out = [
        "# Frozen encoder: head training on cached vectors vs recomputing the encoder",
        "",
        f"Measured {info['date'][:16].replace('T', ' ')} UTC by `bench/bench_frozen.py` on {describe(info)}; "
        f"gluebench commit {info['commit']}; {args.threads} torch thread(s). Load averages (1, 5, 15 min) at the "
        f"start: {', '.join(f'{x:.1f}' for x in loads[0])}; at the end: {', '.join(f'{x:.1f}' for x in loads[1])} "
        "(the 2-core CPU is shared with other jobs).",
        "",
        f"Command: `{command}`",
        "",
        f"`gluebench run --model minilm --freeze-encoder` trains an MLP head (dropout, 512 tanh units with layer "
        f"norm, output) on MiniLM-L6's mean-pooled vectors. Here: {args.train} SST-2 training sentences (fixed "
        f"random slice), {args.epochs} epochs, batch 32, lr 1e-3, max length {args.max_length}; both sides start "
        "from the same head weights and go through the same gluebench training loop. *cached*: the vectors are "
        "computed once (`encode`, timed apart) and every epoch reads them; *recomputed*: a module runs the frozen "
        "encoder (no gradient) on every batch of every epoch. Examples/s count training steps only.",
        "",
        f"**{statistics.median(ratios):.0f}× the examples/s** (median of the {len(rounds)} per-round ratios; "
        f"goal ≥ 20×; median examples/s {median['cached']:,.0f} vs {median['recomputed']:,.0f}). Training time for "
        f"{args.epochs} epochs: {seconds['cached']:.1f} s cached + {encode:.1f} s to encode the slice and the dev "
        f"set once, against {seconds['recomputed']:.1f} s recomputing.",
        "",
        "| round | order | cached ex/s | recomputed ex/s | ratio | cached: encode once s | dev accuracy "
        "cached / recomputed | load avg (1 min) cached / recomputed |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for number, r in enumerate(rounds, start=1):
        out.append(f"| {number} | {' then '.join(r['order'])} | {r['cached']['examples_per_second']:,.0f} | "
                   f"{r['recomputed']['examples_per_second']:,.1f} | {r['ratio']:.0f}× | "
                   f"{r['cached']['encode_seconds']:.1f} | {r['cached']['dev_accuracy']:.2f} / "
                   f"{r['recomputed']['dev_accuracy']:.2f} | {r['cached']['load_average']:.1f} / "
                   f"{r['recomputed']['load_average']:.1f} |")
    out += ["", "Dev accuracy is on the full SST-2 dev set (872); the two sides differ only by the float rounding of "
            "vectors computed in differently padded batches.", ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="SST-2 training sentences (fixed random slice)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "frozen.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir, _ = find_data_dir(None)
    if data_dir is None:
        sys.exit("no GLUE data found (set GLUE_DIR)")
    train_rows = subsample(read_split(TASKS[TASK], "train", data_dir), args.train)
    dev = read_split(TASKS[TASK], "dev", data_dir)
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/bench_frozen.py " + shlex.join(sys.argv[1:])
    start_load = os.getloadavg()
    rounds = [one_round(train_rows, dev, args, ("cached", "recomputed") if k % 2 == 0 else ("recomputed", "cached"))
              for k in range(args.rounds)]
    args.out.write_text(report(args, rounds, machine_info(), command.strip(), (start_load, os.getloadavg())),
                        encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
