"""Hugging Face models are never loaded with trust_remote_code: a model directory's own code never runs.

The directory below declares, like a Hub repository with custom code, an ``auto_map`` from the Auto classes to
Python files next to its config; importing any of them writes a marker file. Loading it with
``trust_remote_code=True`` does run that code (checked, so the trap is known to be armed); ``gluebench run
--model hf:DIR`` must refuse it with one line and exit code 2, and the marker must not appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import one_error_line

MODULES = ("configuration_custom", "modeling_custom", "tokenization_custom")
CODE = '''from pathlib import Path

Path({marker!r}).write_text("{module} ran")

from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizer


class CustomConfig(PretrainedConfig):
    model_type = "gluebench-custom"


class CustomModel(PreTrainedModel):
    config_class = CustomConfig


class CustomTokenizer(PreTrainedTokenizer):
    pass
'''


def _model_with_custom_code(directory: Path, marker: Path) -> Path:
    directory.mkdir()
    tokenizer = ["tokenization_custom.CustomTokenizer", None]
    (directory / "config.json").write_text(json.dumps({
        "model_type": "gluebench-custom", "architectures": ["CustomModel"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModelForSequenceClassification": "modeling_custom.CustomModel",
                     "AutoTokenizer": tokenizer}}))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CustomTokenizer", "auto_map": {"AutoTokenizer": tokenizer}}))
    for module in MODULES:
        (directory / f"{module}.py").write_text(CODE.format(marker=str(marker), module=module))
    return directory


@pytest.fixture
def hf_env(tmp_path: Path) -> dict[str, str]:
    """Offline, with Hugging Face's caches (where remote code would be copied to) inside the test's directory."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_model_directory_with_custom_code_is_refused_and_its_code_never_runs(
        tmp_path: Path, glue_dir: Path, hf_env: dict[str, str]) -> None:
    marker = tmp_path / "custom-code-ran"
    model = _model_with_custom_code(tmp_path / "model", marker)
    trusted = subprocess.run(
        [sys.executable, "-c", "import sys; from transformers import AutoConfig; "
         "AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)", str(model)],
        env=hf_env, capture_output=True, text=True, timeout=300)
    assert marker.read_text() == "configuration_custom ran", trusted.stderr  # the trap is armed
    marker.unlink()

    result = subprocess.run(
        [sys.executable, "-m", "gluebench", "run", "--model", f"hf:{model}", "--tasks", "WNLI", "--epochs", "1",
         "--no-progress", "--data-dir", str(glue_dir), "-o", str(tmp_path / "run")],
        env=hf_env, capture_output=True, text=True, timeout=300)
    assert not marker.exists(), f"the model directory's own code ran: {marker.read_text()}"
    assert result.returncode == 2, result.stdout + result.stderr
    error = one_error_line(result.stderr)
    assert f"--model hf:{model}: cannot load" in error and "contains custom code" in error, error
