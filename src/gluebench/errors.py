"""One exception type for every user-facing mistake, so the CLI can print one line and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class GluebenchError(Exception):
    """A problem the user can fix: bad file, bad option, missing data.

    The message is a single line naming the file (and line) or the option at fault.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = None if path is None else Path(path)
        self.line = line


class DataFormatError(GluebenchError):
    """A GLUE file that does not have the shape its task says it must."""


class DataMissingError(GluebenchError):
    """A split or task whose file is not where the data directory says it should be."""


class ChecksumError(GluebenchError):
    """A downloaded or cached file whose digest is not the pinned one."""


class ConfigError(GluebenchError):
    """An unknown key, a wrong type or an impossible value in a config file or option."""
