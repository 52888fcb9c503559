"""Locate, download, read and check the GLUE files: the official TSVs or the Hub's parquet copy."""

from gluebench.data.locate import SplitFile, cache_dir, find_data_dir, has_split, missing_for_training, split_file
from gluebench.data.read import Example, read_split

__all__ = ["Example", "SplitFile", "cache_dir", "find_data_dir", "has_split", "missing_for_training", "read_split",
           "split_file"]
