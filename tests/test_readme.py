"""The README's Python examples run as written (in a scratch directory, on the real GLUE files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(_python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_a_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    glue_dir: Path) -> None:
    from gluebench.tasks import TASKS, unregister_task

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    before = set(TASKS)
    try:
        exec(compile(_python_blocks()[index], f"README.md python block {index + 1}", "exec"), {})
    finally:
        for name in set(TASKS) - before:  # a block that registers a task leaves the registry as it was
            unregister_task(name)
