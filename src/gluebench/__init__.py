"""gluebench: train, evaluate, submit and explain models on the GLUE benchmark.

The Python API (`gluebench.api`: ``run``, ``evaluate``, ``read_split``, ``score``, ``submit``, ``report``,
``export``) is imported on first use, so ``import gluebench`` and the command line stay fast.
"""

from typing import Any

from gluebench.errors import GluebenchError
from gluebench.tasks import TASKS, TaskSpec, get_task
from gluebench.version import __version__

API = ("run", "evaluate", "read_split", "score", "submit", "report", "export")


def __getattr__(name: str) -> Any:
    if name in API:
        import gluebench.api

        return getattr(gluebench.api, name)
    raise AttributeError(f"module 'gluebench' has no attribute {name!r}")


__all__ = ["TASKS", "GluebenchError", "TaskSpec", "__version__", "get_task", *API]
