"""Installs where users are: every pin in pyproject.toml ships a wheel for Python 3.12 and 3.13 on Linux x86_64.

The suite itself runs on 3.11; these tests ask PyPI (resolution only) what pip would take on 3.12 and 3.13:

- ``pip download --no-deps --only-binary=:all: --python-version X --platform manylinux...`` over the pinned
  requirements (dependencies and every extra), read from pyproject.toml;
- torch only through ``pip index versions`` with the same target options, which lists the releases that
  have a matching wheel without downloading one (each is about 530 MB);
- a check that the check can fail: a pin without 3.13 wheels (numpy 1.26, torch 2.4) is refused.

Full resolution with dependencies (torch's CUDA wheels included, some 2.8 GB of transfers per Python) is
``test_full_resolution`` (marker ``resolution``, deselected in the suite: a step of scripts/test.sh).

pip is run with this machine's pip configuration switched off (it adds a local wheel folder and mirrors) and
``--index-url`` PyPI, so the answer is what a user's machine gets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
INDEX_URL = "https://pypi.org/simple/"
SUPPORTED = ("3.11", "3.12", "3.13")
TARGETS = ("3.12", "3.13")  # 3.11 is the interpreter the suite runs on
# A glibc 2.28 Linux (Debian 10+, Ubuntu 20.04+, RHEL 8+) takes every manylinux tag up to 2_28, the one torch
# ships; pip does not widen a --platform by itself, so each is named.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
INDEX_ONLY = {"torch"}  # too large to download in a test: checked through the index's list of wheels
PIP_TIMEOUT_S = 300


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pinned_requirements() -> list[Requirement]:
    """The project's dependencies and every extra (test, bench ...), as written in pyproject.toml."""
    project = _project()
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


def _pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    return spec.version


def _pip_env() -> dict[str, str]:
    """The environment without this machine's pip settings (local wheel folder, extra indexes, constraints)."""
    keep = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "PIP_RETRIES"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in keep}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _target_args(python: str) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", python, "--index-url", INDEX_URL]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True, text=True, env=_pip_env(), timeout=PIP_TIMEOUT_S, check=False,
    )


def download_wheels(requirements: list[str], python: str, dest: Path) -> subprocess.CompletedProcess[str]:
    """``pip download --no-deps`` of exactly these requirements as wheels for ``python`` on manylinux x86_64."""
    return _pip("download", "--no-deps", "--no-cache-dir", "--quiet", "--dest", str(dest),
                *_target_args(python), *requirements)


def index_versions(name: str, python: str) -> list[str]:
    """The releases of ``name`` that have a wheel for ``python`` on manylinux x86_64 (nothing downloaded)."""
    result = _pip("index", "versions", name, *_target_args(python))
    match = re.search(r"^Available versions: (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not match:
        return []
    return [v.strip() for v in match.group(1).split(",")]


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return "\n".join(lines[-15:])


# --- the metadata ---------------------------------------------------------------------------------------------


def test_requires_python_admits_311_to_313() -> None:
    project = _project()
    spec = SpecifierSet(project["requires-python"])
    for python in SUPPORTED:
        for micro in (0, 99):
            assert f"{python}.{micro}" in spec, f"requires-python {spec} refuses Python {python}.{micro}"
    assert "3.10.0" not in spec  # the code uses 3.11 features (tomllib, datetime.UTC)
    classifiers = set(project.get("classifiers", []))
    for python in SUPPORTED:
        assert f"Programming Language :: Python :: {python}" in classifiers


def test_every_requirement_is_pinned() -> None:
    """The wheel checks below mean something only for exact pins."""
    for req in pinned_requirements():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, req
        assert req.marker is None, f"{req}: a marker would hide the pin from some Pythons"


# --- wheels on PyPI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("python", TARGETS)
def test_pinned_wheels_download(python: str) -> None:
    reqs = [r for r in pinned_requirements() if canonicalize_name(r.name) not in INDEX_ONLY]
    with tempfile.TemporaryDirectory(prefix=f"gluebench-wheels-{python}-") as tmp:
        dest = Path(tmp)
        result = download_wheels([str(r) for r in reqs], python, dest)
        assert result.returncode == 0, f"no wheels for Python {python}:\n{_failure(result)}"
        got = {}
        for wheel in dest.glob("*.whl"):
            name, version, _, _ = parse_wheel_filename(wheel.name)
            got[canonicalize_name(name)] = str(version)
        assert not [p.name for p in dest.iterdir() if p.suffix != ".whl"]
    want = {canonicalize_name(r.name): _pinned_version(r) for r in reqs}
    assert got == want


@pytest.mark.parametrize("python", TARGETS)
@pytest.mark.parametrize("name", sorted(INDEX_ONLY))
def test_index_only_pins_have_wheels(name: str, python: str) -> None:
    (req,) = [r for r in pinned_requirements() if canonicalize_name(r.name) == name]
    available = index_versions(req.name, python)
    assert available, f"pip index versions {req.name} found nothing for Python {python}"
    assert _pinned_version(req) in available, f"{req} has no wheel for Python {python}; has {available[:8]}"


# --- the check can fail ---------------------------------------------------------------------------------------


def test_a_pin_without_313_wheels_is_refused(tmp_path: Path) -> None:
    """numpy 1.26 stops at cp312 and torch 2.4 before cp313: both checks say no for 3.13, yes for 3.12."""
    result = download_wheels(["numpy==1.26.4"], "3.13", tmp_path)
    assert result.returncode != 0
    assert "numpy==1.26.4" in result.stderr
    assert not list(tmp_path.iterdir())
    assert "2.4.0" not in index_versions("torch", "3.13")
    assert "2.4.0" in index_versions("torch", "3.12")


# --- full resolution (opt-in: a step of scripts/test.sh) ------------------------------------------------------


@pytest.mark.resolution  # deselected in the suite, run as its own step of scripts/test.sh
@pytest.mark.parametrize("python", TARGETS)
def test_full_resolution(python: str) -> None:
    """``pip install --dry-run`` with dependencies; pip fetches each wheel whole to read its metadata.

    Environment markers of dependencies are evaluated by pip for the running 3.11 (only Requires-Python uses
    the target version), so this checks that the pinned set and its dependencies resolve to wheels.
    """
    with tempfile.TemporaryDirectory(prefix=f"gluebench-resolve-{python}-") as tmp:
        free = shutil.disk_usage(tmp).free
        assert free > 8 * 1024**3, f"{free / 1024**3:.1f} GiB free in {tmp}: pip needs about 3 GiB for torch's wheels"
        report = Path(tmp) / "report.json"
        result = _pip("install", "--dry-run", "--ignore-installed", "--no-cache-dir", "--quiet",
                      "--target", str(Path(tmp) / "target"), "--report", str(report),
                      *_target_args(python), *(str(r) for r in pinned_requirements()))
        assert result.returncode == 0, f"no resolution for Python {python}:\n{_failure(result)}"
        chosen = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                  for i in json.loads(report.read_text(encoding="utf-8"))["install"]}
    for req in pinned_requirements():
        assert chosen.get(canonicalize_name(req.name)) == _pinned_version(req), req
