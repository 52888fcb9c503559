"""gluebench: train, evaluate, submit and explain models on the GLUE benchmark."""

from gluebench.errors import GluebenchError
from gluebench.tasks import TASKS, TaskSpec, get_task

__version__ = "0.1.0"
__all__ = ["TASKS", "GluebenchError", "TaskSpec", "__version__", "get_task"]
