"""Model families; importing this package registers them (see `gluebench.models.base`)."""

from gluebench.models.base import FAMILIES, FamilyOptions, ModelFamily, TaskModel, get_family

__all__ = ["FAMILIES", "FamilyOptions", "ModelFamily", "TaskModel", "get_family"]
