"""Locate, download, read and check the official GLUE files."""

from gluebench.data.locate import cache_dir, find_data_dir, has_split, missing_for_training
from gluebench.data.read import Example, read_split

__all__ = ["Example", "cache_dir", "find_data_dir", "has_split", "missing_for_training", "read_split"]
