"""What every benchmark records about where it ran (so a figure in ``docs/results/`` says its machine), and its
resumable raw results file."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "transformers", "accelerate")


def machine_info(extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """CPU model and cores, GPU, platform, Python, versions of PACKAGES and ``extra``, gluebench commit, date."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    # torch.__version__ keeps the build tag (+cpu, +cu128) that the package metadata drops
    versions = {name: _version(name) for name in (*PACKAGES, *extra)} | {"torch": torch.__version__}
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), **versions, "commit": commit.strip(),
            "date": datetime.now(UTC).isoformat()}


def describe(info: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
    """One line for a results file: ``AMD EPYC, 2 cores (GPU: none), Linux-…; Python 3.11.7, torch …``.

    Only what ``info`` recorded: a version it lacks shows as ``?``, never as what is installed now.
    """
    versions = ", ".join(f"{name} {info.get(name, '?')}" for name in (*PACKAGES, *extra))
    return (f"{info['cpu']}, {info['cores']} cores (GPU: {info.get('gpu', 'none')}), {info.get('platform', '?')}; "
            f"Python {info['python']}, {versions}")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def invocation() -> dict[str, str]:
    """How this benchmark was started (``.venv/bin/python bench/NAME.py ARGS``) and when, for its Commands list."""
    script = Path(sys.argv[0]).resolve().relative_to(REPO)
    return {"command": shlex.join([".venv/bin/python", str(script), *sys.argv[1:]]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def load_results(work_dir: str | Path, notes: list[str] | None = None) -> dict[str, Any]:
    """The raw results a benchmark saved in ``work_dir`` (finished steps are skipped on a rerun); {} at first.

    ``notes`` (its ``--note`` lines) are appended to the saved ones.
    """
    path = Path(work_dir) / "results.json"
    results = dict(json.loads(path.read_text())) if path.is_file() else {}
    if notes:
        results["notes"] = [*results.get("notes", []), *notes]
    return results


def save_results(work_dir: str | Path, results: dict[str, Any]) -> None:
    """Write the raw results via a temporary file and a rename, so a killed benchmark leaves the last whole one."""
    path = Path(work_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
