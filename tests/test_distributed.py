"""Data-parallel training with accelerate: 2 CPU processes (gloo) agree with each other and with 1 process.

The test launches this file with ``accelerate launch --multi_gpu --num_processes 2`` with no GPU visible, which
runs 2 CPU processes over gloo (accelerate's ``--cpu`` flag alone starts a single process unless MPI is set up).
Each rank fine-tunes MiniLM on the same real SST-2 slice and writes what it ended with. Dropout is off, so the
only difference from a single-process run is the order of floating-point sums: metrics must match closely.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TRAIN, DEV = 64, 80


def train_slice(glue_dir: Path) -> dict[str, Any]:
    """Fine-tune MiniLM for one epoch on a fixed SST-2 slice; what a rank ended with."""
    from gluebench.artifacts import subsample
    from gluebench.data.read import read_split
    from gluebench.models import FamilyOptions, get_family
    from gluebench.tasks import TASKS
    from gluebench.training import TrainConfig, make_accelerator, predict, train

    task = TASKS["SST-2"]
    train_examples = subsample(read_split(task, "train", glue_dir), TRAIN)
    dev = subsample(read_split(task, "dev", glue_dir), DEV)
    model = get_family("minilm").build(task, train_examples, FamilyOptions(max_length=48, dropout=0.0), seed=3)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-4, warmup_ratio=0.1, seed=3, progress=False)
    seen: list[str] = []  # the token ids of every training example this rank's batches held
    collate = model.collate

    def recording_collate(features: Any) -> Any:
        if model.module.training:  # prediction batches are collated in eval mode
            seen.extend(",".join(map(str, f["input_ids"].tolist())) for f in features)
        return collate(features)

    model.collate = recording_collate  # type: ignore[method-assign]
    outcome = train(model, task, train_examples, {"dev": dev}, config)
    model.collate = collate  # type: ignore[method-assign]
    accelerator = make_accelerator()
    weights = b"".join(p.detach().cpu().numpy().tobytes() for p in model.module.parameters())
    return {
        "rank": accelerator.process_index, "processes": accelerator.num_processes,
        "history": outcome.history, "predictions": predict(model, task, dev, accelerator),
        "weights_sha256": hashlib.sha256(weights).hexdigest(), "seen": seen,
        "train_set": [",".join(map(str, f["input_ids"].tolist())) for f in model.encode(train_examples)],
    }


@pytest.mark.usefixtures("one_torch_thread")
def test_two_cpu_processes_agree_and_match_one_process(glue_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "GLUEBENCH_CACHE": str(tmp_path / "cache")}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              __file__, str(glue_dir), str(out)]
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]

    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # DDP kept the replicas identical
    assert ranks[0]["predictions"] == ranks[1]["predictions"]
    assert ranks[0]["history"][0]["accuracy"] == ranks[1]["history"][0]["accuracy"]
    assert len(ranks[0]["predictions"]) == DEV  # every dev example predicted once, none duplicated
    # each rank trained on its own half of every batch: together the whole epoch, each example once
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == TRAIN // 2
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(ranks[0]["train_set"])

    single = train_slice(glue_dir)  # one torch thread, as each rank
    assert single["processes"] == 1
    one, two = single["history"][0], ranks[0]["history"][0]
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=2e-3)
    assert abs(two["accuracy"] - one["accuracy"]) <= 2.0  # at most 2 of 80 borderline examples flip
    agree = sum(a == b for a, b in zip(single["predictions"], ranks[0]["predictions"], strict=True))
    assert agree >= DEV - 2


if __name__ == "__main__":  # one rank under `accelerate launch`
    import torch

    torch.set_num_threads(1)
    result = train_slice(Path(sys.argv[1]))
    (Path(sys.argv[2]) / f"rank-{result['rank']}.json").write_text(json.dumps(result))
