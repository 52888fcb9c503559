"""Benchmark `gluebench sweep` and write ``docs/results/sweep.md``: workers and pruning, same grid, same machine.

Per round, three sweeps of the same grid over the same glove-cbow training slice, each a fresh
``gluebench sweep`` process with its own journal (order reversed every other round):

``1x2``     one worker process, 2 torch threads;
``2x1``     two worker processes sharing the study, 1 thread each (the same 2 cores);
``pruned``  one worker, 2 threads, the median pruner (`--pruner median --startup-trials 2`).

Reported: wall seconds, the trials' states, epochs trained, the best dev value and setting. Ratios compare
sweeps of the same round.

    .venv/bin/python bench/bench_sweep.py --rounds 2
    .venv/bin/python bench/bench_sweep.py --render-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from machine_info import describe, invocation, load_results, machine_info, save_results

REPO = Path(__file__).resolve().parents[1]
SETUPS = {"1x2": {"workers": 1, "threads": 2, "pruner": "none"},
          "2x1": {"workers": 2, "threads": 1, "pruner": "none"},
          "pruned": {"workers": 1, "threads": 2, "pruner": "median"}}


def _sweep(args: argparse.Namespace, setup: str, out: Path) -> dict[str, Any]:
    """One sweep in its own process; what its sweep.json says, and how long it took."""
    spec = SETUPS[setup]
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "gluebench", "sweep", "--model", args.model, "--tasks", args.task,
               "--max-train-examples", str(args.examples), "--epochs", str(args.epochs), "--patience", "99",
               "--grid", f"lr={args.grid}", "--workers", str(spec["workers"]), "--pruner", spec["pruner"],
               "--startup-trials", "2", "--no-progress", "-o", str(out),
               *(["--data-dir", args.data_dir] if args.data_dir else [])]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{setup} sweep failed (rc {done.returncode}): {done.stderr[-2000:]}")
    record = json.loads((out / "sweep.json").read_text())
    trials = record["trials"]
    best = record["best"][args.task]
    return {"wall_seconds": wall, "states": [t["state"] for t in trials],
            "epochs_trained": sum(len(t["history"]) for t in trials), "best_value": best["value"],
            "best_params": best["params"], "load_average": os.getloadavg(), **spec}


def render(args: argparse.Namespace, results: dict[str, Any]) -> str:
    rounds = sorted({int(k.rpartition("#")[2]) for k in results if k.startswith("sweep:")})
    table = {n: {s: results.get(f"sweep:{s}#{n}") for s in SETUPS} for n in rounds}
    table = {n: r for n, r in table.items() if all(r.values())}
    cfg = results.get("config", {})
    lines = ["# Sweeps: worker processes and pruning on one machine", "",
             f"Measured {results.get('date', '?')} on {describe(results['machine'], ('optuna',))}; gluebench commit "
             f"{results['machine']['commit']}.", "", "Commands:", "", "```",
             *(f"{c['command']}   # {c['date']}" for c in results.get("commands", [])), "```", "",
             f"Each sweep: `gluebench sweep --model {cfg.get('model')} --tasks {cfg.get('task')} --max-train-examples "
             f"{cfg.get('examples')} --epochs {cfg.get('epochs')} --patience 99 --grid lr={cfg.get('grid')}`, a "
             "fresh journal-file study, in its own process. `1x2`: one worker, 2 torch threads; `2x1`: two "
             "worker processes, 1 thread each (the same 2 cores); `pruned`: one worker, 2 threads, "
             "`--pruner median --startup-trials 2`. Rounds alternate the order.", "",
             "| round | setup | wall s | trials | epochs trained | best dev | best lr | load (1 min) |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for n, row in table.items():
        for setup, r in row.items():
            states = ", ".join(f"{r['states'].count(s)} {s.lower()}" for s in sorted(set(r["states"])))
            lines.append(f"| {n} | {setup} | {r['wall_seconds']:.0f} | {states} | {r['epochs_trained']} | "
                         f"{r['best_value']:.2f} | {r['best_params'].get('lr')} | {r['load_average'][0]:.1f} |")
    if table:
        workers = float(np.median([r["1x2"]["wall_seconds"] / r["2x1"]["wall_seconds"] for r in table.values()]))
        pruning = float(np.median([r["1x2"]["wall_seconds"] / r["pruned"]["wall_seconds"] for r in table.values()]))
        saved = float(np.median([1 - r["pruned"]["epochs_trained"] / r["1x2"]["epochs_trained"]
                                 for r in table.values()]))
        same = sum(r["pruned"]["best_params"] == r["1x2"]["best_params"] for r in table.values())
        cost = float(np.median([r["1x2"]["best_value"] - r["pruned"]["best_value"] for r in table.values()]))
        lines += ["", f"Medians of per-round ratios: two 1-thread workers finish the grid **{workers:.2f}x** as fast "
                  f"as one 2-thread worker; the median pruner **{pruning:.2f}x** as fast as no pruning, training "
                  f"{saved:.0%} fewer epochs. It kept the unpruned sweep's best setting in {same} of {len(table)} "
                  f"round(s); its best dev was {cost:.2f} points lower (median)."]
    if results.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="glove-cbow")
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--grid", default="1e-4,3e-4,1e-3,3e-3,1e-2,3e-2")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "bench-sweep"))
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "sweep.md"))
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    results = load_results(args.work_dir, args.note)
    if not args.render_only:
        started = invocation()
        results.update(machine=machine_info(("optuna",)), date=started["date"],
                       commands=[*results.get("commands", []), started],
                       config={"model": args.model, "task": args.task, "examples": args.examples,
                               "epochs": args.epochs, "grid": args.grid})
        for number in range(1, args.rounds + 1):
            order = list(SETUPS) if number % 2 else list(reversed(SETUPS))
            for setup in order:
                key = f"sweep:{setup}#{number}"
                if key in results:
                    continue
                print(f"{key}: running", flush=True)
                results[key] = _sweep(args, setup, Path(args.work_dir) / f"{setup}-{number}")
                save_results(args.work_dir, results)
                print(f"{key}: {results[key]['wall_seconds']:.0f}s", flush=True)
    save_results(args.work_dir, results)
    Path(args.out).write_text(render(args, results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
