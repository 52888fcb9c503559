"""Model families behind one contract (`gluebench.models.base`), found by name (`gluebench.models.registry`)."""

from gluebench.models.base import Capability, FamilyOptions, ModelFamily, TaskModel, UnsupportedCapability
from gluebench.models.registry import FAMILIES, get_family

__all__ = ["FAMILIES", "Capability", "FamilyOptions", "ModelFamily", "TaskModel", "UnsupportedCapability",
           "get_family"]
