"""Model families; importing this package registers them (see `gluebench.models.base`)."""

import gluebench.models.static  # registers glove-*
import gluebench.models.transformer  # noqa: F401  (registers minilm, hf:)
from gluebench.models.base import FAMILIES, FamilyOptions, ModelFamily, TaskModel, get_family

__all__ = ["FAMILIES", "FamilyOptions", "ModelFamily", "TaskModel", "get_family"]
